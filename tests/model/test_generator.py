"""Tests of the generator: parity of v1, v2 and guided v2 with the original, masks, padding modes,
gradients."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import load_reference, write_tf1_checkpoint
from inpainting.checkpoints import tf1
from inpainting.config import ModelConfig
from inpainting.errors import CheckpointError
from inpainting.model.critics import make_critics
from inpainting.model.generator import Generator, StageRunner, forward
from layer_test import run_layer_test

# Also run with the other oneDNN mode by `make test` (see pytest.ini).
pytestmark = pytest.mark.onednn_modes

CASES = ["g_256x256_b1", "g_256x384_b1", "g_256x256_b2"]


@pytest.fixture(scope="module")
def official(official_checkpoint):
    return {impl: tf1.load_official_generator(official_checkpoint("v1"), attention=impl)
            for impl in ("matmul", "patches")}


@pytest.mark.slow
@pytest.mark.parametrize("implementation", ["matmul", "patches"])
@pytest.mark.parametrize("case", CASES)
def test_matches_original(official, case, implementation):
    ref = load_reference("v1", f"{case}.npz")
    # The original takes BGR; ours takes RGB and returns RGB: the outputs are channel-reversed.
    out = official[implementation]([ref["image"][..., ::-1], ref["mask"]])
    assert np.abs(out["coarse"].numpy()[..., ::-1] - ref["x_stage1"]).max() <= 1e-4  # measured 2.9e-6
    assert np.abs(out["refined"].numpy()[..., ::-1] - ref["x_stage2"]).max() <= 1e-4  # measured 2.7e-6
    offsets_equal = np.mean(np.all(out["offsets"].numpy() == ref["offsets_raw"], axis=-1))
    assert offsets_equal >= 0.99  # measured 1.0
    assert np.mean(out["flow"].numpy()[0] == ref["offset_flow"][0]) >= 0.99  # measured 1.0
    assert out["flow"].shape == ref["offset_flow"].shape


@pytest.mark.slow
def test_bgr_input_does_not_reproduce_the_original(official):
    # Guards the channel permutation: feeding the original's BGR layout must give other numbers.
    ref = load_reference("v1", "g_256x256_b1.npz")
    out = official["matmul"]([ref["image"], ref["mask"]])
    assert np.abs(out["refined"].numpy()[..., ::-1] - ref["x_stage2"]).max() > 1e-2


@pytest.fixture(scope="module")
def tiny():
    tf.keras.utils.set_random_seed(7)
    generator = Generator(ModelConfig(cnum=4))
    generator.build()
    return generator


def _inputs(batch, size=(40, 56), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, size=(batch, *size, 3)).astype(np.float32)
    mask = np.zeros((batch, *size, 1), np.float32)
    for i in range(batch):
        mask[i, 8 + 4 * i:24 + 4 * i, 10:30 + 3 * i] = 1
    return image, mask


def test_output_shapes_and_ranges(tiny):
    image, mask = _inputs(2)
    out = tiny([image, mask])
    assert out["coarse"].shape == out["refined"].shape == (2, 40, 56, 3)
    assert out["flow"].shape == (2, 10, 14, 3) and out["offsets"].shape == (2, 5, 7, 2)
    for key in ("coarse", "refined", "flow"):
        assert -1.0 <= out[key].numpy().min() and out[key].numpy().max() <= 1.0


def test_hole_content_is_ignored(tiny):
    # The generator masks its input: what is inside the hole cannot change the output.
    image, mask = _inputs(1)
    scribbled = np.where(mask > 0, np.float32(0.9), image)
    a, b = tiny([image, mask]), tiny([scribbled, mask])
    np.testing.assert_array_equal(a["refined"], b["refined"])


def test_per_example_masks_and_shared_mask(tiny):
    image, mask = _inputs(2)
    out = tiny([image, mask])
    for i in range(2):
        alone = tiny([image[i:i + 1], mask[i:i + 1]])
        np.testing.assert_allclose(out["refined"][i], alone["refined"][0], atol=1e-5)
    shared = tiny([image, mask[:1]])
    second_alone = tiny([image[1:], mask[:1]])
    np.testing.assert_allclose(shared["refined"][1], second_alone["refined"][0], atol=1e-5)


@pytest.mark.parametrize("padding", ["same", "reflect", "symmetric"])
def test_gradients_reach_every_weight(padding):
    generator = Generator(ModelConfig(cnum=4, padding=padding))
    generator.build()
    image, mask = _inputs(1, size=(32, 32))
    with tf.GradientTape() as tape:
        out = generator([image, mask])
        loss = tf.reduce_mean(tf.abs(out["coarse"] - image)) + tf.reduce_mean(tf.abs(out["refined"] - image))
    grads = tape.gradient(loss, generator.trainable_variables)
    assert len(generator.trainable_variables) == 84  # inpaint_net tensors in variables_v1.txt
    for variable, grad in zip(generator.trainable_variables, grads):
        assert grad is not None and np.abs(grad.numpy()).max() > 0, variable.path


def test_padding_modes_differ_and_mirror_matches_layer_semantics():
    image, mask = _inputs(1, size=(32, 32))
    outs = {}
    for padding in ("same", "reflect", "symmetric"):
        tf.keras.utils.set_random_seed(3)
        generator = Generator(ModelConfig(cnum=4, padding=padding))
        generator.build()
        outs[padding] = generator([image, mask])["refined"].numpy()
    assert np.abs(outs["same"] - outs["reflect"]).max() > 1e-4
    assert np.abs(outs["reflect"] - outs["symmetric"]).max() > 1e-4


def test_parameter_count_matches_original():
    generator = Generator(ModelConfig())
    generator.build()
    assert generator.count_params() == 3_601_542


def test_traces_once_for_all_sizes(tiny):
    run = tf.function(lambda image, mask: tiny([image, mask])["refined"],
                      input_signature=[tf.TensorSpec([None, None, None, 3]),
                                       tf.TensorSpec([None, None, None, 1])])
    for size in [(32, 48), (40, 24)]:
        image, mask = _inputs(1, size=size)
        np.testing.assert_allclose(run(image, mask), tiny([image, mask])["refined"], atol=1e-6)
    assert run.experimental_get_tracing_count() == 1


def test_rejects_bad_shapes(tiny):
    with pytest.raises(ValueError, match="multiples of 8"):
        tiny([np.zeros((1, 30, 32, 3), np.float32), np.zeros((1, 30, 32, 1), np.float32)])
    with pytest.raises(ValueError, match="does not match"):
        tiny([np.zeros((1, 32, 32, 3), np.float32), np.zeros((1, 32, 40, 1), np.float32)])
    with pytest.raises(ValueError, match="3 channels"):
        tiny([np.zeros((1, 32, 32, 4), np.float32), np.zeros((1, 32, 32, 1), np.float32)])


def test_config_round_trip(tiny):
    clone = Generator.from_config(tiny.get_config())
    assert clone.config == tiny.config and clone.attention_implementation == "matmul"


# ------------------------------------------------------------------------------------- v2

@pytest.fixture(scope="module")
def official_v2(official_checkpoint):
    return {impl: tf1.load_official_generator(official_checkpoint("v2"), version="v2", attention=impl)
            for impl in ("matmul", "patches")}


@pytest.mark.slow
@pytest.mark.parametrize("implementation", ["matmul", "patches"])
@pytest.mark.parametrize("case", CASES)
def test_v2_matches_original(official_v2, case, implementation):
    ref = load_reference("v2", f"{case}.npz")
    out = official_v2[implementation]([ref["image"][..., ::-1], ref["mask"]])
    assert np.abs(out["coarse"].numpy()[..., ::-1] - ref["x_stage1"]).max() <= 1e-4  # measured 4.9e-6
    assert np.abs(out["refined"].numpy()[..., ::-1] - ref["x_stage2"]).max() <= 1e-4  # measured 3.9e-6
    assert np.mean(np.all(out["offsets"].numpy() == ref["offsets_raw"], axis=-1)) >= 0.99  # measured 1.0
    # v2 enlarges the flow bilinearly; the colours are exact.
    assert np.mean(out["flow"].numpy() == ref["offset_flow"]) >= 0.99  # measured 1.0


@pytest.mark.slow
def test_guided_v2_matches_original(v2_variables, tmp_path):
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


# ------------------------------------------------------------------ the layer contract (layer_test)

@pytest.mark.parametrize("kwargs", [
    {"config": ModelConfig(cnum=4, padding="reflect", image_size=(32, 32), local_size=(16, 16)),
     "attention": "patches"},
    {"config": ModelConfig(version="v2", cnum=4, guided=True, image_size=(32, 32), local_size=(16, 16)),
     "flow_dtype": "float32", "attention_memory_mb": 64, "name": "guided_net"},
], ids=["v1", "v2_guided"])
def test_generator_model_contract(tmp_path, kwargs):
    # The gradients in a tf.function are the training tests' (tracing them here is slow).
    image, mask = _inputs(2, size=(24, 32))
    inputs = [image, mask[:1]] + [mask[::-1]] * kwargs["config"].guided
    generator = run_layer_test(
        Generator, kwargs, inputs, tmp_path=tmp_path,
        expected_output_shape={"coarse": (2, 24, 32, 3), "refined": (2, 24, 32, 3), "flow": (2, 6, 8, 3),
                               "offsets": (2, 3, 4, 2)},
        expected_output_dtype={"coarse": "float32", "refined": "float32", "flow": "float32", "offsets": "int32"},
        traced_gradients=False)
    assert generator.contextual_attention.memory_mb == kwargs.get("attention_memory_mb")


def test_stages_hold_every_convolution_in_network_order(tiny):
    stages = tiny.stages
    assert list(stages) == ["stage1", "conv_branch", "attention_in", "attention_out", "merge"]
    layers = [layer for stage in stages.values() for layer in stage]
    assert [layer.name for layer in layers] == list(tiny.conv_layers())
    assert all(layer is getattr(tiny, layer.name) for layer in layers)
    assert [layer.name for layer in stages["attention_out"]] == ["pmconv9", "pmconv10"]


class _RecordingRunner(StageRunner):
    """The one-graph stage runner, noting each stage it runs."""

    def __init__(self, generator, attention_first):
        super().__init__(generator)
        self.attention_first = attention_first
        self.order = []

    def run(self, stage, inputs):
        self.order.append(stage)
        return super().run(stage, inputs)

    def attend(self, features, mask):
        self.order.append("attention")
        return super().attend(features, mask)


@pytest.mark.parametrize("attention_first, order", [
    (False, ["stage1", "conv_branch", "attention_in", "attention", "attention_out", "merge"]),
    (True, ["stage1", "attention_in", "attention", "attention_out", "conv_branch", "merge"]),
])
def test_forward_runs_the_stages_through_its_runner(tiny, attention_first, order):
    image, mask = _inputs(2)
    runner = _RecordingRunner(tiny, attention_first)
    out = forward(tiny, runner, [image, mask])
    assert runner.order == order
    expected = tiny([image, mask])
    for key in ("coarse", "refined", "flow"):
        np.testing.assert_allclose(out[key], expected[key], atol=1e-6, err_msg=key)
    np.testing.assert_array_equal(out["offsets"], expected["offsets"])
