"""Colour coding of contextual-attention offsets, as in DeepFill.

The attention offsets `(dy, dx)` are shown with the Middlebury optical-flow colour wheel, the way
the original DeepFill code does it: `dy` is used as the flow's `u` component and `dx` as `v`
(transposed relative to the usual optical-flow convention), and image `i` of a batch is normalised
by the largest offset magnitude among images `0..i`. Everything is written with built-in TensorFlow
ops, so it runs inside `tf.function` with dynamic shapes and converts to TFLite (use
`dtype=tf.float32` there, TFLite has no float64 kernels).
"""

import numpy as np
import tensorflow as tf

# The six segments of the wheel (red-yellow, yellow-green, green-cyan, cyan-blue, blue-magenta,
# magenta-red): number of colours, and per R, G, B channel whether it rises ("+"), falls ("-"), is
# full ("1") or zero ("0") along the segment.
_SEGMENTS = ((15, "1+0"), (6, "-10"), (4, "01+"), (11, "0-1"), (13, "+01"), (6, "10-"))


def _colour_wheel():
    """The Middlebury colour wheel as a float64 array [55, 3] of R, G, B values in 0..255."""
    rows = []
    for n, pattern in _SEGMENTS:
        ramp = np.floor(255.0 * np.arange(n) / n)
        values = {"+": ramp, "-": 255.0 - ramp, "1": np.full(n, 255.0), "0": np.zeros(n)}
        rows.append(np.stack([values[c] for c in pattern], axis=1))
    return np.concatenate(rows, axis=0)


_WHEEL = _colour_wheel()
_NCOLS = _WHEEL.shape[0]
# Output value of each uint8 level k: k / 127.5 - 1 as the original graph computes it in float32.
# Grappler rewrites that division by a constant into a multiplication by its reciprocal, which is
# one ulp away from float32(k) / 127.5 for about half of the levels.
_LEVELS = np.arange(256, dtype=np.float32) * (np.float32(1.0) / np.float32(127.5)) - np.float32(1.0)
_EPS = float(np.finfo(np.float64).eps)


def _running_max(values):
    """Running maximum along a 1-D tensor: out[i] = max(values[:i + 1])."""
    idx = tf.range(tf.shape(values)[0])
    earlier = idx[tf.newaxis, :] <= idx[:, tf.newaxis]  # [i, j]: j <= i
    lowest = tf.fill(tf.shape(earlier), tf.reduce_min(values))
    return tf.reduce_max(tf.where(earlier, values[tf.newaxis, :], lowest), axis=1)


# atan(t) = sum (-1)^n t^(2n+1) / (2n+1); with |t| <= tan(pi/8) the terms after these are below
# float64's resolution.
_ATAN_TERMS = 22
_TAN_PI_8 = float(np.tan(np.pi / 8))


def atan2_series(y, x):
    """atan2(y, x) from arithmetic, comparisons and selects only, for runtimes without a float64
    arctangent (ONNX Runtime's CPU provider).

    Within a few ulp of `tf.atan2`, with its signs of zeros (atan2(-0, -0) = -pi) and its exact
    values at multiples of pi/4, so the colour wheel gives the same colours. The argument is
    reduced to [0, 1], then to |t| <= tan(pi/8) by atan(r) = pi/4 + atan((r - 1) / (r + 1)), where
    the Taylor series converges in `_ATAN_TERMS` terms.
    """
    one = tf.ones_like(x)
    ax, ay = tf.abs(x), tf.abs(y)
    big, small = tf.maximum(ax, ay), tf.minimum(ax, ay)
    ratio = tf.where(big > 0, small / tf.where(big > 0, big, one), tf.zeros_like(x))
    reduced = ratio > _TAN_PI_8
    t = tf.where(reduced, (ratio - 1.0) / (ratio + 1.0), ratio)
    t2 = t * t
    series = tf.zeros_like(x)
    for n in reversed(range(_ATAN_TERMS)):
        series = series * t2 + (-1.0) ** n / (2 * n + 1)
    angle = tf.where(reduced, np.pi / 4 + t * series, t * series)
    angle = tf.where(ay > ax, np.pi / 2 - angle, angle)
    # 1 / x < 0 also for x = -0.0 (it is -inf): the sign of a zero decides, as in atan2.
    angle = tf.where(one / x < 0, np.pi - angle, angle)
    return tf.where(one / y < 0, -angle, angle)


