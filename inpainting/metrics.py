"""Image-quality metrics of inpainting results (numpy and scipy only, no TensorFlow).

Inputs
    Images are uint8 or float arrays [H, W, 3] with values in 0..255 (no clipping is applied);
    every metric works on them scaled to [0, 1], x = image / 255. A mask is an array [H, W]
    whose pixels above 0.5 form the hole. Functions with an optional `mask` measure the whole
    image when it is None and only the hole otherwise; a hole with no pixels gives NaN.

Definitions, with x = result / 255 and y = target / 255, means taken over the pixels of the
region (the whole image or the hole) and all three channels
    L1 error    100 * mean(|x - y|), in percent, as the DeepFill papers report it.
    L2 error    100 * mean((x - y)^2), in percent.
    PSNR        10 * log10(1 / mean((x - y)^2)) dB (peak value 1); +inf where x equals y
                on the whole region.
    SSIM        Wang et al. 2004, computed per channel and averaged over the channels: with
                G the 11x11 Gaussian window of sigma 1.5 (weights exp(-k^2 / (2 * 1.5^2)),
                k = -5..5, normalised to sum 1, applied along rows and columns),
                mu_x = G * x, var_x = G * x^2 - mu_x^2, cov = G * (x y) - mu_x mu_y (population
                statistics: the weights sum to 1), C1 = 0.01^2, C2 = 0.03^2, the SSIM map is
                (2 mu_x mu_y + C1) (2 cov + C2) / ((mu_x^2 + mu_y^2 + C1) (var_x + var_y + C2)).
                Boundary: the filter extends the image by mirroring it with the edge pixel
                repeated (d c b a | a b c d), so the map has the image's size. Whole-image
                SSIM is the mean of the map without its 5-pixel border, i.e. over the pixels
                whose window lies inside the image, so the mirroring does not matter; it
                equals scikit-image's structural_similarity(x, y, gaussian_weights=True,
                sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1).
                Hole SSIM is the mean of the full-size map over the hole's pixels; near the
                border their windows include mirrored pixels. Both need images of at least
                11x11 pixels and raise ValueError for smaller ones.
    TV          Total variation of one image (the result, not a comparison): the mean of
                |x_p - x_q| over the pairs (p, q) of horizontally or vertically neighbouring
                pixels and the three channels, times 100, i.e. 100 * (sum over pairs and
                channels) / (3 * number of pairs). On the hole, only the pairs with at least
                one of their two pixels in the hole count. NaN when no pair counts (no hole,
                or a 1x1 image).
"""

import math

import numpy as np
from scipy import ndimage

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
METRIC_NAMES = ("l1_hole", "l1_image", "l2_hole", "l2_image", "psnr_hole", "psnr_image",
                "ssim_hole", "ssim_image", "tv_hole", "tv_image")


def _unit(image, name):
    """An [H, W, 3] image in 0..255 as float64 in [0, 1]."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{name}: expected an [H, W, 3] image, got shape {array.shape}")
    return array.astype(np.float64) / 255.0


def _pair(result, target):
    """Both images scaled to [0, 1], checked to have the same shape."""
    x, y = _unit(result, "result"), _unit(target, "target")
    if x.shape != y.shape:
        raise ValueError(f"result {x.shape} and target {y.shape} differ in shape")
    return x, y


def _hole(mask, shape):
    """The boolean hole of `mask` (None stays None), checked to match an image's [H, W]."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != tuple(shape[:2]):
        raise ValueError(f"mask {mask.shape} does not match the image's size {tuple(shape[:2])}")
    return mask > 0.5


def _mean(values, hole):
    """Mean of [H, W] or [H, W, C] values over all pixels (hole None) or the hole; NaN if empty."""
    if hole is None:
        return float(values.mean())
    if not hole.any():
        return math.nan
    return float(values[hole].mean())


def l1_error(result, target, mask=None):
    """Mean absolute error in percent: 100 * mean(|x - y|) on [0, 1]-scaled values.

    Args:
        result: uint8 or float [H, W, 3] in 0..255, e.g. the inpainted image.
        target: the ground truth, same shape.
        mask: None for the whole image, or [H, W] (> 0.5 = hole) to measure only the hole.

    Returns:
        The error as a float; NaN when `mask` has no hole.
    """
    x, y = _pair(result, target)
    return 100.0 * _mean(np.abs(x - y), _hole(mask, x.shape))


