"""Tests of inpainting.model.flow: colour coding of attention offsets and upsampling of the flow image."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import load_reference
from inpainting.model.flow import flow_to_color, upsample_flow

CA_CASES = ["A", "B_fuse", "B_fuse_mask", "B_nofuse"]
GENERATOR_FILES = {
    "v1": ["g_256x256_b1.npz", "g_256x256_b2.npz", "g_256x384_b1.npz"],
    "v2": ["g_256x256_b1.npz", "g_256x256_b2.npz", "g_256x384_b1.npz", "g_guided_256x256_b1.npz"],
}
METHOD = {"v1": "nearest", "v2": "bilinear"}
CA_FLOW_FILE = {"v1": "contextual_attention.npz", "v2": "contextual_attention_flow.npz"}
REFERENCE_CASES = [(version, f"ca:{case}") for version in ("v1", "v2") for case in CA_CASES] + [
    (version, name) for version, names in GENERATOR_FILES.items() for name in names]


def _load_case(version, name):
    """(offsets_raw [B,h,w,2] int16, flow [B,2h,2w,3] float32) of one stored reference case."""
    if name.startswith("ca:"):
        case = name[3:]
        offsets = load_reference("v1", "contextual_attention.npz")[f"offsets_raw_{case}"]
        flow_file = CA_FLOW_FILE[version]
        return offsets, load_reference(version, flow_file)[f"flow_{case}"]
    data = load_reference(version, name)
    return data["offsets_raw"], data["offset_flow"]


def _fraction_equal(actual, expected):
    assert actual.shape == expected.shape
    return float(np.mean(actual == expected))


def _levels(image):
    """Flow image values k / 127.5 - 1 back to the integers k."""
    return np.round((np.asarray(image, np.float64) + 1.0) * 127.5).astype(np.int64)


def _numpy_flow_to_color(offsets):
    """Straightforward float64 numpy version of the colour coding, one image at a time."""
    wheel = []
    for i in range(15):
        wheel.append([255, np.floor(255 * i / 15), 0])
    for i in range(6):
        wheel.append([255 - np.floor(255 * i / 6), 255, 0])
    for i in range(4):
        wheel.append([0, 255, np.floor(255 * i / 4)])
    for i in range(11):
        wheel.append([0, 255 - np.floor(255 * i / 11), 255])
    for i in range(13):
        wheel.append([np.floor(255 * i / 13), 0, 255])
    for i in range(6):
        wheel.append([255, 0, 255 - np.floor(255 * i / 6)])
    wheel = np.array(wheel, np.float64)

    images, maxrad = [], -1.0
    for image in np.asarray(offsets, np.float64):
        u, v = image[..., 0], image[..., 1]
        maxrad = max(maxrad, np.max(np.sqrt(u ** 2 + v ** 2)))
        u = u / (maxrad + np.finfo(np.float64).eps)
        v = v / (maxrad + np.finfo(np.float64).eps)
        rad = np.sqrt(u ** 2 + v ** 2)
        fk = (np.arctan2(-v, -u) / np.pi + 1) / 2 * 54 + 1
        k0 = np.floor(fk).astype(int)
        k1 = np.where(k0 + 1 == 56, 1, k0 + 1)
        f = fk - k0
        channels = []
        for c in range(3):
            col0, col1 = wheel[k0 - 1, c] / 255, wheel[k1 - 1, c] / 255  # divide first
            col = (1 - f) * col0 + f * col1
            col = np.where(rad <= 1, 1 - rad * (1 - col), col * 0.75)
            channels.append(np.floor(255 * col))
        images.append(np.stack(channels, axis=-1))
    return np.stack(images).astype(np.int64)


@pytest.mark.parametrize("name", [name for version, name in REFERENCE_CASES if version == "v1"])
def test_v1_reference_float64_exact(name):
    offsets, expected = _load_case("v1", name)
    actual = upsample_flow(flow_to_color(offsets, tf.float64), 2, "nearest").numpy()
    assert actual.dtype == np.float32
    fraction = _fraction_equal(actual, expected)
    assert fraction == 1.0, f"{name}: only {fraction:.6f} of the values are equal"


@pytest.mark.parametrize("version,name", REFERENCE_CASES)
def test_reference_float32(version, name):
    # Measured: every v1 and v2 reference case is 100% equal with float32 too (bilinear for v2).
    offsets, expected = _load_case(version, name)
    actual = upsample_flow(flow_to_color(offsets, tf.float32), 2, METHOD[version]).numpy()
    fraction = _fraction_equal(actual, expected)
    assert fraction >= 0.99, f"{version} {name}: only {fraction:.6f} of the values are equal"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1.0 / 127.5 + 1e-6)


@pytest.mark.parametrize("name", [name for version, name in REFERENCE_CASES if version == "v2"])
def test_v2_reference_bilinear(name):
    # Measured: bit-exact for every case.
    offsets, expected = _load_case("v2", name)
    actual = upsample_flow(flow_to_color(offsets, tf.float64), 2, "bilinear").numpy()
    assert np.max(np.abs(actual - expected)) <= 1e-6
    assert _fraction_equal(actual, expected) >= 0.99


def test_reference_offsets_match_numpy_version():
    # The reference offsets through the independent numpy version give the stored colours too.
    offsets, expected = _load_case("v1", "g_256x256_b2.npz")
    np.testing.assert_array_equal(np.repeat(np.repeat(_numpy_flow_to_color(offsets), 2, 1), 2, 2),
                                  _levels(expected))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_batch_running_maximum_reference(version):
    offsets, expected = _load_case(version, "g_256x256_b2.npz")
    radius = np.sqrt(np.sum(offsets.astype(np.float64) ** 2, axis=-1)).reshape(2, -1).max(axis=1)
    # Item 1 has the larger maximum in both files (v1: 17.7 then 24.7), so item 1 is normalised by
    # its own maximum and item 0 must NOT be normalised by the batch-wide one.
    assert radius[1] > radius[0]
    batch = upsample_flow(flow_to_color(offsets), 2, METHOD[version]).numpy()
    np.testing.assert_array_equal(batch, expected)
    for i in range(2):
        alone = upsample_flow(flow_to_color(offsets[i:i + 1]), 2, METHOD[version]).numpy()
        np.testing.assert_array_equal(alone[0], expected[i])

    # Reversed batch: item 0 now comes second and is normalised by item 1's larger maximum, which
    # changes its colours.
    reversed_batch = flow_to_color(offsets[::-1]).numpy()
    np.testing.assert_array_equal(_levels(reversed_batch), _numpy_flow_to_color(offsets[::-1]))
    item0_second = upsample_flow(reversed_batch[1:], 2, METHOD[version]).numpy()
    assert _fraction_equal(item0_second[0], expected[0]) < 0.9


def test_batch_running_maximum_synthetic():
    rng = np.random.default_rng(3)
    small, middle, big = (rng.integers(-r, r + 1, size=(6, 7, 2)) for r in (1, 3, 7))
    small[0, 0], middle[0, 0], big[0, 0] = (2, 0), (-5, 0), (0, 10)  # maxima 2, 5, 10
    colours = _levels(flow_to_color(np.stack([small, big, middle]).astype(np.int32)))
    np.testing.assert_array_equal(colours[0], _levels(flow_to_color(small[None]))[0])
    np.testing.assert_array_equal(colours[1], _levels(flow_to_color(big[None]))[0])
    # The last image is normalised by 10 (the running maximum), like a copy of it that has a
    # radius-10 offset in one pixel.
    widened = middle.copy()
    widened[5, 6] = (6, 8)
    expected = _levels(flow_to_color(widened[None]))[0]
    mask = np.ones((6, 7), bool)
    mask[5, 6] = False
    np.testing.assert_array_equal(colours[2][mask], expected[mask])
    assert np.any(colours[2][mask] != _levels(flow_to_color(middle[None]))[0][mask])


@pytest.mark.parametrize("radius", [1, 2, 3, 7, 30, 100])
def test_matches_numpy_version_float64(radius):
    rng = np.random.default_rng(radius)
    offsets = rng.integers(-radius, radius + 1, size=(3, 24, 20, 2)).astype(np.int32)
    offsets[1, :4] = 0
    actual = _levels(flow_to_color(offsets, tf.float64))
    fraction = _fraction_equal(actual, _numpy_flow_to_color(offsets))
    assert fraction == 1.0, f"radius {radius}: only {fraction:.6f} of the values are equal"


def test_all_offsets_of_a_disk():
    # Every integer offset with dy^2 + dx^2 <= 45^2, as one image (maximum radius 45 exactly).
    dy, dx = np.meshgrid(np.arange(-45, 46), np.arange(-45, 46), indexing="ij")
    offsets = np.stack([dy, dx], axis=-1)[None].astype(np.int32)
    offsets[0][dy * dy + dx * dx > 45 * 45] = 0
    expected = _numpy_flow_to_color(offsets)
    assert _fraction_equal(_levels(flow_to_color(offsets, tf.float64)), expected) == 1.0
    # float32 is one level off at points where the exact value is an integer and the rounding
    # errors of float32 and float64 land on different sides of it. Measured on this disk: 99.80%
    # of the values inside it equal (99.84% of the whole image). Over the disks of integer radius 1..64 (where such exact
    # points are common): 87.4% (radius 3), 97-99% for radius <= 17, 99.2-99.997% above. Over
    # disks with a non-integer maximum radius (657 of them): 99.989% overall.
    actual32 = _levels(flow_to_color(offsets, tf.float32))
    assert _fraction_equal(actual32, expected) >= 0.99
    assert np.max(np.abs(actual32 - expected)) <= 1


def test_hand_computed_colours():
    offsets = np.array([[[[0, 3], [0, 0], [3, 0], [0, -3], [1, 1]]]], np.int32)  # maximum radius 3

    # (dy, dx) = (0, 3): u = 0, v = 3 / (3 + eps) = 1, rad = 1; a = atan2(-1, -0.0) / pi = -0.5,
    # fk = 0.5 / 2 * 54 + 1 = 14.5, so k0 = 14, k1 = 15, f = 0.5: half of wheel rows 13 and 14,
    # (255, floor(255*13/15), 0) = (255, 221, 0) and (255, floor(255*14/15), 0) = (255, 238, 0).
    # rad <= 1 keeps the colour as it is: G = floor(255 * (221 + 238) / 2 / 255) = floor(229.5).
    col = 0.5 * np.array([255.0, 221.0, 0.0]) / 255 + 0.5 * np.array([255.0, 238.0, 0.0]) / 255
    col = 1 - 1.0 * (1 - col)
    assert np.floor(255 * col).tolist() == [255, 229, 0]
    # (0, 0): rad = 0 -> white. (3, 0): a = atan2(-0.0, -1) / pi = -1, fk = 1 -> wheel row 0, red.
    # (0, -3): a = atan2(1, -0.0) / pi = 0.5, fk = 41.5 -> half of rows 40 and 41 (blue-magenta
    # i = 4, 5): R = (floor(255*4/13) + floor(255*5/13)) / 2 = (78 + 98) / 2 = 88.
    # (1, 1): rad = sqrt(2)/3, a = -0.75, fk = 7.75 -> rows 6, 7 (G = 102, 119) with f = 0.75:
    # G = 1 - rad * (1 - (0.25*102 + 0.75*119) / 255) -> 188, B = 1 - rad -> 134.
    rad = np.sqrt(2) / 3
    green = np.floor(255 * (1 - rad * (1 - (0.25 * 102 + 0.75 * 119) / 255)))
    blue = np.floor(255 * (1 - rad))
    assert (green, blue) == (188, 134)
    expected = [[255, 229, 0], [255, 255, 255], [255, 0, 0], [88, 0, 255], [255, 188, 134]]
    actual = flow_to_color(offsets, tf.float64).numpy()
    assert actual.dtype == np.float32
    np.testing.assert_array_equal(_levels(actual)[0, 0], expected)
    np.testing.assert_array_equal(_numpy_flow_to_color(offsets)[0, 0], expected)
    # Values are exactly the levels the original produces (k * float32(1/127.5) - 1 in float32).
    levels = np.array(expected, np.float32)
    np.testing.assert_array_equal(actual[0, 0], levels * (np.float32(1) / np.float32(127.5)) - 1)
    # float32 lands just below the exact 88 of (0, -3) and gives 87; everything else is equal.
    actual32 = _levels(flow_to_color(offsets, tf.float32))[0, 0]
    assert actual32[3, 0] == 87
    actual32[3, 0] = 88
    np.testing.assert_array_equal(actual32, expected)


def test_negative_zero_reaches_the_last_wheel_row():
    # Float offsets can carry -0.0: then -dx = +0.0, atan2(+0.0, -1) = +pi, fk = 55, k1 wraps to 1
    # with f = 0, so the colour is the last wheel row (255, 0, 255 - floor(255*5/6)) = (255, 0, 43)
    # instead of the first one (red) that dx = +0.0 gives.
    offsets = np.array([[[[3.0, -0.0], [3.0, 0.0]]]], np.float32)
    expected = [[255, 0, 43], [255, 0, 0]]
    np.testing.assert_array_equal(_levels(flow_to_color(offsets, tf.float64))[0, 0], expected)
    np.testing.assert_array_equal(_numpy_flow_to_color(offsets)[0, 0], expected)
    # In float32, 255 * (43 / 255) rounds to just below 43.
    np.testing.assert_array_equal(_levels(flow_to_color(offsets, tf.float32))[0, 0],
                                  [[255, 0, 42], [255, 0, 0]])


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32])
def test_zero_offsets_are_white(dtype):
    for offsets in (np.zeros((1, 4, 5, 2), np.int32), np.zeros((3, 2, 7, 2), np.int16)):
        actual = flow_to_color(offsets, dtype).numpy()
        assert actual.shape == offsets.shape[:3] + (3,)
        np.testing.assert_array_equal(actual, np.ones_like(actual))


def test_dynamic_shapes_in_tf_function():
    graph_flow = tf.function(
        lambda x: upsample_flow(flow_to_color(x, tf.float64), 2, "nearest"),
        input_signature=[tf.TensorSpec([None, None, None, 2], tf.int32)])
    graph_flow32 = tf.function(
        lambda x: upsample_flow(flow_to_color(x, tf.float32), 2, "bilinear"),
        input_signature=[tf.TensorSpec([None, None, None, 2], tf.int32)])

    zeros = graph_flow(tf.zeros([3, 5, 6, 2], tf.int32)).numpy()
    assert zeros.shape == (3, 10, 12, 3)
    np.testing.assert_array_equal(zeros, np.ones_like(zeros))
    # A zero image first in the batch stays white; the next one is coloured by its own offsets.
    rng = np.random.default_rng(5)
    offsets = rng.integers(-9, 10, size=(2, 3, 7, 2)).astype(np.int32)
    offsets[0] = 0
    mixed = _levels(graph_flow(offsets).numpy())
    np.testing.assert_array_equal(mixed[:, ::2, ::2], _numpy_flow_to_color(offsets))
    assert np.all(mixed[0] == 255) and np.any(mixed[1] != 255)

    for version, flow_fn in (("v1", graph_flow), ("v2", graph_flow32)):
        offsets, expected = _load_case(version, "g_256x384_b1.npz")
        np.testing.assert_array_equal(flow_fn(offsets.astype(np.int32)).numpy(), expected)
        offsets, expected = _load_case(version, "g_256x256_b2.npz")
        np.testing.assert_array_equal(flow_fn(offsets.astype(np.int32)).numpy(), expected)


@pytest.mark.parametrize("shape,factor", [
    ((2, 5, 7, 3), 2), ((1, 3, 1, 3), 3), ((1, 1, 1, 3), 2), ((1, 1, 1, 3), 1), ((2, 9, 4, 3), 4),
    ((1, 33, 17, 3), 2)])
def test_bilinear_matches_tf1_resize(shape, factor):
    # Measured: bit-exact on these shapes.
    x = np.random.default_rng(sum(shape)).uniform(-1, 1, size=shape).astype(np.float32)
    size = [shape[1] * factor, shape[2] * factor]
    expected = tf.compat.v1.image.resize_bilinear(x, size, align_corners=True).numpy()
    actual = upsample_flow(x, factor, "bilinear").numpy()
    assert actual.shape == expected.shape
    assert np.max(np.abs(actual - expected)) <= 1e-6
    graph = tf.function(lambda t: upsample_flow(t, factor, "bilinear"),
                        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    np.testing.assert_array_equal(graph(x).numpy(), actual)


@pytest.mark.parametrize("shape,factor", [((2, 5, 7, 3), 2), ((1, 3, 4, 3), 3), ((1, 2, 2, 3), 1)])
def test_nearest_is_pixel_repetition(shape, factor):
    x = np.random.default_rng(0).uniform(-1, 1, size=shape).astype(np.float32)
    expected = np.repeat(np.repeat(x, factor, axis=1), factor, axis=2)
    np.testing.assert_array_equal(upsample_flow(x, factor).numpy(), expected)
    if factor == 2:  # what the original calls; it picks other pixels for larger factors
        size = [shape[1] * 2, shape[2] * 2]
        original = tf.compat.v1.image.resize_nearest_neighbor(x, size, align_corners=True)
        np.testing.assert_array_equal(original.numpy(), expected)


def test_invalid_arguments():
    flow = tf.zeros([1, 2, 2, 3])
    with pytest.raises(ValueError, match="method"):
        upsample_flow(flow, 2, "bicubic")
    for factor in (0, 1.5, -2):
        with pytest.raises(ValueError, match="factor"):
            upsample_flow(flow, factor)
    with pytest.raises(ValueError, match="dtype"):
        flow_to_color(tf.zeros([1, 2, 2, 2], tf.int32), tf.int32)
