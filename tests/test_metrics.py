"""Tests of the image-quality metrics against hand-computed values and scikit-image's SSIM."""

import math

import numpy as np
import pytest

from inpainting import metrics


def _gray(values):
    """An [H, W, 3] uint8 image with the same value in all three channels."""
    return np.repeat(np.asarray(values, np.uint8)[:, :, None], 3, axis=2)


# 2x2 example: target all black; the result's top row is 51 and 102 (0.2 and 0.4 on [0, 1]) in
# every channel, its bottom row black; the hole is the top row.
TARGET = _gray([[0, 0], [0, 0]])
RESULT = _gray([[51, 102], [0, 0]])
TOP_ROW = np.array([[1, 1], [0, 0]], np.float32)


def test_l1_and_l2_in_percent_by_hand():
    # Per channel the errors are 0.2, 0.4, 0, 0.
    # L1 image: (0.2 + 0.4) / 4 = 0.15 -> 15 %;  L1 hole: (0.2 + 0.4) / 2 = 0.3 -> 30 %.
    assert metrics.l1_error(RESULT, TARGET) == pytest.approx(15.0, abs=1e-12)
    assert metrics.l1_error(RESULT, TARGET, TOP_ROW) == pytest.approx(30.0, abs=1e-12)
    # L2 image: (0.04 + 0.16) / 4 = 0.05 -> 5 %;  L2 hole: (0.04 + 0.16) / 2 = 0.1 -> 10 %.
    assert metrics.l2_error(RESULT, TARGET) == pytest.approx(5.0, abs=1e-12)
    assert metrics.l2_error(RESULT, TARGET, TOP_ROW) == pytest.approx(10.0, abs=1e-12)


def test_psnr_by_hand():
    # Image: 10 log10(1 / 0.05) = 10 log10(20) = 13.0103 dB;  hole: 10 log10(1 / 0.1) = 10 dB.
    assert metrics.psnr(RESULT, TARGET) == pytest.approx(13.010299956639813, abs=1e-12)
    assert metrics.psnr(RESULT, TARGET, TOP_ROW) == pytest.approx(10.0, abs=1e-12)
    # Equal on the region: infinite. The bottom row of RESULT equals the target.
    assert metrics.psnr(RESULT, RESULT) == math.inf
    assert metrics.psnr(RESULT, TARGET, 1 - TOP_ROW) == math.inf


def test_total_variation_by_hand():
    # RESULT per channel: [[0.2, 0.4], [0, 0]]. Pairs: across |0.4 - 0.2| = 0.2 and |0 - 0| = 0,
    # down |0 - 0.2| = 0.2 and |0 - 0.4| = 0.4: (0.2 + 0 + 0.2 + 0.4) / 4 = 0.2 -> 20 %.
    assert metrics.total_variation(RESULT) == pytest.approx(20.0, abs=1e-12)
    # Hole = top row: the bottom pair (0, 0) has no hole pixel: (0.2 + 0.2 + 0.4) / 3 -> 26.67 %.
    assert metrics.total_variation(RESULT, TOP_ROW) == pytest.approx(80 / 3, abs=1e-12)


def test_total_variation_of_a_centre_hole():
    # 3x3 black image with 102 (0.4) in the centre, which is the hole. The 4 pairs touching the
    # centre each differ by 0.4 -> hole TV 40 %; all 12 pairs (6 across, 6 down):
    # 4 * 0.4 / 12 = 0.1333 -> 13.33 %.
    image = _gray([[0, 0, 0], [0, 102, 0], [0, 0, 0]])
    centre = np.zeros((3, 3), np.float32)
    centre[1, 1] = 1
    assert metrics.total_variation(image, centre) == pytest.approx(40.0, abs=1e-12)
    assert metrics.total_variation(image) == pytest.approx(40 / 3, abs=1e-12)
    assert math.isnan(metrics.total_variation(_gray([[7]])))  # no neighbour pairs


def test_total_variation_of_an_edge_hole():
    # In steps of 51 (0.2): [[0, 1, 2], [3, 4, 5], [0, 0, 0]]; the hole is the pixel of value 3.
    # Its pairs: across |4 - 3| = 1, down |3 - 0| = 3 and |0 - 3| = 3: 7 steps = 1.4 over 3 pairs
    # -> 46.67 %. All pairs: across 1 + 1 + 1 + 1 + 0 + 0 = 4, down 3 + 3 + 3 + 4 + 3 + 5 = 21:
    # 25 steps = 5.0 over 12 pairs -> 41.67 %.
    image = _gray(np.array([[0, 1, 2], [3, 4, 5], [0, 0, 0]]) * 51)
    hole = np.zeros((3, 3), np.float32)
    hole[1, 0] = 1
    assert metrics.total_variation(image, hole) == pytest.approx(140 / 3, abs=1e-12)
    assert metrics.total_variation(image) == pytest.approx(500 / 12, abs=1e-12)


def test_channels_are_averaged():
    # Only the red channel of one of 4 pixels differs, by 51 (0.2): 0.2 / 12 -> 1.667 % L1,
    # 0.04 / 12 -> 0.3333 % L2.
    result = TARGET.copy()
    result[1, 0, 0] = 51
    assert metrics.l1_error(result, TARGET) == pytest.approx(100 * 0.2 / 12, abs=1e-12)
    assert metrics.l2_error(result, TARGET) == pytest.approx(100 * 0.04 / 12, abs=1e-12)


def test_float_inputs_equal_uint8_inputs():
    mask = np.array([[0, 0.7], [0.2, 1]], np.float32)  # values above 0.5 are the hole
    for function in (metrics.l1_error, metrics.l2_error, metrics.psnr):
        assert function(RESULT.astype(np.float32), TARGET.astype(np.float64), mask) == \
            function(RESULT, TARGET, mask)
    assert metrics.total_variation(RESULT.astype(np.float32), mask) == \
        metrics.total_variation(RESULT, mask)