def l2_error(result, target, mask=None):
    """Mean squared error in percent: 100 * mean((x - y)^2) on [0, 1]-scaled values.

    Args:
        result: uint8 or float [H, W, 3] in 0..255.
        target: the ground truth, same shape.
        mask: None for the whole image, or [H, W] (> 0.5 = hole) to measure only the hole.

    Returns:
        The error as a float; NaN when `mask` has no hole.
    """
    x, y = _pair(result, target)
    return 100.0 * _mean((x - y) ** 2, _hole(mask, x.shape))


def _psnr_from_mse(mse):
    """PSNR in dB with peak 1 from a mean squared error on [0, 1] values."""
    if math.isnan(mse):
        return math.nan
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def psnr(result, target, mask=None):
    """Peak signal-to-noise ratio in dB: 10 * log10(1 / mean((x - y)^2)), peak 1.

    Args:
        result: uint8 or float [H, W, 3] in 0..255.
        target: the ground truth, same shape.
        mask: None for the whole image, or [H, W] (> 0.5 = hole) to measure only the hole.

    Returns:
        The PSNR as a float: math.inf when result and target are equal on the region, NaN
        when `mask` has no hole.
    """
    x, y = _pair(result, target)
    return _psnr_from_mse(_mean((x - y) ** 2, _hole(mask, x.shape)))


def _gaussian_window():
    """The 1-D SSIM window: SSIM_WINDOW Gaussian weights of sigma SSIM_SIGMA summing to 1."""
    offsets = np.arange(SSIM_WINDOW) - SSIM_WINDOW // 2
    weights = np.exp(-(offsets ** 2) / (2.0 * SSIM_SIGMA ** 2))
    return weights / weights.sum()


def _blur(array, window):
    """Separable Gaussian filter of [H, W, C] over H and W, mirroring at the borders."""
    for axis in (0, 1):
        array = ndimage.correlate1d(array, window, axis=axis, mode="reflect")
    return array


def ssim_map(result, target):
    """The SSIM map of two images, averaged over the channels (see the module docstring).

    Args:
        result: uint8 or float [H, W, 3] in 0..255, at least 11x11 pixels.
        target: the ground truth, same shape.

    Returns:
        float64 [H, W]: the local SSIM around every pixel, the borders mirrored.

    Raises:
        ValueError: an image is smaller than the 11x11 window, or the shapes differ.
    """
    x, y = _pair(result, target)
    height, width = x.shape[:2]
    if height < SSIM_WINDOW or width < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (the "
                         f"size of its window), got {width}x{height} (width x height)")
    window = _gaussian_window()
    mu_x, mu_y = _blur(x, window), _blur(y, window)
    var_x = _blur(x * x, window) - mu_x * mu_x
    var_y = _blur(y * y, window) - mu_y * mu_y
    cov = _blur(x * y, window) - mu_x * mu_y
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)
            / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)))
    return ssim.mean(axis=2)


def _ssim_from_map(full_map, hole):
    """Whole-image SSIM (hole None: the map without its border) or hole SSIM from a map."""
    if hole is None:
        border = SSIM_WINDOW // 2
        return float(full_map[border:-border, border:-border].mean())
    return _mean(full_map, hole)


def ssim(result, target, mask=None):
    """Structural similarity (Wang et al. 2004) of two images; see the module docstring.

    Args:
        result: uint8 or float [H, W, 3] in 0..255, at least 11x11 pixels.
        target: the ground truth, same shape.
        mask: None for the whole image (the mean of the SSIM map without its 5-pixel
            border), or [H, W] (> 0.5 = hole) for the mean of the full map over the hole.

    Returns:
        The SSIM as a float, at most 1 (1 for equal images); NaN when `mask` has no hole.

    Raises:
        ValueError: an image is smaller than 11x11 pixels, or the shapes differ.
    """
    full_map = ssim_map(result, target)
    return _ssim_from_map(full_map, _hole(mask, full_map.shape))


