"""Tests of inpainting.inference.inpainter: images of any size through a generator, the memory estimates
that refuse images too large for the machine, and writing the results."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from conftest import box_mask, load_reference
from inpainting import imageio
from inpainting.checkpoints import store
from inpainting.config import ModelConfig
from inpainting.errors import ImageError
from inpainting.inference import inpainter
from inpainting.inference.inpainter import Inpainter
from inpainting.model.attention import SCORE_BYTES
from inpainting.model.generator import Generator


@pytest.fixture(scope="module")
def tiny_inpainter(tiny_checkpoint):
    return Inpainter(store.load_generator(tiny_checkpoint))


def test_any_size_is_padded_and_cropped_back(tiny_inpainter):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    mask = box_mask(37, 53, 10, 12, 9, 20)
    result = tiny_inpainter(rgb, mask)
    assert result["filled"].shape == (37, 53, 3) and result["flow"].shape == (37, 53, 3)
    # Same as running the generator on the mirror-padded 40x56 image and cropping.
    padded = np.pad(rgb, ((0, 3), (0, 3), (0, 0)), mode="symmetric").astype(np.float32) / 127.5 - 1
    holes = np.pad(mask, ((0, 3), (0, 3)))[None, :, :, None]
    refined = tiny_inpainter.generator([padded[None], holes])["refined"].numpy()[0]
    np.testing.assert_allclose(result["filled"], ((refined + 1) * 127.5)[:37, :53], atol=1e-3)
    assert tiny_inpainter._run.experimental_get_tracing_count() == 1
    tiny_inpainter(rgb[:20, :9], mask[:20, :9])  # another size, same graph
    assert tiny_inpainter._run.experimental_get_tracing_count() == 1


def test_tiny_image(tiny_inpainter):
    result = tiny_inpainter(np.full((1, 1, 3), 200, np.uint8), np.ones((1, 1), np.float32))
    assert result["filled"].shape == (1, 1, 3)


def test_huge_image_is_refused_before_running(tiny_inpainter):
    with pytest.raises(ImageError, match="too large to inpaint at full size"):
        tiny_inpainter.check_size(400000, 400000)


@pytest.mark.slow
def test_reference_photo_through_inpainter(official_checkpoint):
    # The full pipeline on the reference photo: uint8 in, the original network's refined output
    # pasted into the hole out.
    ref = load_reference("v1", "g_256x256_b1.npz")
    inpainter = Inpainter(store.load_generator(official_checkpoint("v1")))
    rgb = ref["image_u8_bgr"][0][..., ::-1]
    result = inpainter(rgb, ref["mask"][0, :, :, 0])
    expected = (ref["x_stage2"][0][..., ::-1] + 1) * 127.5
    assert np.abs(result["filled"] - expected).max() <= 1e-4 * 127.5 * 2


def test_attention_memory_budget_gives_the_same_result(tiny_checkpoint):
    whole = Inpainter(store.load_generator(tiny_checkpoint))
    # 0.05 MB holds a few grid rows of the 12x20 grid's scores: several blocks, and one piece below.
    budget = Inpainter(store.load_generator(tiny_checkpoint, attention_memory_mb=0.05))
    rng = np.random.default_rng(4)
    for height, width in ((90, 157), (20, 24)):
        rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        mask = box_mask(height, width, height // 4, width // 3, height // 2, width // 4)
        expected, got = whole(rgb, mask), budget(rgb, mask)
        np.testing.assert_allclose(got["filled"], expected["filled"], atol=1e-3)
        np.testing.assert_array_equal(got["flow"], expected["flow"])
    assert budget._run.experimental_get_tracing_count() == 1
    # Large images are streamed: memory grows with the area, not with its square.
    budget.check_size(8000, 8000)


@pytest.mark.onednn_modes
def test_sketch_reaches_only_guided_models(tmp_path):
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


# ---------------------------------------------------------------------- memory and sizes

def test_attention_memory_is_the_score_matrix_of_the_padded_grid():
    # One score per pair of positions of the 1/8 grid: 64x64 -> 8x8 positions, 65x64 -> 9x8.
    assert inpainter.attention_memory_bytes(64, 64) == 64 * 64 * SCORE_BYTES == 98304
    assert inpainter.attention_memory_bytes(65, 64) == 72 * 72 * SCORE_BYTES
    assert inpainter.attention_memory_bytes(1, 1) == SCORE_BYTES


def test_memory_estimate_of_whole_and_streamed_images():
    # Up to STREAM_PIXELS: the attention's score matrix, or the budget where that is smaller.
    assert inpainter.STREAM_PIXELS == 1536 * 1024
    assert inpainter.memory_bytes(1536, 1024) == inpainter.attention_memory_bytes(1536, 1024) == 24576 ** 2 * 24
    assert inpainter.memory_bytes(1536, 1024, memory_mb=100) == 100 * 2 ** 20
    assert inpainter.memory_bytes(64, 64, memory_mb=100) == 98304
    # Above it (streamed): 1 GiB, 200 bytes a pixel at cnum 32 (in proportion to cnum), and the
    # attention budget (1 GiB without one).
    assert inpainter.memory_bytes(2000, 1000) == 2 ** 30 + 200 * 2_000_000 + 2 ** 30
    assert inpainter.memory_bytes(2000, 1000, memory_mb=100, cnum=16) == 2 ** 30 + 100 * 2_000_000 + 100 * 2 ** 20
    # Linear in the area where the unstreamed graph would be quadratic.
    assert inpainter.memory_bytes(8000, 8000) < inpainter.attention_memory_bytes(8000, 8000) / 100


def test_check_size_message_names_the_image_and_what_to_do():
    inpainter.check_size(1000, 1000, "small.png")  # fits any machine this runs on
    with pytest.raises(ImageError) as excinfo:
        inpainter.check_size(400000, 300000, "photos/big.png", memory_mb=64)
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith("photos/big.png: 300000x400000 is too large to inpaint at full size on this "
                              "machine (it needs about ")
    assert message.endswith("; downscale it or inpaint crops around the holes (hr=resize or hr=crop)")
    # The command line names the flag.
    assert excinfo.value.describe(flags=True).endswith("(--hr=resize or --hr=crop)")
    needed = inpainter.memory_bytes(400000, 300000, 64) / 2 ** 30
    assert f"it needs about {needed:.0f} GiB, the machine has " in message


def test_inpainter_arguments_and_when_it_streams(tiny_inpainter):
    with pytest.raises(ValueError, match="attention must be one of .*got 'fast'"):
        Inpainter(tiny_inpainter.generator, attention="fast")
    assert not tiny_inpainter.guided
    assert not tiny_inpainter.streams(1536, 1024) and tiny_inpainter.streams(1536, 1025)
    assert Inpainter(tiny_inpainter.generator, attention="hole_only").streams(8, 8)


# ------------------------------------------------------------------------- writing results

def test_inpaint_image_writes_the_composed_image_and_the_flow(tiny_inpainter, tmp_path):
    # A 16-bit image with alpha: depth and alpha are kept, and only hole pixels change.
    rng = np.random.default_rng(5)
    bgra = rng.integers(0, 65536, (21, 30, 4), dtype=np.uint16)
    assert cv2.imwrite(str(tmp_path / "photo.png"), bgra)
    assert cv2.imwrite(str(tmp_path / "mask.png"), (box_mask(21, 30, 4, 6, 9, 12) * 255).astype(np.uint8))
    image = imageio.read_image(tmp_path / "photo.png")
    mask = imageio.read_mask(tmp_path / "mask.png", image.size)
    inpainter.inpaint_image(tiny_inpainter, image, mask, tmp_path / "out" / "filled.png",
                            flow_path=tmp_path / "flow.png")
    out = cv2.imread(str(tmp_path / "out" / "filled.png"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == (21, 30, 4)
    hole = mask > 0
    np.testing.assert_array_equal(out[~hole], bgra[~hole])
    np.testing.assert_array_equal(out[..., 3], bgra[..., 3])
    result = tiny_inpainter(image.rgb, mask)
    np.testing.assert_array_equal(out, imageio.compose(image, result["filled"], mask))
    assert np.any(out[hole][:, :3] != bgra[hole][:, :3])
    flow = cv2.imread(str(tmp_path / "flow.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(flow, result["flow"][..., ::-1])
    # Existing files are kept unless asked to replace them.
    with pytest.raises(ImageError, match="filled.png: file exists"):
        inpainter.inpaint_image(tiny_inpainter, image, mask, tmp_path / "out" / "filled.png")
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out" / "filled.png"), cv2.IMREAD_UNCHANGED), out)
    inpainter.inpaint_image(tiny_inpainter, image, mask, tmp_path / "out" / "filled.png", overwrite=True)
