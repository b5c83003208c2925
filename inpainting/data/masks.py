"""Hole masks for training and validation, as pure TensorFlow ops (1 = hole, float32).

Box masks (DeepFill v1)
    `random_bbox` draws the box the local critic looks at: its top-left corner is
    uniform in [margin, size - margin - box) on each axis (the upper bound is
    exclusive, so a box never touches the bottom or right edge when margins are 0,
    as in the original). `bbox_to_mask` turns the box into the hole, trimmed on both
    sides of each axis by a random amount in 0..max_delta // 2 (inclusive), so the
    hole is at most as large as the box. Validation uses `center_bbox` without trim.

Mask folders
    `mask_folder_dataset` streams masks read from image files (e.g. the irregular
    masks of Liu et al. 2018): a pixel is a hole where the mask is white-ish, with
    the rule of `inpainting.imageio.MASK_HELP` (gray > 127 after 16-bit values are
    scaled to 8 bits; a partly transparent alpha channel alone is the mask).
    `mask_bbox` then places the local critic's box on the hole.

Free-form brush strokes (DeepFill v2)
    `brush_stroke_mask` draws 1..`StrokeConfig.max_strokes` random zig-zag strokes
    (see `stroke_parameters` for the exact distribution). A stroke is a polyline of
    round-capped thick segments: a pixel is a hole when the distance from its
    centre to the polyline is at most half the stroke width. DeepFill v2 trains on
    the union of such strokes and a v1 box hole, one mask per batch.

Randomness
    Every random draw is stateless: it takes a key made by `stream_seed` from a
    user seed and integer indices, so a stream is a pure function of (seed,
    position) and a resumed run sees the same masks as an uninterrupted one.
"""

import dataclasses
import math

import tensorflow as tf

from inpainting.config import is_int
from inpainting.data import sources
from inpainting.data.sources import stream_seed
from inpainting.errors import DataError

# Parts folded into the user seed so that the streams drawn from one seed are independent.
MASK_ORDER = 101
MASK_FLIP = 102

# Parts folded into a stroke mask's key, one per kind of draw.
_STROKE_COUNT, _STROKE_VERTICES, _STROKE_WIDTH, _STROKE_SPREAD = 0, 1, 2, 3
_STROKE_ANGLE, _STROKE_START, _STROKE_RADIUS, _STROKE_FLIP = 4, 5, 6, 7

# ITU-R BT.601 luma weights, the ones OpenCV and `inpainting.imageio` use.
_LUMA = (0.299, 0.587, 0.114)


def size_pair(value, name):
    """(a, b) of Python ints from an int or a length-2 sequence."""
    if isinstance(value, int):
        value = (value, value)
    try:
        first, second = (int(v) for v in value)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be (height, width) integers, got {value!r}") from None
    return first, second


def check_box(image_size, box_size, margins=(0, 0)):
    """Checks that `random_bbox` can place a box; returns the three (height, width) pairs.

    The original draws the top row uniformly in [margin, height - margin - box)
    and needs that range to be non-empty, so the image must be strictly larger
    than the box plus both margins on each axis.

    Raises:
        DataError: a size is not positive, a margin is negative, or the box plus
            margins does not fit.
    """
    image = size_pair(image_size, "image_size")
    box = size_pair(box_size, "box_size")
    margin = size_pair(margins, "margins")
    if min(image) < 1 or min(box) < 1 or min(margin) < 0:
        raise DataError(f"image_size {image} and box_size {box} must be positive and margins "
                        f"{margin} non-negative")
    if any(size - 2 * edge - side < 1 for size, side, edge in zip(image, box, margin)):
        raise DataError(f"box_size {box} with margins {margin} does not fit in image_size {image}: "
                        f"each image side must exceed box + 2 * margin; use a smaller box_size "
                        f"or smaller margins")
    return image, box, margin


