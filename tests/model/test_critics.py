"""Tests of the critics: the v1 WGAN pair, and the v2 SN-PatchGAN with its power iteration."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import load_reference
from inpainting.checkpoints import tf1
from inpainting.config import ModelConfig
from inpainting.model.critics import Critic, Critics, SNPatchGAN, SpectralConv
from layer_test import global_policy, run_layer_test

# Also run with the other oneDNN mode by `make test` (see pytest.ini).
pytestmark = pytest.mark.onednn_modes


def test_matches_original(official_checkpoint):
    ref = load_reference("v1", "discriminator.npz")
    critics = tf1.load_official_critics(official_checkpoint("v1"))
    out = critics([ref["local_input"][..., ::-1], ref["global_input"][..., ::-1]])
    for key, expected in (("local", ref["dout_local"]), ("global", ref["dout_global"])):
        got = out[key].numpy()
        assert got.shape == expected.shape == (2, 1)
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()  # measured 1.9e-5


def test_parameter_count_matches_original():
    critics = Critics(ModelConfig())
    critics.build()
    assert critics.local.count_params() + critics.global_.count_params() == 7_072_770


def test_small_config_shapes_and_error():
    critics = Critics(ModelConfig(image_size=(64, 48), local_size=(32, 16)))
    out = critics([tf.zeros([3, 32, 16, 3]), tf.zeros([3, 64, 48, 3])])
    assert out["local"].shape == out["global"].shape == (3, 1)
    with pytest.raises(ValueError, match=r"expects inputs of size \(32, 16\)"):
        critics([tf.zeros([3, 32, 32, 3]), tf.zeros([3, 64, 48, 3])])


def test_is_linear_in_the_head():
    # With the head's bias at zero and an all-zero input, every layer outputs its bias path only:
    # two identical inputs give identical scores, and scores change with the input.
    critics = Critics(ModelConfig(image_size=(32, 32), local_size=(16, 16)))
    a = critics([tf.zeros([1, 16, 16, 3]), tf.zeros([1, 32, 32, 3])])
    b = critics([tf.ones([1, 16, 16, 3]), tf.ones([1, 32, 32, 3])])
    assert np.abs(a["local"] - b["local"]).max() > 0 and np.abs(a["global"] - b["global"]).max() > 0


SN_SCOPE = "discriminator/sn_patch_gan"


@pytest.mark.slow
def test_sn_patch_gan_matches_original_and_updates_u(official_checkpoint):
    ref = load_reference("v2", "discriminator.npz")
    critic = tf1.load_official_critics(official_checkpoint("v2"), version="v2")
    assert isinstance(critic, SNPatchGAN)
    for i, conv in enumerate(critic.convs):
        np.testing.assert_array_equal(conv.u.numpy(), ref[f"u_before/{SN_SCOPE}/conv{i + 1}/kernel_sn/u"])
    image, mask = ref["input"][..., 2::-1], ref["input"][..., 3:]
    first = critic([image, mask])["patches"].numpy()
    scale = np.abs(ref["dout"]).max()
    assert np.abs(first - ref["dout"]).max() <= 2e-5 * scale  # measured 7.2e-7 (2.7e-6 relative)
    for i, conv in enumerate(critic.convs):  # one power iteration per call, stored
        np.testing.assert_allclose(conv.u.numpy(), ref[f"u_after/{SN_SCOPE}/conv{i + 1}/kernel_sn/u"],
                                   atol=1e-6)
    second = critic([image, mask])["patches"].numpy()
    assert np.abs(second - ref["dout_second_call"]).max() <= 2e-5 * scale
    assert np.abs(second - first).max() > 1e-4 * scale  # the second call really differs


def test_spectral_conv_normalises_the_largest_singular_value():
    tf.keras.utils.set_random_seed(5)
    conv = SpectralConv(6, 3, activation=None)
    conv.build((1, 8, 8, 4))
    for _ in range(60):  # power iterations converge to the largest singular value
        kernel, _ = conv.normalized_kernel()
        conv.u.assign(conv.normalized_kernel()[1])
    matrix = tf.reshape(kernel, [-1, 6]).numpy()
    assert np.linalg.svd(matrix, compute_uv=False)[0] == pytest.approx(1.0, abs=1e-4)
    x = tf.random.normal([1, 8, 8, 4])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(conv(x))
    u_grad, kernel_grad, bias_grad = tape.gradient(y, [conv.u, conv.kernel, conv.bias])
    assert u_grad is None  # u is a constant of the gradient
    assert kernel_grad is not None and bias_grad is not None


# ------------------------------------------------------------------ the layer contract (layer_test)

@pytest.mark.parametrize("kwargs,shape", [
    ({"widths": (1, 2, 4, 8), "input_size": (16, 16), "cnum": 2, "head_name": "dout_local_fc",
      "name": "discriminator_local"}, (2, 16, 16, 3)),
    ({"widths": (1, 2), "input_size": (16, 32), "cnum": 4}, (3, 16, 32, 3)),
])
def test_critic_layer_contract(tmp_path, kwargs, shape):
    layer = run_layer_test(Critic, kwargs, input_shapes=shape, tmp_path=tmp_path,
                           expected_output_shape=(shape[0], 1), expected_output_dtype="float32")
    assert layer.head.name == kwargs.get("head_name", "dout_fc")


@pytest.mark.parametrize("kwargs", [
    {"filters": 4, "kernel_size": 5, "strides": 2, "activation": "leaky_relu"},
    {"filters": 6, "kernel_size": 3, "activation": None, "padding": "reflect"},
])
def test_spectral_conv_layer_contract(tmp_path, kwargs):
    # Every call updates u: the helper compares calls from the same stored u.
    layer = run_layer_test(SpectralConv, kwargs, input_shapes=(2, 8, 8, 4), tmp_path=tmp_path,
                           expected_output_dtype="float32")
    assert [w.name for w in layer.non_trainable_weights] == ["u"]


def test_critics_model_contract(tmp_path):
    config = ModelConfig(cnum=4, image_size=(32, 16), local_size=(16, 16))
    run_layer_test(Critics, {"config": config}, input_shapes=[(2, 16, 16, 3), (2, 32, 16, 3)], tmp_path=tmp_path,
                   expected_output_shape={"local": (2, 1), "global": (2, 1)}, expected_output_dtype="float32")


@pytest.mark.parametrize("guided", [False, True])
def test_sn_patch_gan_model_contract(tmp_path, guided):
    config = ModelConfig(version="v2", cnum=4, guided=guided, image_size=(16, 32), local_size=(16, 16))
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (2, 16, 32, 3)).astype(np.float32)
    mask = np.zeros((1, 16, 32, 1), np.float32)
    mask[:, 4:12, 4:24] = 1
    inputs = [image, mask] + [np.concatenate([mask, 1 - mask])] * guided
    run_layer_test(SNPatchGAN, {"config": config}, inputs, tmp_path=tmp_path,
                   expected_output_shape={"patches": (2, 1 * 1 * 256)}, expected_output_dtype="float32")


def test_critic_under_mixed_precision(tmp_path):
    with global_policy("mixed_bfloat16"):
        run_layer_test(Critic, {"widths": (1, 2), "input_size": (16, 16), "cnum": 4}, input_shapes=(2, 16, 16, 3),
                       tmp_path=tmp_path, expected_output_dtype="bfloat16", function_rtol=5e-2)
