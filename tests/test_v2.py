"""Tests of DeepFill v2: gated convolutions, the v2 generator (and its guided variant), the
SN-PatchGAN critic with its power iteration, and the v2 losses, against the original's outputs."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import load_reference, write_tf1_checkpoint
from inpainting.checkpoints import tf1
from inpainting.config import ModelConfig
from inpainting.errors import CheckpointError, ConfigError
from inpainting.model.critics import SNPatchGAN, SpectralConv, make_critics
from inpainting.model.generator import Generator
from inpainting.model.layers import Conv, UpConv
from inpainting.training import losses

# Also run with the other oneDNN mode by `make test` (see pytest.ini).
pytestmark = pytest.mark.onednn_modes

CASES = ["g_256x256_b1", "g_256x384_b1", "g_256x256_b2"]
SN_SCOPE = "discriminator/sn_patch_gan"


@pytest.fixture(scope="module")
def v2_variables(official_checkpoint):
    return tf1.read_variables(official_checkpoint("v2"))


@pytest.fixture(scope="module")
def official(official_checkpoint):
    return {impl: tf1.load_official_generator(official_checkpoint("v2"), version="v2", attention=impl)
            for impl in ("matmul", "patches")}


def test_gated_conv_is_activation_times_sigmoid_gate():
    tf.keras.utils.set_random_seed(3)
    x = tf.random.normal([2, 12, 10, 5])
    conv = Conv(8, 3, gated=True)
    y = conv(x)
    assert y.shape == (2, 12, 10, 4) and conv.compute_output_shape(x.shape) == (2, 12, 10, 4)
    raw = tf.nn.bias_add(tf.nn.conv2d(x, conv.kernel, 1, "SAME"), conv.bias)
    np.testing.assert_allclose(y, tf.nn.elu(raw[..., :4]) * tf.sigmoid(raw[..., 4:]), atol=1e-6)
    # Without an activation there is no gate (the original's output layers).
    assert Conv(3, 3, activation=None, gated=True)(x).shape[-1] == 3
    assert UpConv(8, gated=True)(x).shape == (2, 24, 20, 4)
    with pytest.raises(ValueError, match="even number of filters"):
        Conv(7, 3, gated=True)
    restored = Conv.from_config(conv.get_config())
    assert restored.gated and restored.filters == 8


@pytest.mark.slow
@pytest.mark.parametrize("implementation", ["matmul", "patches"])
@pytest.mark.parametrize("case", CASES)
def test_generator_matches_original(official, case, implementation):
    ref = load_reference("v2", f"{case}.npz")
    out = official[implementation]([ref["image"][..., ::-1], ref["mask"]])
    assert np.abs(out["coarse"].numpy()[..., ::-1] - ref["x_stage1"]).max() <= 1e-4  # measured 4.9e-6
    assert np.abs(out["refined"].numpy()[..., ::-1] - ref["x_stage2"]).max() <= 1e-4  # measured 3.9e-6
    assert np.mean(np.all(out["offsets"].numpy() == ref["offsets_raw"], axis=-1)) >= 0.99  # measured 1.0
    # v2 enlarges the flow bilinearly; the colours are exact.
    assert np.mean(out["flow"].numpy() == ref["offset_flow"]) >= 0.99  # measured 1.0


@pytest.mark.slow
def test_guided_generator_matches_original(v2_variables, tmp_path):
    ref = load_reference("v2", "g_guided_256x256_b1.npz")
    variables = dict(v2_variables, **{"inpaint_net/conv1/kernel": ref["guided_conv1_kernel"]})
    generator = tf1.build_generator(variables)
    assert generator.config.guided and generator.config.version == "v2"
    out = generator([ref["image"][..., ::-1], ref["mask"], ref["edge"]])
    assert np.abs(out["coarse"].numpy()[..., ::-1] - ref["x_stage1"]).max() <= 1e-4
    assert np.abs(out["refined"].numpy()[..., ::-1] - ref["x_stage2"]).max() <= 1e-4
    assert np.mean(np.all(out["offsets"].numpy() == ref["offsets_raw"], axis=-1)) >= 0.99
    # The sketch counts only inside the hole, and it does change the result there.
    outside = generator([ref["image"][..., ::-1], ref["mask"], ref["edge"] * (1 - ref["mask"])])
    blank = generator([ref["image"][..., ::-1], ref["mask"], np.zeros_like(ref["edge"])])
    np.testing.assert_array_equal(outside["refined"], blank["refined"])
    assert np.abs(blank["refined"].numpy() - out["refined"].numpy()).max() > 1e-2
    # Loading through a checkpoint folder recognises the guided model too.
    write_tf1_checkpoint(tmp_path, variables)
    loaded = tf1.load_official_generator(tmp_path, version="v2", guided=True)
    assert loaded.config.guided
    with pytest.raises(CheckpointError, match="holds a guided .sketch. generator .* pass guided=True"):
        tf1.load_official_generator(tmp_path, version="v2", guided=False)
    with pytest.raises(ValueError, match=r"a guided v2 generator takes \[image, mask, sketch\]"):
        loaded([ref["image"], ref["mask"]])


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


@pytest.mark.slow
def test_losses_match_original(official_checkpoint):
    ref = load_reference("v2", "losses.npz")
    path = official_checkpoint("v2")
    generator = tf1.load_official_generator(path, version="v2")
    images = tf.constant(ref["batch_data_u8_bgr"][..., ::-1].astype(np.float32) / 127.5 - 1)
    mask = tf.constant(ref["mask"])
    outputs = generator([images, mask])
    completed = losses.paste(images, outputs["refined"], mask)
    # Both losses come from the checkpoint's u in the original's single graph: fresh critics.
    d = losses.v2_critic_losses(tf1.load_official_critics(path, version="v2"), images, completed, mask)
    g = losses.v2_generator_losses(tf1.load_official_critics(path, version="v2"), images, outputs, mask)
    for name, value, expected in (("ae", g["ae"], ref["ae_loss"]), ("g_loss", g["g_loss"], ref["g_loss"]),
                                  ("d_loss", d["d_loss"], ref["d_loss"])):
        assert float(tf.reduce_mean(value)) == pytest.approx(float(expected), rel=1e-5), name  # measured 1e-7


def test_hinge_losses_by_hand():
    real = tf.constant([[2.0, 0.5, -1.0, 1.0]])
    fake = tf.constant([[-2.0, 0.0, 1.0, -0.5]])
    # relu(1 - real) = [0, .5, 2, 0] -> mean .625; relu(1 + fake) = [0, 1, 2, .5] -> mean .875.
    assert float(losses.hinge_critic_loss(real, fake)[0]) == pytest.approx(0.5 * 0.625 + 0.5 * 0.875)
    assert float(losses.hinge_generator_loss(fake)[0]) == pytest.approx(0.375)


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


def test_tiny_v2_generator_and_critic_shapes():
    config = ModelConfig(version="v2", cnum=8, guided=True, image_size=(64, 64), local_size=(32, 32))
    generator = Generator(config)
    generator.build()
    image, mask = tf.zeros([2, 64, 64, 3]), tf.zeros([1, 64, 64, 1])
    out = generator([image, mask, tf.zeros([2, 64, 64, 1])])
    assert out["refined"].shape == (2, 64, 64, 3) and out["flow"].shape == (2, 16, 16, 3)
    assert generator.conv1.kernel.shape == (5, 5, 6, 8) and generator.xconv1.kernel.shape == (5, 5, 3, 8)
    critic = make_critics(config)
    critic.build()
    assert critic([image, mask, tf.zeros([2, 64, 64, 1])])["patches"].shape == (2, 1 * 1 * 256)
    assert critic.conv1.kernel.shape == (5, 5, 5, 64)


def test_config_rules():
    with pytest.raises(ConfigError, match="guided .* only for version v2"):
        ModelConfig(guided=True)
    with pytest.raises(ConfigError, match="multiple of 4"):
        ModelConfig(version="v2", cnum=6)
    assert ModelConfig.from_dict(ModelConfig(version="v2", cnum=48, guided=True).to_dict()).guided


def test_version_mismatch_is_refused(v2_variables, tmp_path):
    write_tf1_checkpoint(tmp_path, v2_variables)
    with pytest.raises(CheckpointError, match="is a DeepFill v2 checkpoint .* pass version=v2"):
        tf1.load_official_generator(tmp_path, version="v1")


@pytest.mark.slow
def test_guided_v2_exports_to_saved_model_and_builtin_tflite(v2_variables, tmp_path):
    import os
    import subprocess
    import sys

    from inpainting.export import saved_model, tflite
    from inpainting.inference import Inpainter
    from inpainting.inference.runners import TFLiteRunner

    ref = load_reference("v2", "g_guided_256x256_b1.npz")
    generator = tf1.build_generator(dict(v2_variables, **{"inpaint_net/conv1/kernel": ref["guided_conv1_kernel"]}))
    directory = saved_model.export_saved_model(
        generator, tmp_path / "export", extra=lambda path: tflite.write_models(generator, path, quantizations=("fp32",)))
    rgb, mask, edge = ref["image_u8_bgr"][0][..., ::-1], ref["mask"][0, :, :, 0], ref["edge"][0, :, :, 0]
    filled = Inpainter(generator)(rgb, mask, sketch=edge)["filled"]
    expected = np.where(mask[..., None] > 0.5, filled, rgb.astype(np.float32))
    # The graph loader, in a fresh process, with the sketch input of the guided signature.
    for name, value in (("image", rgb[None]), ("mask", mask[None, :, :, None]), ("sketch", edge[None, :, :, None])):
        np.save(tmp_path / f"{name}.npy", value.astype(np.float32))
    inputs = ";".join(f"{name}={tmp_path / name}.npy" for name in ("image", "mask", "sketch"))
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "saved_model_cli"), "run", "--dir", directory,
         "--tag_set", "serve", "--signature_def", "inpaint", "--inputs", inputs, "--outdir", tmp_path / "out"],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.load(tmp_path / "out" / "inpainted.npy")[0]
    assert np.abs(served - expected).max() <= 0.05
    model = os.path.join(directory, tflite.model_file("fp32"))
    ops = tflite.op_names(model)
    assert not [op for op in ops if op.lower().startswith("flex")] and "LOGISTIC" in ops  # the gates
    out = TFLiteRunner(model).run(rgb, mask, sketch=edge)
    assert np.abs(out.filled - served).max() <= 0.05
    # The warm-up requests carry a sketch too, and the bytes signature takes sketch_bytes.
    loaded = tf.saved_model.load(directory)
    assert sorted(loaded.signatures["serving_default"].structured_input_signature[1]) == [
        "image_bytes", "mask_bytes", "sketch_bytes"]


def test_sketch_reaches_only_guided_models(tmp_path):
    from inpainting.errors import ImageError
    from inpainting.inference.inpainter import Inpainter

    tf.keras.utils.set_random_seed(2)
    config = ModelConfig(version="v2", cnum=8, guided=True, image_size=(64, 64), local_size=(32, 32))
    generator = Generator(config)
    generator.build()
    for weight in generator.weights:  # at the initial scale gated layers shrink activations to nothing
        if weight.path.endswith("kernel"):
            weight.assign(weight * 2.5)
    inpainter = Inpainter(generator)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    mask = np.zeros((37, 45), np.float32)
    mask[8:30, 10:40] = 1
    lines = np.zeros_like(mask)
    lines[:, 20] = 1
    plain, sketched = inpainter(rgb, mask)["filled"], inpainter(rgb, mask, sketch=lines)["filled"]
    assert np.abs(plain - sketched)[mask > 0].max() > 1e-3
    # Lines outside the hole change nothing.
    outside = inpainter(rgb, mask, sketch=lines * (1 - mask))["filled"]
    np.testing.assert_allclose(outside, plain, atol=1e-4)
    unguided = Generator(ModelConfig(version="v2", cnum=8, image_size=(64, 64), local_size=(32, 32)))
    unguided.build()
    with pytest.raises(ImageError, match="a sketch was given but this model is not guided"):
        Inpainter(unguided)(rgb, mask, "photo.png", sketch=lines)
