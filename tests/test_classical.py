"""Tests of OpenCV's classical fills: the same numbers as cv2.inpaint, in RGB, hole not read."""

import cv2
import numpy as np
import pytest

from inpainting import classical


def _photo_and_hole():
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:36, 0:44] / 44.0
    smooth = np.stack([np.sin(5 * x), np.cos(4 * y), np.sin(3 * (x + y))], axis=-1)
    rgb = (127.5 * (smooth + 1) + rng.normal(0, 6, smooth.shape)).clip(0, 255).astype(np.uint8)
    hole = np.zeros((36, 44), np.float32)
    hole[8:24, 10:30] = 1
    hole[30:34, 2:6] = 1
    return rgb, hole


@pytest.mark.parametrize("method, flag", [("telea", cv2.INPAINT_TELEA), ("ns", cv2.INPAINT_NS)])
@pytest.mark.parametrize("radius", [3, 5])
def test_equals_cv2_inpaint_on_the_bgr_image_and_8_bit_mask(method, flag, radius):
    rgb, hole = _photo_and_hole()
    hidden = np.where(hole[:, :, None] > 0.5, np.uint8(0), rgb)
    expected = cv2.inpaint(np.ascontiguousarray(hidden[:, :, ::-1]), (hole * 255).astype(np.uint8),
                           radius, flag)[:, :, ::-1]
    filled = classical.inpaint(rgb, hole, method, radius)
    assert filled.dtype == np.float32 and filled.shape == rgb.shape
    np.testing.assert_array_equal(filled, expected.astype(np.float32))
    # Outside the hole the image is kept; inside it is filled (not left black).
    np.testing.assert_array_equal(filled[hole == 0], rgb[hole == 0])
    assert filled[hole == 1].mean() > 40


def test_the_holes_pixels_are_not_read_and_a_channel_axis_is_accepted():
    rgb, hole = _photo_and_hole()
    scrambled = rgb.copy()
    scrambled[hole > 0.5] = 255 - scrambled[hole > 0.5]
    for method in classical.METHODS:
        filled = classical.inpaint(rgb, hole, method)
        np.testing.assert_array_equal(classical.inpaint(scrambled, hole, method), filled)
        np.testing.assert_array_equal(classical.inpaint(rgb, hole[:, :, None], method), filled)


def test_default_radius_and_unknown_method():
    rgb, hole = _photo_and_hole()
    np.testing.assert_array_equal(classical.inpaint(rgb, hole, "ns"),
                                  classical.inpaint(rgb, hole, "ns", radius=3))
    assert classical.DEFAULT_RADIUS == 3
    with pytest.raises(ValueError, match=r"^unknown baseline 'fast'; expected one of telea, ns$"):
        classical.inpaint(rgb, hole, "fast")