def test_empty_hole_gives_nan():
    none = np.zeros((2, 2), np.float32)
    for function in (metrics.l1_error, metrics.l2_error, metrics.psnr):
        assert math.isnan(function(RESULT, TARGET, none))
    assert math.isnan(metrics.total_variation(RESULT, none))


def test_shape_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.l1_error(RESULT, TARGET[:1])
    with pytest.raises(ValueError, match="does not match"):
        metrics.l1_error(RESULT, TARGET, np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        metrics.total_variation(RESULT[:, :, 0])


# SSIM: a deterministic 16x20 random pair, compared with scikit-image 0.26. The constants were
# produced once by
#   s, full = skimage.metrics.structural_similarity(a / 255.0, b / 255.0, gaussian_weights=True,
#       sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1, full=True)
# with the whole-image value s and the hole value full.mean(axis=2)[HOLE > 0.5].mean().
def _ssim_images():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(16, 20, 3), dtype=np.uint8)
    noisy = np.clip(a + rng.integers(-60, 61, size=a.shape), 0, 255).astype(np.uint8)
    dull = np.rint(a * 0.5 + 60).astype(np.uint8)  # lower contrast, shifted brightness
    return a, noisy, dull


HOLE = np.zeros((16, 20), np.float32)
HOLE[:6, 13:] = 1  # touches the top and right borders: its windows include mirrored pixels
SKIMAGE_SSIM = {"noisy": (0.9032737267454412, 0.8979021910016524),
                "dull": (0.8006165334550196, 0.8008885545277978)}


@pytest.mark.parametrize("which", ["noisy", "dull"])
def test_ssim_matches_scikit_image(which):
    a, noisy, dull = _ssim_images()
    other = {"noisy": noisy, "dull": dull}[which]
    whole, hole = SKIMAGE_SSIM[which]
    assert metrics.ssim(a, other) == pytest.approx(whole, abs=1e-12)
    assert metrics.ssim(a, other, HOLE) == pytest.approx(hole, abs=1e-12)
    assert metrics.ssim(other, a) == pytest.approx(whole, abs=1e-12)  # symmetric


def test_ssim_map_and_identity():
    a, noisy, _ = _ssim_images()
    full_map = metrics.ssim_map(a, noisy)
    assert full_map.shape == (16, 20)
    # The whole-image value is the mean of the map without its 5-pixel border.
    assert metrics.ssim(a, noisy) == pytest.approx(full_map[5:-5, 5:-5].mean(), abs=1e-15)
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim(a, a, HOLE) == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(metrics.ssim_map(a, a), 1.0, rtol=0, atol=1e-12)
    assert math.isnan(metrics.ssim(a, noisy, np.zeros((16, 20))))


def test_ssim_refuses_images_smaller_than_the_window():
    image = np.zeros((10, 12, 3), np.uint8)
    with pytest.raises(ValueError, match=r"at least 11x11 pixels .* got 12x10"):
        metrics.ssim(image, image)
    metrics.ssim(np.zeros((11, 11, 3)), np.zeros((11, 11, 3)))  # the smallest size works


def test_image_metrics_hole_and_whole_image():
    a, noisy, _ = _ssim_images()
    result = np.where(HOLE[:, :, None] > 0.5, noisy, a)  # equal to the target outside the hole
    values = metrics.image_metrics(result, a, HOLE)
    assert tuple(values) == metrics.METRIC_NAMES
    fraction = 6 * 7 / (16 * 20)  # hole pixels / image pixels
    # Errors live only in the hole, so image means are hole means scaled by the hole fraction.
    assert values["l1_image"] == pytest.approx(values["l1_hole"] * fraction, rel=1e-12)
    assert values["l2_image"] == pytest.approx(values["l2_hole"] * fraction, rel=1e-12)
    assert values["psnr_image"] == pytest.approx(values["psnr_hole"] - 10 * math.log10(fraction),
                                                 rel=1e-12)
    assert values["l1_hole"] == metrics.l1_error(result, a, HOLE)
    assert values["psnr_image"] == metrics.psnr(result, a)
    assert values["ssim_hole"] == metrics.ssim(result, a, HOLE)
    assert values["ssim_image"] == metrics.ssim(result, a)
    assert values["tv_hole"] == metrics.total_variation(result, HOLE)
    assert values["tv_image"] == metrics.total_variation(result)
    assert values["ssim_hole"] < values["ssim_image"] < 1


def test_image_metrics_without_hole():
    a, noisy, _ = _ssim_images()
    values = metrics.image_metrics(noisy, a, np.zeros((16, 20), np.float32))
    for name in metrics.METRIC_NAMES:
        assert math.isnan(values[name]) == name.endswith("_hole"), name
    assert values["l1_image"] == metrics.l1_error(noisy, a)


def test_compose_rounds_clips_and_keeps_the_outside():
    rgb = np.full((2, 3, 3), 7, np.uint8)
    filled = np.array([[[0.5, 1.5, 254.6]] * 3, [[-3, 300, 99.49]] * 3])
    mask = np.array([[1, 0, 0.6], [0.4, 1, 1]])
    result = metrics.compose(rgb, filled, mask)
    # np.rint rounds halves to even: 0.5 -> 0, 1.5 -> 2.
    assert result.dtype == np.uint8
    assert result.tolist() == [[[0, 2, 255], [7, 7, 7], [0, 2, 255]],
                               [[7, 7, 7], [0, 255, 99], [0, 255, 99]]]
    with pytest.raises(ValueError, match="NaN"):
        metrics.compose(rgb, np.full((2, 3, 3), np.nan), mask)