def flow_to_color(offsets, dtype=tf.float64, per_image=False, atan2=tf.atan2):
    """Colour-codes attention offsets with the Middlebury wheel, exactly like DeepFill.

    Args:
        offsets: tensor [B, h, w, 2] (int32, int16 or float) holding (dy, dx) per position.
        dtype: float type of the internal computation. float64 reproduces the original numpy code
            bit-exactly; float32 is for runtimes without float64 kernels (TFLite).
        per_image: normalise each image by its own largest offset. The original normalises by
            the largest among the image and those before it in the batch, so an image's colours
            depend on the rest of the batch; serving uses per-image colours.

    Returns:
        float32 tensor [B, h, w, 3] (R, G, B) with values k / 127.5 - 1 for integers k in 0..255.
        Zero offsets are white (1.0).
    """
    dtype = tf.as_dtype(dtype)
    if dtype not in (tf.float32, tf.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype.name}")
    offsets = tf.cast(offsets, dtype)
    u, v = offsets[..., 0], offsets[..., 1]

    # Normalise each image by the largest offset magnitude among it and the images before it (or
    # its own, per_image). The original clamps that at -1 from below, which never applies, but is
    # kept for fidelity.
    image_max = tf.reduce_max(tf.sqrt(u * u + v * v), axis=[1, 2])
    maxrad = tf.maximum(image_max if per_image else _running_max(image_max), tf.constant(-1.0, dtype))
    denom = (maxrad + tf.constant(_EPS, dtype))[:, tf.newaxis, tf.newaxis]
    u, v = u / denom, v / denom  # denom >= eps > 0, also in float32

    rad = tf.sqrt(u * u + v * v)
    # The signs of zeros matter: an integer 0 becomes +0.0 and its negation -0.0. So a zero offset
    # has atan2(-0.0, -0.0) = -pi (wheel entry 1, radius 0: white) and (dy > 0, dx = 0) is pure red.
    angle = atan2(-v, -u) / tf.constant(np.pi, dtype)
    fk = (angle + 1.0) / 2.0 * float(_NCOLS - 1) + 1.0
    k0_float = tf.floor(fk)
    frac = tf.expand_dims(fk - k0_float, -1)
    k0 = tf.clip_by_value(tf.cast(k0_float, tf.int32), 1, _NCOLS)
    k1 = tf.where(k0 == _NCOLS, tf.ones_like(k0), k0 + 1)

    wheel = tf.constant(_WHEEL, dtype) / 255.0
    col0 = tf.gather(wheel, k0 - 1)
    col1 = tf.gather(wheel, k1 - 1)
    col = (1.0 - frac) * col0 + frac * col1
    rad = tf.expand_dims(rad, -1)
    col = tf.where(rad <= 1.0, 1.0 - rad * (1.0 - col), col * 0.75)

    level = tf.clip_by_value(tf.floor(255.0 * col), 0.0, 255.0)
    return tf.gather(tf.constant(_LEVELS), tf.cast(level, tf.int32))


def _bilinear_axis(x, axis, factor):
    """Upsamples one spatial axis by `factor` like TF1 resize_bilinear with align_corners=True."""
    size_in = tf.shape(x)[axis]
    size_out = size_in * factor
    scale = tf.cast(size_in - 1, tf.float32) / tf.cast(tf.maximum(size_out - 1, 1), tf.float32)
    src = tf.cast(tf.range(size_out), tf.float32) * scale
    low_float = tf.floor(src)
    low = tf.cast(low_float, tf.int32)
    high = tf.minimum(tf.cast(tf.math.ceil(src), tf.int32), size_in - 1)
    shape = [1, 1, 1, 1]
    shape[axis] = -1
    lerp = tf.reshape(src - low_float, shape)
    first = tf.gather(x, low, axis=axis)
    return first + (tf.gather(x, high, axis=axis) - first) * lerp


def upsample_flow(flow, factor, method="nearest"):
    """Upsamples a colour-coded flow image by an integer factor.

    Args:
        flow: float tensor [B, h, w, C].
        factor: positive int, the upsampling factor of both spatial axes.
        method: "nearest" for pixel repetition (DeepFill v1; for factor 2, the one DeepFill uses,
            this equals TF1 `resize_nearest_neighbor(align_corners=True)`, which for larger factors
            picks other pixels), or "bilinear" for TF1 `resize_bilinear(align_corners=True)`
            (DeepFill v2).

    Returns:
        Tensor [B, h * factor, w * factor, C]: the dtype of `flow` for "nearest", float32 for
        "bilinear" (like resize_bilinear).
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    factor = int(factor)
    flow = tf.convert_to_tensor(flow)
    if method == "nearest":
        return tf.repeat(tf.repeat(flow, factor, axis=1), factor, axis=2)
    if method == "bilinear":
        flow = tf.cast(flow, tf.float32)
        # Columns first, then rows: the same order of operations as the TF1 kernel.
        return _bilinear_axis(_bilinear_axis(flow, 2, factor), 1, factor)
    raise ValueError(f"unknown upsampling method {method!r}: expected 'nearest' or 'bilinear'")
