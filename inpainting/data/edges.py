"""Edge maps of images: the sketches guided DeepFill v2 models are trained with.

`canny_edges` is OpenCV's Canny(gray, 100, 200) written in TensorFlow ops, so it runs inside
`tf.data` and in exported graphs.
"""

import math

import tensorflow as tf

from inpainting.errors import DataError

# tan(22.5 degrees) scaled by 2 ** 15, rounded: OpenCV's sector test in the non-maximum step.
_TAN_22 = 13573



# OpenCV's fixed-point BT.601 weights (R, G, B) for 8-bit RGB -> gray, scaled by 2 ** 15.
_GRAY_WEIGHTS = (9798, 19235, 3735)


def gray_levels(image):
    """8-bit gray levels of uint8 RGB pixels, exactly as OpenCV's COLOR_RGB2GRAY.

    That is BT.601 luma (0.299, 0.587, 0.114) in 15-bit fixed point, rounded:
    (9798 R + 19235 G + 3735 B + 16384) >> 15. It differs from the rounded
    floating-point luma by one level on a few colours (about 0.1%).

    Args:
        image: uint8 [..., 3] RGB.

    Returns:
        int32 [...] in 0..255.
    """
    pixels = tf.cast(image, tf.int32)
    weighted = tf.reduce_sum(pixels * tf.constant(_GRAY_WEIGHTS, tf.int32), axis=-1)
    return tf.bitwise.right_shift(weighted + (1 << 14), 15)


def canny_edges(image, low=100, high=200):
    """Canny edge maps of uint8 RGB images, computed as OpenCV's `Canny(gray, low, high)`.

    The edge input of the guided (sketch) DeepFill v2 model. Steps, all TensorFlow
    ops (usable in `tf.data`): gray levels (`gray_levels`); 3x3 Sobel gradients
    gx, gy with the border pixels replicated; magnitude |gx| + |gy| (OpenCV's
    default L1 norm); non-maximum suppression along the gradient's sector
    (horizontal when |gy| < tan(22.5) |gx|, vertical when |gy| > tan(67.5) |gx|,
    else the diagonal of the signs; strict against the previous neighbour and
    non-strict against the next one on the two axis directions, strict on both
    on the diagonals; magnitudes outside the image are 0); then hysteresis:
    surviving pixels above `low` are candidates, those above `high` are edges,
    and edges grow into 8-connected candidates (a constrained dilation repeated
    in a `tf.while_loop` until nothing changes). Thresholds are floored, as
    OpenCV does with the L1 norm.

    Args:
        image: uint8 [..., H, W, 3] RGB, any number of leading batch axes.
        low: lower hysteresis threshold.
        high: upper hysteresis threshold (>= low).

    Returns:
        float32 [..., H, W, 1]: 1 on edges, 0 elsewhere.

    Raises:
        DataError: the image is not uint8 [..., H, W, 3], or the thresholds are
            negative or in the wrong order.
    """
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8 or image.shape.rank is not None and (
            image.shape.rank < 3 or image.shape[-1] not in (None, 3)):
        raise DataError(f"canny_edges needs uint8 [..., H, W, 3] RGB images, got "
                        f"{image.dtype.name} {image.shape}; convert the image to 8-bit RGB")
    if not 0 <= low <= high:
        raise DataError(f"canny_edges thresholds must satisfy 0 <= low <= high, got low={low}, "
                        f"high={high}")
    shape = tf.shape(image)
    gray = gray_levels(tf.reshape(image, tf.concat([[-1], shape[-3:]], 0)))
    padded = tf.pad(gray, [[0, 0], [1, 1], [1, 1]], mode="SYMMETRIC")  # replicates the border

    def window(row, col):  # the neighbour at offset (row - 1, col - 1) of every pixel
        return padded[:, row:row + tf.shape(gray)[1], col:col + tf.shape(gray)[2]]

    grad_x = (window(0, 2) + 2 * window(1, 2) + window(2, 2)
              - window(0, 0) - 2 * window(1, 0) - window(2, 0))
    grad_y = (window(2, 0) + 2 * window(2, 1) + window(2, 2)
              - window(0, 0) - 2 * window(0, 1) - window(0, 2))
    magnitude = tf.abs(grad_x) + tf.abs(grad_y)
    around = tf.pad(magnitude, [[0, 0], [1, 1], [1, 1]])  # zeros outside the image

    def near(row, col):
        return around[:, row:row + tf.shape(gray)[1], col:col + tf.shape(gray)[2]]

    size_x = tf.abs(grad_x)
    size_y = tf.abs(grad_y) * (1 << 15)
    horizontal = size_y < size_x * _TAN_22
    vertical = ~horizontal & (size_y > size_x * (_TAN_22 + (1 << 16)))
    same_sign = (grad_x < 0) == (grad_y < 0)
    peak = tf.where(
        horizontal, (magnitude > near(1, 0)) & (magnitude >= near(1, 2)),
        tf.where(vertical, (magnitude > near(0, 1)) & (magnitude >= near(2, 1)),
                 tf.where(same_sign, (magnitude > near(0, 0)) & (magnitude > near(2, 2)),
                          (magnitude > near(0, 2)) & (magnitude > near(2, 0)))))
    candidate = peak & (magnitude > math.floor(low))
    strong = candidate & (magnitude > math.floor(high))
    candidate = tf.cast(candidate, tf.float32)[..., None]

    def grow(edges, _):
        grown = tf.nn.max_pool2d(edges, 3, 1, "SAME") * candidate
        return grown, tf.reduce_any(grown != edges)

    edges, _ = tf.while_loop(lambda edges, changed: changed, grow,
                             (tf.cast(strong, tf.float32)[..., None], tf.constant(True)))
    return tf.reshape(edges, tf.concat([shape[:-1], [1]], 0))
