"""Tests of the streamed generator: strips of convolutions and tiles of contextual attention."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import box_mask, load_reference, run_module
from inpainting import imageio
from inpainting.checkpoints import store
from inpainting.config import ModelConfig
from inpainting.inference import inpainter as inference
from inpainting.inference import streaming
from inpainting.model import attention
from inpainting.model.generator import Generator

# Also run with the other oneDNN mode by `make test` (see pytest.ini).
pytestmark = pytest.mark.onednn_modes


def _features(height, width, channels=6, seed=0):
    return np.random.default_rng(seed).normal(size=(height, width, channels)).astype(np.float32)


@pytest.mark.parametrize("size, tile, hole", [
    ((16, 24), (1, 8), (3, 5, 6, 6)),     # one-row tiles: every tile touches both wraps' rows
    ((16, 24), (3, 5), (3, 5, 6, 6)),     # sizes that divide neither axis
    ((20, 12), (10, 6), (0, 0, 8, 4)),    # whole grid width, hole at the corner
    ((16, 24), (8, 12), None),            # no hole
    ((12, 12), (2, 3), (0, 0, 12, 12)),   # all hole: no usable patch
])
def test_tiles_equal_the_whole_matrix(size, tile, hole):
    f = _features(*size)
    mask = box_mask(*size, *hole) if hole else np.zeros(size, np.float32)
    expected, expected_offsets = attention.attention_matmul(f[None], f[None], mask[None, :, :, None])
    y, offsets = streaming.attention_tiles(f, mask, tile=tile)
    np.testing.assert_allclose(y, expected[0], atol=1e-5)
    np.testing.assert_array_equal(offsets, expected_offsets[0])


@pytest.mark.parametrize("size, tile, ksize, rate, softmax_scale", [
    ((16, 24), (3, 5), 5, 2, 10.0),   # larger patches
    ((12, 18), (4, 7), 3, 1, 4.0),    # matching at full size, a softer softmax
    ((18, 24), (2, 3), 3, 3, 10.0),   # an odd rate
])
def test_tiles_take_the_attention_settings(size, tile, ksize, rate, softmax_scale):
    f = _features(*size)
    mask = box_mask(*size, 3, 5, 6, 6)
    settings = dict(ksize=ksize, rate=rate, softmax_scale=softmax_scale)
    expected, expected_offsets = attention.attention_matmul(f[None], f[None], mask[None, :, :, None],
                                                            **settings)
    y, offsets = streaming.attention_tiles(f, mask, tile=tile, **settings)
    np.testing.assert_allclose(y, expected[0], atol=1e-5)
    np.testing.assert_array_equal(offsets, expected_offsets[0])
    with pytest.raises(ValueError, match="multiples of rate=5"):
        streaming.attention_tiles(f, mask, ksize=ksize, rate=5)


def test_tiles_report_progress():
    calls = []
    streaming.attention_tiles(_features(16, 24), box_mask(16, 24, 3, 5, 6, 6), tile=(3, 5),
                              progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 9) for i in range(1, 10)]  # 3 x 5 tiles on the 8 x 12 grid: 3 rows of 3


def test_hole_only_matches_near_the_hole_and_copies_itself_far_from_it():
    f = _features(64, 64)
    mask = box_mask(64, 64, 4, 4, 8, 8)  # grid cells 2..5 of 32
    exact, exact_offsets = streaming.attention_tiles(f, mask, tile=(4, 4))
    approx, offsets = streaming.attention_tiles(f, mask, tile=(4, 4), mode="hole_only")
    # Tiles within HOLE_ONLY_REACH = 2 cells of the hole (grid rows and columns 0..7) are matched.
    np.testing.assert_allclose(approx[:14, :14], exact[:14, :14], atol=1e-5)
    np.testing.assert_array_equal(offsets[:8, :8], exact_offsets[:8, :8])
    # The others paste their own patch: away from the map's border the output is the input.
    np.testing.assert_allclose(approx[18:62, 18:62], f[18:62, 18:62], atol=1e-6)
    assert not offsets[8:].any() and not offsets[:, 8:].any()
    # Strong features match themselves anyway (above, equal to rounding); weak ones spread their
    # weight over many patches, and there the approximation shows.
    weak, _ = streaming.attention_tiles(f * 0.01, mask, tile=(4, 4))
    weak_approx, _ = streaming.attention_tiles(f * 0.01, mask, tile=(4, 4), mode="hole_only")
    assert np.abs(weak_approx - weak)[18:62, 18:62].mean() > 1e-3


def test_tile_shape_fits_the_budget_and_grows_with_it():
    def need(rows, cols, h, w):
        extended = (min(rows + 2, h) + 2) * (cols + 2)
        return h * w * 4 * (2 * extended + 2 * (rows + 4) * cols + 5 * rows * cols)

    small, large = streaming.tile_shape(512, 512, 256), streaming.tile_shape(512, 512, 2048)
    assert need(*small, 512, 512) <= 256 * 2 ** 20 and need(*large, 512, 512) <= 2048 * 2 ** 20
    assert small[0] * small[1] < large[0] * large[1]
    assert streaming.tile_shape(8, 8, 1024) == (8, 8)  # a small map is one tile


def test_tile_mode_is_checked():
    with pytest.raises(ValueError, match="hole_only"):
        streaming.attention_tiles(_features(8, 8), np.zeros((8, 8), np.float32), mode="holes")


@pytest.mark.parametrize("version, padding, guided, memory_mb", [
    ("v1", "same", False, 0.001),      # one-row strips everywhere
    ("v1", "reflect", False, 0.05),    # mirror padding, strips of several rows
    ("v1", "symmetric", False, 0.02),
    ("v2", "same", True, 0.01),        # gated, guided
])
def test_streamed_generator_equals_the_graph(version, padding, guided, memory_mb):
    tf.keras.utils.set_random_seed(3)
    generator = Generator(ModelConfig(cnum=4, version=version, padding=padding, guided=guided))
    generator.build()
    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 1, (48, 72, 3)).astype(np.float32)
    mask = box_mask(48, 72, 10, 20, 20, 30)
    inputs = [image[None], mask[None, :, :, None]]
    sketch = None
    if guided:
        sketch = (rng.uniform(size=(48, 72)) > 0.8).astype(np.float32)
        inputs.append(sketch[None, :, :, None])
    expected = generator(inputs)
    stages = []
    streamed = streaming.StreamedGenerator(generator, memory_mb,
                                           progress=lambda done, total, what: stages.append(what))
    refined, flow = streamed(image, mask, sketch)
    np.testing.assert_allclose(refined, expected["refined"][0], atol=1e-5)
    np.testing.assert_array_equal(flow, expected["flow"][0])
    assert [s for i, s in enumerate(stages) if s != stages[i - 1] or i == 0] == [
        "stage1", "attention_in", "attention", "attention_out", "conv_branch", "merge"]


def test_streamed_generator_takes_the_settings_of_the_attention_layer():
    tf.keras.utils.set_random_seed(3)
    generator = Generator(ModelConfig(cnum=4))
    generator.build()
    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 1, (48, 72, 3)).astype(np.float32)
    mask = box_mask(48, 72, 10, 20, 20, 30)
    inputs = [image[None], mask[None, :, :, None]]
    default = generator(inputs)
    layer = generator.contextual_attention
    layer.ksize, layer.rate, layer.softmax_scale = 5, 3, 2.0  # the features (12 x 18) divide by 3
    expected = generator(inputs)
    assert np.abs(expected["refined"] - default["refined"]).max() > 1e-3
    refined, flow = streaming.StreamedGenerator(generator, 0.05)(image, mask)
    np.testing.assert_allclose(refined, expected["refined"][0], atol=1e-5)
    np.testing.assert_array_equal(flow, expected["flow"][0])


def test_streamed_generator_needs_the_fuse_step():
    generator = Generator(ModelConfig(cnum=4))
    generator.contextual_attention.fuse = False
    with pytest.raises(ValueError, match="fuse step with fuse_k=3, got fuse=False"):
        streaming.StreamedGenerator(generator)


def test_streamed_generator_refuses_sizes_off_the_grid(tiny_generator):
    with pytest.raises(ValueError, match="multiples of 8"):
        streaming.StreamedGenerator(tiny_generator)(np.zeros((20, 24, 3), np.float32),
                                                    np.zeros((20, 24), np.float32))


@pytest.fixture(scope="module")
def tiny_generator():
    tf.keras.utils.set_random_seed(4)
    generator = Generator(ModelConfig(cnum=4))
    generator.build()
    return generator


def test_inpainter_streams_large_images_with_the_same_result(tiny_generator, monkeypatch):
    rgb = np.random.default_rng(2).integers(0, 256, (61, 90, 3), dtype=np.uint8)
    mask = box_mask(61, 90, 20, 30, 15, 25)
    graph = inference.Inpainter(tiny_generator)
    assert not graph.streams(64, 96)
    expected = graph(rgb, mask)
    monkeypatch.setattr(inference, "STREAM_PIXELS", 64 * 96 - 1)
    streamed = inference.Inpainter(tiny_generator)
    assert streamed.streams(64, 96)
    result = streamed(rgb, mask)
    np.testing.assert_allclose(result["filled"], expected["filled"], atol=1e-3)
    np.testing.assert_array_equal(result["flow"], expected["flow"])
    assert result["filled"].shape == (61, 90, 3)


def test_inpainter_hole_only_always_streams(tiny_generator):
    inpainter = inference.Inpainter(tiny_generator, attention="hole_only")
    assert inpainter.streams(64, 64)
    with pytest.raises(ValueError, match="exact"):
        inference.Inpainter(tiny_generator, attention="fast")


def test_streamed_memory_estimate_is_refused_beyond_this_machine(tiny_generator):
    inpainter = inference.Inpainter(tiny_generator)
    inpainter.check_size(4096, 4096)
    with pytest.raises(imageio.ImageError, match=r"too large to inpaint at full size .*\(hr=resize or hr=crop\)"):
        inpainter.check_size(400_000, 400_000, "huge.png")


def test_cli_hole_only_equals_the_library(tmp_path, tiny_checkpoint):
    rgb = np.random.default_rng(5).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    mask = box_mask(96, 128, 8, 10, 12, 14)
    imageio.write_image(str(tmp_path / "in.png"), rgb[..., ::-1])
    imageio.write_image(str(tmp_path / "mask.png"), (mask * 255).astype(np.uint8))
    result = run_module("inpainting.inpaint", f"--checkpoint={tiny_checkpoint}", "--attention=hole_only",
                        f"--image={tmp_path / 'in.png'}", f"--mask={tmp_path / 'mask.png'}",
                        f"--output={tmp_path / 'out.png'}", f"--flow={tmp_path / 'flow.png'}")
    assert result.returncode == 0, result.stderr
    expected = inference.Inpainter(store.load_generator(tiny_checkpoint), "hole_only")(rgb, mask)
    out = imageio.read_image(str(tmp_path / "out.png")).rgb
    np.testing.assert_array_equal(out[mask == 0], rgb[mask == 0])
    np.testing.assert_allclose(out[mask == 1], np.clip(np.rint(expected["filled"][mask == 1]), 0, 255),
                               atol=1)
    flow = imageio.read_image(str(tmp_path / "flow.png")).rgb
    np.testing.assert_array_equal(flow, expected["flow"])
    assert (flow[48:, 64:] == 255).all()  # far from the hole: offset 0, white


@pytest.mark.slow
def test_reference_v1_streamed_equals_one_graph_at_512x680(official_checkpoint):
    generator = store.load_generator(official_checkpoint("v1"))
    photo = load_reference("v1", "g_256x256_b1.npz")["image_u8_bgr"][0][..., ::-1]
    rgb = np.ascontiguousarray(np.tile(photo, (2, 3, 1))[:512, :680])
    mask = box_mask(512, 680, 150, 200, 180, 260)
    whole = generator([tf.constant(rgb[None] / 127.5 - 1, tf.float32), tf.constant(mask[None, :, :, None])])
    refined, flow = streaming.StreamedGenerator(generator, memory_mb=64)(
        (rgb / 127.5 - 1).astype(np.float32), mask)
    np.testing.assert_allclose(refined, whole["refined"][0], atol=1e-4)
    np.testing.assert_array_equal(flow, whole["flow"][0])


def _attention_inputs(generator, inputs):
    """(output, the [f, b, mask] its contextual attention was called with) of one generator call."""
    layer = generator.contextual_attention
    seen = []
    call = layer.call
    layer.call = lambda attention_inputs: seen.append(attention_inputs) or call(attention_inputs)
    try:
        return generator(inputs), seen[-1]
    finally:
        del layer.call


def _near_ties(scores, usable, rtol=1e-5):
    """Per position of the grid, the usable patches whose score is the row's best up to rounding
    (`rtol` of the largest score magnitude): bool [P, L], and that tolerance."""
    scores = np.where(usable > 0, scores, -np.inf)
    tolerance = rtol * np.abs(scores[np.isfinite(scores)]).max()
    return scores >= scores.max(axis=1, keepdims=True) - tolerance, tolerance


@pytest.mark.slow
def test_reference_v1_chunked_and_streamed_equal_unchunked_at_640(official_checkpoint):
    """640x640 (an 80x80 attention grid, 6400**2 scores): the unchunked model against the
    one-graph model with row blocks (3 grid rows each, which does not divide 80) and against the
    streamed generator.

    The photo is tiled 3x3 (and cropped), so many background patches are exact copies of each other and their
    scores tie exactly. Which of tied patches the argmax picks depends on the order of the float
    sums, which differs between the formulations and between CPU kernels (oneDNN on or off, AVX2 or
    AVX-512). So the offsets must be equal except where the offset each path chose is among the
    patches whose score is the best up to rounding, in the one-piece score matrix; the output,
    a softmax-weighted sum, does not care."""
    path = official_checkpoint("v1")
    photo = load_reference("v1", "g_256x256_b1.npz")["image_u8_bgr"][0][..., ::-1]
    image = (np.tile(photo, (3, 3, 1))[:640, :640] / 127.5 - 1).astype(np.float32)
    mask = box_mask(640, 640, 190, 240, 210, 190)
    inputs = [tf.constant(image[None]), tf.constant(mask[None, :, :, None])]
    unchunked, (features, _, small_mask) = _attention_inputs(store.load_generator(path), inputs)
    scores, usable = attention.matching_scores(features, features, small_mask)
    ties, tolerance = _near_ties(scores[0].numpy(), usable[0].numpy())
    del scores, usable
    grid = 80
    tied = ties.sum(axis=1) > 1  # positions where more than one patch is best up to rounding
    assert 0 < tied.sum() < grid * grid, "the tiled photo should have exact ties, and not only"

    chunked_generator = store.load_generator(path, attention_memory_mb=64)
    assert int(attention.block_rows_for(grid, grid, 64)) == 3
    chunked = chunked_generator(inputs)
    np.testing.assert_allclose(chunked["refined"], unchunked["refined"], atol=1e-4)
    # Every offset of the row-block model points at a patch of best score up to rounding.
    offsets = chunked["offsets"][0].numpy().reshape(-1, 2)
    positions = np.arange(grid * grid)
    chosen = (positions // grid + offsets[:, 0]) * grid + positions % grid + offsets[:, 1]
    assert ties[positions, chosen].all(), (
        f"offsets at {np.flatnonzero(~ties[positions, chosen])[:10]} miss the best score by more "
        f"than {tolerance}")
    differ = np.any(chunked["offsets"][0] != unchunked["offsets"][0], axis=-1).reshape(-1)
    assert not (differ & ~tied).any()
    np.testing.assert_array_equal(np.repeat(np.repeat(differ.reshape(grid, grid), 2, 0), 2, 1),
                                  np.any(chunked["flow"][0] != unchunked["flow"][0], axis=-1))

    refined, flow = streaming.StreamedGenerator(chunked_generator, memory_mb=64)(image, mask)
    np.testing.assert_allclose(refined, unchunked["refined"][0], atol=1e-4)
    # The streamed flow differs only at the (2x2-pixel) positions with tied best patches.
    flow_differs = np.any(flow != unchunked["flow"][0].numpy(), axis=-1)
    assert not (flow_differs & ~np.repeat(np.repeat(tied.reshape(grid, grid), 2, 0), 2, 1)).any()