def random_bbox(seed, image_size, box_size, margins=(0, 0)):
    """A random box for the local critic, placed as in DeepFill v1.

    Args:
        seed: a user seed (int) or a key from `stream_seed`.
        image_size: (H, W) of the image.
        box_size: (h, w) of the box.
        margins: (vertical, horizontal) distance the box keeps from the edges.

    Returns:
        int32 [4] (top, left, height, width): top uniform in
        [margin_v, H - margin_v - h) and left uniform in [margin_h, W - margin_h - w),
        both upper bounds exclusive.

    Raises:
        DataError: the box plus margins does not fit (see `check_box`).
    """
    (height, width), (box_h, box_w), (margin_v, margin_h) = check_box(image_size, box_size,
                                                                      margins)
    key = stream_seed(seed)
    top = tf.random.stateless_uniform([], stream_seed(key, 0), minval=margin_v,
                                      maxval=height - margin_v - box_h, dtype=tf.int32)
    left = tf.random.stateless_uniform([], stream_seed(key, 1), minval=margin_h,
                                       maxval=width - margin_h - box_w, dtype=tf.int32)
    return tf.stack([top, left, tf.constant(box_h), tf.constant(box_w)])


def center_bbox(image_size, box_size):
    """The box centred in the image, used for validation.

    Returns:
        int32 [4] ((H - h) // 2, (W - w) // 2, h, w).

    Raises:
        DataError: the box is larger than the image.
    """
    (height, width), (box_h, box_w) = size_pair(image_size, "image_size"), size_pair(box_size, "box_size")
    if not 0 < box_h <= height or not 0 < box_w <= width:
        raise DataError(f"box_size {(box_h, box_w)} must be positive and fit in image_size "
                        f"{(height, width)}")
    return tf.constant([(height - box_h) // 2, (width - box_w) // 2, box_h, box_w], tf.int32)


def bbox_to_mask(bbox, image_size, max_delta=(32, 32), seed=None):
    """The hole inside a box, randomly trimmed as in DeepFill v1.

    Args:
        bbox: int [4] (top, left, height, width).
        image_size: (H, W) of the mask.
        max_delta: (vertical, horizontal) maximum total trim; each side of an axis
            loses the same amount, drawn uniformly in 0..max_delta // 2 inclusive.
        seed: a user seed (int) or a key from `stream_seed`; None means no trim.

    Returns:
        float32 [H, W, 1], 1 on rows [top + dh, top + height - dh) and columns
        [left + dw, left + width - dw), 0 elsewhere. Without trim the mask is
        exactly the box.
    """
    height, width = size_pair(image_size, "image_size")
    delta_h, delta_w = size_pair(max_delta, "max_delta")
    if min(delta_h, delta_w) < 0:
        raise DataError(f"max_delta must be non-negative, got {(delta_h, delta_w)}")
    bbox = tf.cast(bbox, tf.int32)
    top, left, box_h, box_w = tf.unstack(bbox)
    trim_h = trim_w = tf.constant(0, tf.int32)
    if seed is not None:
        key = stream_seed(seed)
        trim_h = tf.random.stateless_uniform([], stream_seed(key, 0), minval=0,
                                             maxval=delta_h // 2 + 1, dtype=tf.int32)
        trim_w = tf.random.stateless_uniform([], stream_seed(key, 1), minval=0,
                                             maxval=delta_w // 2 + 1, dtype=tf.int32)
    rows = tf.range(height)
    cols = tf.range(width)
    in_rows = (rows >= top + trim_h) & (rows < top + box_h - trim_h)
    in_cols = (cols >= left + trim_w) & (cols < left + box_w - trim_w)
    return tf.cast(in_rows[:, None, None] & in_cols[None, :, None], tf.float32)


def _box_start(covered, size, side):
    """First index of a `side`-long window centred on the covered indices, kept inside [0, size).

    With nothing covered the first/last sentinels (size, -1) give the centred window.
    """
    index = tf.range(size)
    first = tf.reduce_min(tf.where(covered, index, size))
    last = tf.reduce_max(tf.where(covered, index, -1))
    start = tf.math.floordiv(first + last + 1 - side, 2)
    return tf.clip_by_value(start, 0, size - side)


def mask_bbox(mask, box_size, image_size):
    """The local critic's box for a given mask (e.g. one from a mask folder).

    The box has `box_size` and is centred on the centre of the bounding box of the
    hole pixels (values > 0.5), then shifted to stay inside the image. For an empty
    mask it is `center_bbox`. When the hole is larger than the box, the local critic
    and the box-discounted L1 loss only see the part of the hole inside the box.

    Args:
        mask: float [H, W, 1] or [H, W], 1 = hole.
        box_size: (h, w), at most the image size.
        image_size: (H, W) of the mask.

    Returns:
        int32 [4] (top, left, h, w).
    """
    height, width = size_pair(image_size, "image_size")
    center_bbox(image_size, box_size)  # validates the sizes
    box_h, box_w = size_pair(box_size, "box_size")
    hole = tf.convert_to_tensor(mask) > 0.5
    if hole.shape.rank == 3:
        hole = tf.reduce_any(hole, axis=2)
    hole = tf.ensure_shape(hole, [height, width])
    top = _box_start(tf.reduce_any(hole, axis=1), height, box_h)
    left = _box_start(tf.reduce_any(hole, axis=0), width, box_w)
    return tf.stack([top, left, tf.constant(box_h), tf.constant(box_w)])


def holes_from_bytes(encoded):
    """The holes of a mask file's bytes (png, jpg, bmp, webp, gif), at the file's size.

    A pixel is a hole where the gray value (8-bit; 16-bit PNGs are scaled to 8 bits
    with round(v / 257); colour is converted with rounded BT.601 luma) is above 127,
    or, when the file has an alpha channel that is not uniformly opaque, where alpha
    is above 127: the rules of `inpainting.imageio.read_mask`.

    Returns:
        bool [h, w], True at holes.
    """
    pixels = sources.decode_8bit(encoded)
    channels = tf.shape(pixels)[2]
    alpha = tf.cond(channels % 2 == 0, lambda: pixels[:, :, -1],
                    lambda: tf.fill(tf.shape(pixels)[:2], tf.constant(255, tf.uint8)))

    def luma():
        rgb = tf.cast(pixels[:, :, :3], tf.float64)
        return tf.round(tf.tensordot(rgb, tf.constant(_LUMA, tf.float64), axes=1))

    gray = tf.cond(channels >= 3, luma, lambda: tf.cast(pixels[:, :, 0], tf.float64))
    value = tf.where(tf.reduce_min(alpha) < 255, tf.cast(alpha, tf.float64), gray)
    return value > 127


def decode_mask(encoded, image_size):
    """A mask from encoded image bytes (`holes_from_bytes`), resized with nearest neighbour.

    Returns:
        float32 [H, W, 1], 1 = hole.
    """
    height, width = size_pair(image_size, "image_size")
    mask = tf.cast(holes_from_bytes(encoded), tf.float32)[:, :, None]
    resized = tf.image.resize(mask, [height, width], method="nearest")
    return tf.ensure_shape(resized, [height, width, 1])


def mask_folder_dataset(mask_dir, image_size, seed, start=0):
    """An endless stream of masks read from the image files under a folder.

    Element i is the mask file at position i % n of a permutation of the n files
    (sorted, recursive; png, jpg, jpeg, bmp, webp) drawn from (seed, i // n), flipped
    horizontally and vertically each with probability 1/2 from (seed, i), so the
    stream is a pure function of (seed, i). Unreadable mask files are skipped with
    a warning on stderr (which shifts the later elements by one each); when no file
    of a whole pass can be read, the stream ends.

    Args:
        mask_dir: the folder of mask images.
        image_size: (H, W) every mask is resized to (nearest neighbour).
        seed: user seed (int).
        start: index of the first element, to resume a stream.

    Returns:
        `tf.data.Dataset` of float32 [H, W, 1] masks, 1 = hole.

    Raises:
        DataError: the folder is missing or holds no mask images.
    """
    height, width = size_pair(image_size, "image_size")
    paths = sources.list_image_files(mask_dir, what="mask")
    items = sources.file_items(paths, seed=stream_seed(seed, MASK_ORDER), start=start, training=True)

    def load(path, position):
        mask = decode_mask(tf.io.read_file(path), (height, width))
        flips = tf.random.stateless_uniform([2], stream_seed(seed, MASK_FLIP, position)) < 0.5
        mask = tf.where(flips[0], tf.reverse(mask, [1]), mask)
        return tf.where(flips[1], tf.reverse(mask, [0]), mask)

    stream = sources.read_items(items, load, empty=tf.zeros([height, width, 1]),
                                 label=f"mask folder {mask_dir}", num_items=len(paths), start=start)
    return stream.map(lambda element: element["image"])


def fixed_masks(mask_dir, image_size, count):
    """The first `count` masks of a folder in sorted order, for validation.

    When the folder holds fewer than `count` masks they are used again in order.

    Returns:
        float32 [count, H, W, 1] tensor, 1 = hole.

    Raises:
        DataError: the folder is missing, holds no mask images, or one of the
            masks used cannot be read.
    """
    paths = sources.list_image_files(mask_dir, what="mask")
    loaded = {}
    for path in paths[:count]:
        try:
            loaded[path] = decode_mask(tf.io.read_file(path), image_size)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError,
                tf.errors.PermissionDeniedError, tf.errors.OutOfRangeError) as err:
            reason = (err.message or type(err).__name__).splitlines()[0][:200]
            raise DataError(f"{path}: cannot read this mask image ({reason}); replace or remove "
                            f"it from the mask folder {mask_dir}") from None
    return tf.stack([loaded[paths[i % len(paths)]] for i in range(count)])


# ------------------------------------------------------------------------ brush strokes

@dataclasses.dataclass(frozen=True)
class StrokeConfig:
    """The distribution of DeepFill v2 free-form brush strokes; the defaults are the original's.

    Attributes:
        max_strokes: the number of strokes of a mask is uniform in 1..max_strokes
            (inclusive).
        min_vertices: smallest number of segments of a stroke.
        max_vertices: exclusive upper bound of the number of segments: each stroke
            has a uniform number in [min_vertices, max_vertices) of segments after
            its start point (the original calls them vertices).
        mean_angle: mean direction of the odd segments in radians, from the x axis
            (towards y, i.e. downwards); the even ones head to 2 pi minus their
            angle, so strokes zig-zag.
        angle_range: each stroke draws its angle interval as
            [mean_angle - u1, mean_angle + u2], u1 and u2 uniform in [0, angle_range).
        min_width: smallest stroke width in pixels.
        max_width: exclusive upper bound of the width: each stroke has one width,
            a uniform integer in [min_width, max_width).

    Raises:
        DataError: a value is out of range (checked on construction).
    """

    max_strokes: int = 3
    min_vertices: int = 4
    max_vertices: int = 12
    mean_angle: float = 2 * math.pi / 5
    angle_range: float = 2 * math.pi / 15
    min_width: int = 12
    max_width: int = 40

    def __post_init__(self):
        if not is_int(self.max_strokes) or self.max_strokes < 1:
            raise DataError(f"StrokeConfig: max_strokes must be an integer >= 1, got "
                            f"{self.max_strokes!r}")
        for low, high in (("min_vertices", "max_vertices"), ("min_width", "max_width")):
            first, second = getattr(self, low), getattr(self, high)
            if not (is_int(first) and is_int(second)) or not 1 <= first < second:
                raise DataError(f"StrokeConfig: {low} and {high} must be integers with "
                                f"1 <= {low} < {high} ({high} is an exclusive bound), got "
                                f"{first!r} and {second!r}")
        for name, lowest in (("mean_angle", -math.inf), ("angle_range", 0.0)):
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value < lowest:
                bound = f" >= {lowest:g}" if math.isfinite(lowest) else ""
                raise DataError(f"StrokeConfig: {name} must be a finite number of radians"
                                f"{bound}, got {value!r}")

    @classmethod
    def of(cls, value):
        """A `StrokeConfig` from None (the defaults), a `StrokeConfig` or a dict of its fields.

        Raises:
            DataError: another type, an unknown field, or a value out of range.
        """
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            fields = [field.name for field in dataclasses.fields(cls)]
            unknown = sorted(set(value) - set(fields))
            if unknown:
                raise DataError(f"StrokeConfig: unknown field(s) {', '.join(map(str, unknown))}; "
                                f"the fields are {', '.join(fields)}")
            return cls(**value)
        raise DataError(f"strokes must be a StrokeConfig, a dict of its fields or None, got "
                        f"{type(value).__name__}")


def stroke_parameters(image_size, seed, config=None):
    """The random strokes of `brush_stroke_mask`, in fixed-size tensors.

    The distribution follows DeepFill v2, with x along the width, y along the
    height and working flips. With S = max_strokes and V = max_vertices - 1:
    the number of strokes is uniform in 1..S; stroke s gets a number of segments
    uniform in [min_vertices, max_vertices), a width uniform in
    [min_width, max_width) (integers), an angle interval [lo, hi] =
    [mean_angle - u1, mean_angle + u2] (u1, u2 uniform in [0, angle_range)) and a
    start point uniform in [0, W) x [0, H). Segment i heads in the direction a
    (radians from the x axis towards y), a uniform in [lo, hi] and replaced by
    2 pi - a when i is even, and has a length
    r = clip(normal(R, R / 2), 0, 2 R) with R = sqrt(H^2 + W^2) / 8; the next
    vertex is (clip(x + r cos a, 0, W), clip(y + r sin a, 0, H)). Finally all
    points are mirrored left-right (x -> W - x) and top-bottom (y -> H - y), each
    with probability 1/2. Coordinates are in pixels: pixel (row i, column j)
    covers [j, j + 1) x [i, i + 1), its centre is (j + 0.5, i + 0.5).

    Args:
        image_size: (H, W) of the mask.
        seed: a user seed (int) or a key from `stream_seed`.
        config: a `StrokeConfig`, a dict of its fields, or None for the defaults.

    Returns:
        dict of "count": int32 scalar, the number of strokes; "segments": int32 [S],
        the segments of each stroke (0 for s >= count); "width": int32 [S];
        "points": float32 [S, V + 1, 2], the vertices (x, y) of each stroke, of which
        the first segments[s] + 1 are used; "flip": bool [2], (left-right,
        top-bottom).
    """
    config = StrokeConfig.of(config)
    height, width = size_pair(image_size, "image_size")
    if min(height, width) < 1:
        raise DataError(f"image_size must be positive, got {(height, width)}")
    strokes, steps = config.max_strokes, config.max_vertices - 1
    key = stream_seed(seed)

    def draw(part, shape, low=0.0, high=1.0, dtype=tf.float32):
        return tf.random.stateless_uniform(shape, stream_seed(key, part), minval=low,
                                           maxval=high, dtype=dtype)

    count = draw(_STROKE_COUNT, [], 1, strokes + 1, tf.int32)
    segments = draw(_STROKE_VERTICES, [strokes], config.min_vertices, config.max_vertices,
                    tf.int32)
    segments = tf.where(tf.range(strokes) < count, segments, 0)
    widths = draw(_STROKE_WIDTH, [strokes], config.min_width, config.max_width, tf.int32)
    spread = draw(_STROKE_SPREAD, [2, strokes], 0.0, config.angle_range)
    lowest = config.mean_angle - spread[0]
    highest = config.mean_angle + spread[1]
    angles = lowest[:, None] + (highest - lowest)[:, None] * draw(_STROKE_ANGLE, [strokes, steps])
    even = tf.range(steps) % 2 == 0
    angles = tf.where(even[None], 2 * math.pi - angles, angles)
    size = tf.constant([width, height], tf.float32)
    start = draw(_STROKE_START, [strokes, 2]) * size
    radius = math.sqrt(height ** 2 + width ** 2) / 8
    lengths = tf.random.stateless_normal([strokes, steps], stream_seed(key, _STROKE_RADIUS),
                                         mean=radius, stddev=radius / 2)
    lengths = tf.clip_by_value(lengths, 0.0, 2 * radius)
    moves = lengths[:, :, None] * tf.stack([tf.cos(angles), tf.sin(angles)], axis=2)
    points = [start]
    for step in range(steps):  # each vertex is clipped before the next move
        points.append(tf.clip_by_value(points[-1] + moves[:, step], 0.0, size))
    points = tf.stack(points, axis=1)
    flip = draw(_STROKE_FLIP, [2]) < 0.5
    points = tf.where(flip[None, None], size - points, points)
    return {"count": count, "segments": segments, "width": widths, "points": points,
            "flip": flip}


def _capsules(points, widths, segments, height, width):
    """`draw_strokes` on static sizes.

    Not compiled with XLA: an XLA-compiled function inside a `tf.data` map crashed the process
    (segmentation fault in the iterator) on a clean install.
    """
    steps = points.shape[1] - 1
    starts = tf.reshape(points[:, :-1], [-1, 2])  # [N, 2], N = S * V
    deltas = tf.reshape(points[:, 1:], [-1, 2]) - starts
    used = tf.reshape(tf.range(steps)[None] < segments[:, None], [-1])
    half = tf.cast(widths, tf.float32) / 2
    limit = tf.reshape(tf.tile((half * half)[:, None], [1, steps]), [-1])
    limit = tf.where(used, limit, -1.0)[:, None, None]  # nothing is within -1 of a segment
    start_x, start_y = starts[:, 0, None, None], starts[:, 1, None, None]
    delta_x, delta_y = deltas[:, 0, None, None], deltas[:, 1, None, None]
    along_x = tf.range(width, dtype=tf.float32)[None, None, :] + 0.5 - start_x  # [N, 1, W]
    along_y = tf.range(height, dtype=tf.float32)[None, :, None] + 0.5 - start_y  # [N, H, 1]
    length2 = delta_x * delta_x + delta_y * delta_y
    share = (tf.math.divide_no_nan(along_x * delta_x, length2)
             + tf.math.divide_no_nan(along_y * delta_y, length2))
    share = tf.clip_by_value(share, 0.0, 1.0)  # the nearest point of the segment
    off_x = along_x - share * delta_x
    off_y = along_y - share * delta_y
    gap = tf.reduce_min(off_x * off_x + off_y * off_y - limit, axis=0)
    return tf.cast(gap <= 0.0, tf.float32)[:, :, None]


def draw_strokes(points, widths, segments, image_size):
    """Rasterises thick polylines: pixels whose centre is within width / 2 of a used segment.

    Every stroke is a union of capsules (segments with round caps), so its vertices
    are discs of diameter `width`. The work is one vectorised distance computation
    between the pixel centres and all S * V segments, unused ones masked out.

    Args:
        points: float [S, V + 1, 2] vertices (x, y) in pixels (see `stroke_parameters`).
        widths: int or float [S] stroke widths in pixels.
        segments: int [S], how many of the V segments of each stroke are drawn.
        image_size: (H, W) of the mask.

    Returns:
        float32 [H, W, 1], 1 = hole.
    """
    height, width = size_pair(image_size, "image_size")
    points = tf.convert_to_tensor(points, tf.float32)
    points.shape.assert_is_compatible_with([None, None, 2])
    strokes, vertices = points.shape[:2]
    if strokes is None or vertices is None or vertices < 2:
        raise DataError(f"points must have a static shape [S, V + 1, 2] with V >= 1, got "
                        f"{points.shape}")
    widths = tf.ensure_shape(tf.convert_to_tensor(widths), [strokes])
    segments = tf.ensure_shape(tf.cast(segments, tf.int32), [strokes])
    return _capsules(points, widths, segments, height, width)


def brush_stroke_mask(image_size, seed, config=None):
    """A DeepFill v2 free-form mask: 1..max_strokes random brush strokes.

    A stateless pure function of `seed`; works for any image size (non-square too)
    and inside `tf.data` / `tf.function`. The strokes are those of
    `stroke_parameters`, drawn by `draw_strokes`.

    Args:
        image_size: (H, W) of the mask.
        seed: a user seed (int) or a key from `stream_seed`.
        config: a `StrokeConfig`, a dict of its fields, or None for the defaults.

    Returns:
        float32 [H, W, 1], 1 = hole.

    Raises:
        DataError: a bad image size or configuration.
    """
    strokes = stroke_parameters(image_size, seed, config)
    return draw_strokes(strokes["points"], strokes["width"], strokes["segments"], image_size)