def total_variation(image, mask=None):
    """Mean absolute difference of neighbouring pixels in percent (see the module docstring).

    Args:
        image: uint8 or float [H, W, 3] in 0..255, e.g. the inpainted result.
        mask: None for all horizontal and vertical neighbour pairs, or [H, W] (> 0.5 = hole)
            for the pairs with at least one pixel in the hole.

    Returns:
        100 * the mean of |x_p - x_q| over those pairs and the channels, on [0, 1]-scaled
        values; NaN when there is no such pair.
    """
    x = _unit(image, "image")
    across = np.abs(np.diff(x, axis=1))  # pairs (i, j), (i, j + 1): [H, W - 1, 3]
    down = np.abs(np.diff(x, axis=0))  # pairs (i, j), (i + 1, j): [H - 1, W, 3]
    hole = _hole(mask, x.shape)
    if hole is None:
        pairs = across.shape[0] * across.shape[1] + down.shape[0] * down.shape[1]
        total = across.sum() + down.sum()
    else:
        touch_across = hole[:, 1:] | hole[:, :-1]
        touch_down = hole[1:, :] | hole[:-1, :]
        pairs = int(touch_across.sum() + touch_down.sum())
        total = across[touch_across].sum() + down[touch_down].sum()
    if pairs == 0:
        return math.nan
    return float(100.0 * total / (3 * pairs))


def image_metrics(result, target, mask):
    """All metrics of one inpainted image, on the hole and on the whole image.

    Args:
        result: uint8 or float [H, W, 3] in 0..255, the inpainted image (at least 11x11).
        target: the ground truth, same shape.
        mask: [H, W], > 0.5 = hole.

    Returns:
        A dict with the keys of `METRIC_NAMES`, in that order: l1_*, l2_* (percent), psnr_*
        (dB, may be math.inf), ssim_*, and tv_* (total variation of `result`, percent), each
        for the hole (`*_hole`) and the whole image (`*_image`). When the mask has no hole,
        the `*_hole` values are NaN.

    Raises:
        ValueError: shapes that differ or an image smaller than 11x11 pixels.
    """
    x, y = _pair(result, target)
    hole = _hole(mask, x.shape)
    if hole is None:
        raise ValueError("image_metrics needs a mask")
    abs_error, sq_error = np.abs(x - y), (x - y) ** 2
    full_map = ssim_map(result, target)
    values = {}
    for suffix, region in (("hole", hole), ("image", None)):
        mse = _mean(sq_error, region)
        values[f"l1_{suffix}"] = 100.0 * _mean(abs_error, region)
        values[f"l2_{suffix}"] = 100.0 * mse
        values[f"psnr_{suffix}"] = _psnr_from_mse(mse)
        values[f"ssim_{suffix}"] = _ssim_from_map(full_map, region)
        values[f"tv_{suffix}"] = total_variation(result, region)
    return {name: values[name] for name in METRIC_NAMES}


def compose(rgb, filled, mask):
    """The 8-bit image a user gets from a fill.

    Args:
        rgb: uint8 [H, W, 3], the input image.
        filled: float [H, W, 3] in 0..255, a method's output at the image's size.
        mask: [H, W], > 0.5 = hole.

    Returns:
        uint8 [H, W, 3]: np.rint(filled) clipped to 0..255 inside the hole, `rgb` outside it.

    Raises:
        ValueError: `filled` has the wrong shape or non-finite values in the hole.
    """
    result = np.array(rgb, dtype=np.uint8)
    filled = np.asarray(filled)
    if filled.shape != result.shape:
        raise ValueError(f"compose: expected a fill of shape {result.shape}, got {filled.shape}")
    hole = np.asarray(mask) > 0.5
    fill = filled[hole].astype(np.float64)
    if not np.isfinite(fill).all():
        raise ValueError("compose: the fill contains NaN or infinite values")
    result[hole] = np.clip(np.rint(fill), 0, 255).astype(np.uint8)
    return result


def mean_of(values):
    """The mean of the values that are not NaN (+inf if one is +inf); NaN when there are none.

    A summary of per-image metrics: a hole metric is NaN for an image without a hole.
    """
    values = [value for value in values if not math.isnan(value)]
    return float(np.mean(values)) if values else math.nan
