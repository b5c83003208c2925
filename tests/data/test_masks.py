"""Tests for inpainting.data.masks: DeepFill v1 boxes and trims, mask boxes, mask folders, brush
strokes."""

import math

import cv2
import numpy as np
import pytest
import tensorflow as tf

from inpainting.data import masks, sources
from inpainting.errors import DataError


def _many(function, count):
    """Evaluates function(i) for i in range(count) inside tf.data and stacks the results."""
    stream = tf.data.Dataset.range(count).map(function).batch(count)
    return next(iter(stream)).numpy()


def _many_parameters(image_size, count, seed, config=None):
    """`masks.stroke_parameters` of keys stream_seed(seed, i), i < count, as numpy arrays."""
    stream = tf.data.Dataset.range(count).map(
        lambda i: masks.stroke_parameters(image_size, sources.stream_seed(seed, i), config))
    return next(stream.batch(count).as_numpy_iterator())


def _message(excinfo, *parts):
    text = str(excinfo.value)
    assert "\n" not in text
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"


def _save(path, array, params=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix, array, list(params))
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


# --------------------------------------------------------------------------------- seeds

def test_stream_seed_is_a_pure_function_of_its_parts():
    first = sources.stream_seed(5, 1, 2).numpy()
    np.testing.assert_array_equal(first, sources.stream_seed(5, 1, 2).numpy())
    others = [sources.stream_seed(5, 1, 3), sources.stream_seed(5, 2, 2), sources.stream_seed(6, 1, 2)]
    assert all(not np.array_equal(first, other.numpy()) for other in others)
    assert first.shape == (2,) and first.dtype == np.int64
    # A key passes through unchanged when no part is given.
    np.testing.assert_array_equal(sources.stream_seed(tf.constant(first)).numpy(), first)


# ------------------------------------------------------------------------------- boxes

@pytest.mark.parametrize("image_size, box_size, margins", [
    ((64, 48), (32, 16), (0, 0)),
    ((64, 64), (40, 24), (4, 10)),
    ((40, 72), (38, 20), (0, 3)),  # only two possible rows: 0 and 1
])
def test_random_bbox_range_has_an_exclusive_upper_bound(image_size, box_size, margins):
    boxes = _many(lambda i: masks.random_bbox(sources.stream_seed(3, i), image_size, box_size,
                                              margins), 4000)
    assert boxes.dtype == np.int32 and boxes.shape == (4000, 4)
    for axis in (0, 1):
        low = margins[axis]
        high = image_size[axis] - margins[axis] - box_size[axis] - 1  # largest value drawn
        values = boxes[:, axis]
        assert values.min() == low and values.max() == high
        assert len(np.unique(values)) == high - low + 1  # every value in range occurs
    np.testing.assert_array_equal(boxes[:, 2], box_size[0])
    np.testing.assert_array_equal(boxes[:, 3], box_size[1])


def test_random_bbox_is_deterministic_per_seed():
    a = masks.random_bbox(sources.stream_seed(1, 7), (128, 128), (32, 32)).numpy()
    b = masks.random_bbox(sources.stream_seed(1, 7), (128, 128), (32, 32)).numpy()
    np.testing.assert_array_equal(a, b)
    c = [masks.random_bbox(sources.stream_seed(1, i), (128, 128), (32, 32)).numpy()[:2]
         for i in range(8)]
    assert len({tuple(v) for v in c}) > 1
    # A plain int seed works too.
    np.testing.assert_array_equal(masks.random_bbox(4, (64, 64), (16, 16)).numpy(),
                                  masks.random_bbox(4, (64, 64), (16, 16)).numpy())


@pytest.mark.parametrize("image_size, box_size, margins, shown", [
    ((64, 64), (64, 32), (0, 0), "(64, 32)"),     # the range [0, 0) is empty, as in the original
    ((64, 64), (32, 32), (16, 0), "margins (16, 0)"),
    ((64, 64), (80, 16), (0, 0), "(80, 16)"),
])
def test_random_bbox_refuses_a_box_that_does_not_fit(image_size, box_size, margins, shown):
    with pytest.raises(DataError) as excinfo:
        masks.random_bbox(0, image_size, box_size, margins)
    _message(excinfo, "does not fit", shown, "image_size (64, 64)", "smaller")
    masks.random_bbox(0, (64, 64), (63, 32))  # the largest box that fits


def test_center_bbox():
    np.testing.assert_array_equal(masks.center_bbox((64, 48), (32, 17)).numpy(), [16, 15, 32, 17])
    np.testing.assert_array_equal(masks.center_bbox((33, 32), (32, 32)).numpy(), [0, 0, 32, 32])
    with pytest.raises(DataError) as excinfo:
        masks.center_bbox((32, 32), (33, 8))
    _message(excinfo, "box_size (33, 8)", "image_size (32, 32)")


# ------------------------------------------------------------------------------- trims

def test_mask_without_trim_is_exactly_the_box():
    bbox = tf.constant([5, 9, 20, 13])
    expected = np.zeros((40, 32, 1), np.float32)
    expected[5:25, 9:22] = 1
    untrimmed = masks.bbox_to_mask(bbox, (40, 32))
    assert untrimmed.dtype == tf.float32 and untrimmed.shape == (40, 32, 1)
    np.testing.assert_array_equal(untrimmed.numpy(), expected)
    np.testing.assert_array_equal(masks.bbox_to_mask(bbox, (40, 32), (0, 0), seed=3).numpy(),
                                  expected)
    np.testing.assert_array_equal(masks.bbox_to_mask(bbox, (40, 32), (1, 1), seed=3).numpy(),
                                  expected)  # 1 // 2 == 0: no trim possible


def test_trim_is_uniform_in_zero_to_half_max_delta_and_the_same_on_both_sides():
    top, left, height, width = 10, 20, 64, 48
    bbox = tf.constant([top, left, height, width])
    holes = _many(lambda i: masks.bbox_to_mask(bbox, (96, 96), (32, 12),
                                               seed=sources.stream_seed(9, i)), 3000)[..., 0]
    rows = holes.any(axis=2)
    cols = holes.any(axis=1)
    first_row = rows.argmax(axis=1)
    last_row = rows.shape[1] - 1 - rows[:, ::-1].argmax(axis=1)
    first_col = cols.argmax(axis=1)
    last_col = cols.shape[1] - 1 - cols[:, ::-1].argmax(axis=1)
    trim_h, trim_w = first_row - top, first_col - left
    np.testing.assert_array_equal(top + height - 1 - last_row, trim_h)
    np.testing.assert_array_equal(left + width - 1 - last_col, trim_w)
    assert sorted(set(trim_h)) == list(range(17))  # 0..32 // 2 inclusive, every value drawn
    assert sorted(set(trim_w)) == list(range(7))
    # The hole is a full rectangle.
    np.testing.assert_array_equal(holes.sum(axis=(1, 2)),
                                  (height - 2 * trim_h) * (width - 2 * trim_w))
    counts = np.bincount(trim_h, minlength=17)
    assert counts.min() > 3000 / 17 * 0.6  # roughly uniform


def test_trim_is_deterministic_per_seed():
    bbox = masks.center_bbox((64, 64), (32, 32))
    a = masks.bbox_to_mask(bbox, (64, 64), seed=sources.stream_seed(2, 5)).numpy()
    b = masks.bbox_to_mask(bbox, (64, 64), seed=sources.stream_seed(2, 5)).numpy()
    np.testing.assert_array_equal(a, b)
    sums = {masks.bbox_to_mask(bbox, (64, 64), seed=sources.stream_seed(2, i)).numpy().sum()
            for i in range(10)}
    assert len(sums) > 1


def test_negative_max_delta_is_refused():
    with pytest.raises(DataError) as excinfo:
        masks.bbox_to_mask([0, 0, 8, 8], (16, 16), (-2, 4), seed=1)
    _message(excinfo, "max_delta", "(-2, 4)")


# --------------------------------------------------------------------------- mask boxes

def _reference_mask_bbox(hole, box):
    """The box centred on the hole's bounding box, clamped, written with numpy."""
    size = hole.shape
    out = []
    for axis in (0, 1):
        covered = np.nonzero(hole.any(axis=1 - axis))[0]
        if covered.size:
            centre = (covered[0] + covered[-1] + 1) / 2
            start = int(np.floor(centre - box[axis] / 2))
        else:
            start = (size[axis] - box[axis]) // 2
        out.append(min(max(start, 0), size[axis] - box[axis]))
    return out + list(box)


@pytest.mark.parametrize("rows, cols", [
    ((20, 30), (10, 22)),   # inside, smaller than the box
    ((0, 3), (60, 64)),     # at a corner: clamped
    ((5, 60), (2, 62)),     # larger than the box: centred, only partly covered
    ((31, 32), (40, 41)),   # one pixel
])
def test_mask_bbox_centres_the_box_on_the_hole(rows, cols):
    hole = np.zeros((64, 64), bool)
    hole[rows[0]:rows[1], cols[0]:cols[1]] = True
    hole[40, 3] = hole[3, 40] = False
    box = masks.mask_bbox(hole[:, :, None].astype(np.float32), (24, 16), (64, 64)).numpy()
    assert box.dtype == np.int32
    np.testing.assert_array_equal(box, _reference_mask_bbox(hole, (24, 16)))
    top, left = box[:2]
    if rows[1] - rows[0] <= 24 and cols[1] - cols[0] <= 16:
        assert hole[top:top + 24, left:left + 16].sum() == hole.sum()


def test_mask_bbox_of_scattered_and_empty_masks():
    hole = np.zeros((48, 64, 1), np.float32)
    hole[2, 50] = hole[30, 60] = 1  # bounding box rows 2..30, cols 50..60
    # Centres 16.5 and 55.5: a half-pixel start is rounded down.
    np.testing.assert_array_equal(masks.mask_bbox(hole, (16, 16), (48, 64)).numpy(),
                                  [8, 47, 16, 16])
    np.testing.assert_array_equal(masks.mask_bbox(np.zeros((48, 64)), (16, 20), (48, 64)).numpy(),
                                  masks.center_bbox((48, 64), (16, 20)).numpy())


# ------------------------------------------------------------------------- mask files

def test_decode_mask_follows_the_mask_rule(tmp_path):
    gray = np.array([[0, 127, 128, 255]], np.uint8)
    result = masks.decode_mask(_save(tmp_path / "g.png", gray).read_bytes(), (1, 4))
    np.testing.assert_array_equal(result.numpy()[..., 0], [[0, 0, 1, 1]])
    # Colour: rounded luma; BGR (0, 0, 255) red -> 76, (255, 255, 0) cyan -> 179.
    bgr = np.array([[[0, 0, 255], [255, 255, 0], [128, 128, 128], [127, 127, 127]]], np.uint8)
    result = masks.decode_mask(_save(tmp_path / "c.png", bgr).read_bytes(), (1, 4))
    np.testing.assert_array_equal(result.numpy()[..., 0], [[0, 1, 1, 0]])
    # 16 bit: the threshold is half of 65535.
    wide = np.array([[0, 32767, 32768, 65535]], np.uint16)
    result = masks.decode_mask(_save(tmp_path / "w.png", wide).read_bytes(), (1, 4))
    np.testing.assert_array_equal(result.numpy()[..., 0], [[0, 0, 1, 1]])
    # A partly transparent alpha channel alone is the mask, whatever the colour.
    bgra = np.array([[[255, 255, 255, 0], [0, 0, 0, 255], [0, 0, 0, 200], [255, 255, 255, 10]]],
                    np.uint8)
    result = masks.decode_mask(_save(tmp_path / "a.png", bgra).read_bytes(), (1, 4))
    np.testing.assert_array_equal(result.numpy()[..., 0], [[0, 1, 1, 0]])
    # Uniformly opaque alpha: treated as colour.
    bgra[..., 3] = 255
    result = masks.decode_mask(_save(tmp_path / "o.png", bgra).read_bytes(), (1, 4))
    np.testing.assert_array_equal(result.numpy()[..., 0], [[1, 0, 0, 1]])


def test_decode_mask_resizes_with_nearest_neighbour(tmp_path):
    small = np.zeros((4, 4), np.uint8)
    small[1, 2] = 255
    result = masks.decode_mask(_save(tmp_path / "m.bmp", small).read_bytes(), (8, 8)).numpy()
    expected = np.zeros((8, 8), np.float32)
    expected[2:4, 4:6] = 1
    np.testing.assert_array_equal(result[..., 0], expected)


def _mask_folder(root, count=5, size=(16, 16)):
    """Masks whose hole areas (1, 2, ... pixels, in the top-left row) identify them."""
    for index in range(count):
        mask = np.zeros(size, np.uint8)
        mask[0, :index + 1] = 255
        _save(root / ("sub" if index % 2 else "") / f"m{index}.png", mask)
    (root / "notes.txt").write_text("not a mask")
    return root


def test_mask_folder_dataset_visits_every_mask_once_per_epoch(tmp_path):
    folder = _mask_folder(tmp_path / "masks")
    stream = masks.mask_folder_dataset(folder, (16, 16), seed=4)
    elements = [m.numpy() for m in stream.take(15)]
    assert all(m.shape == (16, 16, 1) and m.dtype == np.float32 for m in elements)
    areas = [int(m.sum()) for m in elements]
    for epoch in range(3):
        assert sorted(areas[epoch * 5:epoch * 5 + 5]) == [1, 2, 3, 4, 5]
    assert areas[:5] != areas[5:10] or areas[5:10] != areas[10:15]  # orders are reshuffled
    # Vertical flips move the hole row to the bottom, horizontal ones its run to the right.
    assert {int(np.argwhere(m[..., 0])[0, 0]) for m in elements} == {0, 15}
    assert {bool(m[:, 15, 0].any()) for m in elements} == {True, False}
    again = [m.numpy() for m in masks.mask_folder_dataset(folder, (16, 16), seed=4).take(15)]
    np.testing.assert_array_equal(np.stack(elements), np.stack(again))
    other = [m.numpy() for m in masks.mask_folder_dataset(folder, (16, 16), seed=5).take(15)]
    assert not np.array_equal(np.stack(elements), np.stack(other))
    resumed = [m.numpy() for m in masks.mask_folder_dataset(folder, (16, 16), 4, start=7).take(8)]
    np.testing.assert_array_equal(np.stack(resumed), np.stack(elements[7:]))


def test_mask_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError) as excinfo:
        masks.mask_folder_dataset(tmp_path / "absent", (16, 16), seed=0)
    _message(excinfo, str(tmp_path / "absent"), "no such directory", "mask")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError) as excinfo:
        masks.mask_folder_dataset(tmp_path / "empty", (16, 16), seed=0)
    _message(excinfo, str(tmp_path / "empty"), "no mask files", ".png")
    with pytest.raises(DataError) as excinfo:
        masks.fixed_masks(tmp_path / "empty", (16, 16), 2)
    _message(excinfo, str(tmp_path / "empty"), "no mask files")


def test_mask_folder_skips_unreadable_masks_and_ends_when_none_can_be_read(tmp_path, capfd):
    folder = _mask_folder(tmp_path / "masks", count=3)
    (folder / "broken.png").write_bytes(b"not a png")
    areas = [int(m.numpy().sum()) for m in masks.mask_folder_dataset(folder, (16, 16), 1).take(9)]
    assert sorted(areas) == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert "broken.png" in capfd.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"")
    (bad / "b.jpg").write_text("text")
    assert list(masks.mask_folder_dataset(bad, (16, 16), 1)) == []
    assert "no image of a whole epoch" in capfd.readouterr().err


def test_fixed_masks_are_the_first_in_sorted_order(tmp_path):
    folder = _mask_folder(tmp_path / "masks", count=3)  # sorted: m0.png, m2.png, sub/m1.png
    fixed = masks.fixed_masks(folder, (16, 16), 5).numpy()
    assert fixed.shape == (5, 16, 16, 1) and fixed.dtype == np.float32
    assert [int(m.sum()) for m in fixed] == [1, 3, 2, 1, 3]
    np.testing.assert_array_equal(fixed[0, 0, :, 0], [1] + [0] * 15)  # never flipped
    (folder / "0broken.png").write_bytes(b"junk")
    with pytest.raises(DataError) as excinfo:
        masks.fixed_masks(folder, (16, 16), 2)
    _message(excinfo, "0broken.png", "cannot read", str(folder))


# ------------------------------------------------------------------------ brush strokes

STROKE_SAMPLES = 1000


def _stroke_masks(image_size, count, seed=1, config=None):
    """`count` stroke masks [count, H, W] of keys stream_seed(seed, i), drawn inside tf.data."""
    return _many(lambda i: masks.brush_stroke_mask(image_size, sources.stream_seed(seed, i),
                                                   config), count)[..., 0]


@pytest.fixture(scope="module")
def square_strokes():
    """Masks and parameters of STROKE_SAMPLES default strokes on 256 x 256 images."""
    def sample(index):
        key = sources.stream_seed(1, index)
        params = masks.stroke_parameters((256, 256), key)
        return masks.brush_stroke_mask((256, 256), key)[..., 0], params

    stream = tf.data.Dataset.range(STROKE_SAMPLES).map(
        sample, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return next(stream.batch(STROKE_SAMPLES).as_numpy_iterator())


def _reference_original_masks(image_size, count, seed):
    """Hole fractions of the original generator's algorithm, written from its description.

    numpy draws, OpenCV drawing (lines of the stroke width and filled discs of radius
    width // 2 at the vertices), x along the width and y along the height; flips
    are left out (they do not change the area).
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    radius = math.sqrt(height ** 2 + width ** 2) / 8
    fractions = []
    for _ in range(count):
        mask = np.zeros(image_size, np.uint8)
        for _ in range(rng.integers(1, 4)):
            vertices = rng.integers(4, 12)
            thickness = int(rng.uniform(12, 40))
            low = 2 * math.pi / 5 - rng.uniform(0, 2 * math.pi / 15)
            high = 2 * math.pi / 5 + rng.uniform(0, 2 * math.pi / 15)
            x, y = int(rng.integers(width)), int(rng.integers(height))
            points = [(x, y)]
            for index in range(vertices):
                angle = rng.uniform(low, high)
                angle = 2 * math.pi - angle if index % 2 == 0 else angle
                step = np.clip(rng.normal(radius, radius / 2), 0, 2 * radius)
                x = int(np.clip(x + step * math.cos(angle), 0, width))
                y = int(np.clip(y + step * math.sin(angle), 0, height))
                points.append((x, y))
            for start, end in zip(points[:-1], points[1:]):
                cv2.line(mask, start, end, 1, thickness)
            for point in points:
                cv2.circle(mask, point, thickness // 2, 1, -1)
        fractions.append(mask.mean())
    return np.array(fractions)


def _capsule_reference(points, widths, segments, image_size):
    """The stroke mask from its parameters: numpy distances from pixel centres to segments."""
    height, width = image_size
    rows, cols = np.mgrid[:height, :width] + 0.5
    hole = np.zeros(image_size, bool)
    for stroke in range(len(widths)):
        for index in range(segments[stroke]):
            start, end = points[stroke, index].astype(np.float64), points[stroke, index + 1]
            delta = end - start
            length2 = delta @ delta
            share = ((cols - start[0]) * delta[0] + (rows - start[1]) * delta[1]) / length2 \
                if length2 > 0 else np.zeros(image_size)
            share = np.clip(share, 0, 1)
            distance2 = ((cols - start[0] - share * delta[0]) ** 2
                         + (rows - start[1] - share * delta[1]) ** 2)
            hole |= distance2 <= (widths[stroke] / 2) ** 2
    return hole


def test_stroke_parameters_follow_the_configuration(square_strokes):
    _, params = square_strokes
    count, segments, widths = params["count"], params["segments"], params["width"]
    assert count.shape == (STROKE_SAMPLES,) and segments.shape == widths.shape == (
        STROKE_SAMPLES, 3)
    assert params["points"].shape == (STROKE_SAMPLES, 3, 12, 2)  # max_vertices - 1 segments
    # Strokes 1..3, segments 4..11 and widths 12..39 (exclusive upper bounds), all drawn.
    assert sorted(set(count)) == [1, 2, 3]
    assert np.bincount(count)[1:].min() > STROKE_SAMPLES / 3 * 0.8
    used = np.arange(3)[None] < count[:, None]
    assert (segments[~used] == 0).all()
    assert sorted(set(segments[used])) == list(range(4, 12))
    assert sorted(set(widths[used])) == list(range(12, 40))
    # Vertices stay in the image rectangle, [0, W] x [0, H].
    points = params["points"]
    assert points.min() >= 0 and points.max() <= 256
    # Segment lengths are at most 2 R, R = sqrt(H^2 + W^2) / 8, and average about R.
    lengths = np.linalg.norm(np.diff(points, axis=2), axis=3)
    radius = math.sqrt(2 * 256 ** 2) / 8
    assert lengths.max() <= 2 * radius + 1e-3
    assert 0.6 * radius < lengths[used].mean() < radius
    # Both flips happen about half of the time, independently.
    flips = params["flip"]
    assert flips.shape == (STROKE_SAMPLES, 2)
    assert 0.4 < flips[:, 0].mean() < 0.6 and 0.4 < flips[:, 1].mean() < 0.6
    assert 0.15 < (flips[:, 0] & flips[:, 1]).mean() < 0.35


def test_flips_change_the_direction_of_the_strokes(square_strokes):
    """Before flipping, segment 0 goes up (angle 2 pi - a, a in (48, 96) degrees) and strokes
    drift right (cos a > 0 for most angles); each flip reverses one of these."""
    _, params = square_strokes
    first = params["points"][:, 0, 1] - params["points"][:, 0, 0]  # segment 0 of stroke 0
    moved = np.abs(first[:, 1]) > 1e-3
    up = first[:, 1] < 0
    np.testing.assert_array_equal(up[moved], ~params["flip"][moved, 1])
    drift = params["points"][:, 0, -1, 0] - params["points"][:, 0, 0, 0]
    right = drift > 0
    agree = (right == ~params["flip"][:, 0])[np.abs(drift) > 20]
    assert agree.mean() > 0.95


def test_stroke_masks_are_the_capsules_of_their_parameters(square_strokes):
    holes, params = square_strokes
    for index in range(12):
        reference = _capsule_reference(params["points"][index], params["width"][index],
                                       params["segments"][index], (256, 256))
        # Pixel centres exactly on a stroke's border may round either way.
        assert (holes[index] != reference).sum() <= 4, index


def test_stroke_hole_area_statistics(square_strokes):
    """Hole fractions of 1000 masks of 256 x 256, with bounds from the configuration.

    Lower bound per mask: a stroke covers at least the disc of diameter min_width = 12
    at its start point, which lies in the image, so at least the quarter of that disc
    on the image side; it contains a square of side 6 / sqrt(2) > 4, hence at least
    4 x 4 pixel centres. Upper bound of the mean: the union is at most the sum of the
    capsule areas, whose expectation is E[strokes] E[segments] (E[length] E[width] +
    pi E[width^2] / 4) = 2 * 7.5 * (R * 25.5 + pi * 715.5 / 4) pixels (R the mean
    segment length, which the clipping keeps at sqrt(H^2 + W^2) / 8), about 39% of
    the image; strokes overlap (they zig-zag back) and leave the image, so far less
    is covered. The distribution must match the original algorithm (numpy and OpenCV
    drawing, `_reference_original_masks`) up to sampling noise (the mean of 1000
    fractions varies by about 0.003) and OpenCV's rasterisation, whose integer
    vertices and inclusive thick lines cover about 4% more pixels (about +0.006).
    """
    holes, _ = square_strokes
    assert holes.dtype == np.float32 and set(np.unique(holes)) == {0.0, 1.0}
    areas = holes.sum(axis=(1, 2))
    assert areas.min() >= 16
    fractions = areas / 256 ** 2
    radius = math.sqrt(2 * 256 ** 2) / 8
    bound = 2 * 7.5 * (radius * 25.5 + math.pi * (((40 - 12) ** 2 - 1) / 12 + 25.5 ** 2) / 4)
    assert 0.3 < bound / 256 ** 2 < 0.4
    assert 0.05 < fractions.mean() < bound / 256 ** 2
    assert fractions.max() < 0.8  # a sanity check: about 0.4 is seen, 1 is possible
    original = _reference_original_masks((256, 256), STROKE_SAMPLES, seed=0)
    assert abs(fractions.mean() - original.mean()) < 0.02, (fractions.mean(), original.mean())
    for quantile in (0.1, 0.5, 0.9):
        assert abs(np.quantile(fractions, quantile) - np.quantile(original, quantile)) < 0.03


def test_strokes_cover_the_whole_of_a_non_square_image():
    """The original swapped height and width: on 128 x 384 its strokes stayed in the first
    128 columns. Here every third of the width is covered alike, and the mean mask is
    symmetric left-right and top-bottom (the flips)."""
    holes = _stroke_masks((128, 384), 400, seed=2)
    assert holes.shape == (400, 128, 384)
    thirds = [holes[:, :, k * 128:(k + 1) * 128].mean() for k in range(3)]
    assert min(thirds) > 0.8 * max(thirds), thirds
    left, right = holes[:, :, :192].mean(), holes[:, :, 192:].mean()
    assert abs(left - right) < 0.1 * (left + right) / 2, (left, right)
    top, bottom = holes[:, :64].mean(), holes[:, 64:].mean()
    assert abs(top - bottom) < 0.1 * (top + bottom) / 2, (top, bottom)
    columns = holes.mean(axis=(0, 1))
    assert np.abs(columns - columns[::-1]).mean() < 0.2 * columns.mean()
    assert (holes.sum(axis=(1, 2)) >= 16).all()


def test_stroke_masks_are_deterministic_per_key_and_work_eagerly_and_in_graphs():
    key = sources.stream_seed(4, 11)
    eager = masks.brush_stroke_mask((40, 72), key).numpy()
    assert eager.shape == (40, 72, 1) and eager.dtype == np.float32
    np.testing.assert_array_equal(eager, masks.brush_stroke_mask((40, 72), key).numpy())
    graph = tf.function(lambda k: masks.brush_stroke_mask((40, 72), k))
    np.testing.assert_array_equal(eager, graph(key).numpy())
    others = [masks.brush_stroke_mask((40, 72), k).numpy() for k in
              (sources.stream_seed(4, 12), sources.stream_seed(5, 11))]
    assert all(not np.array_equal(eager, other) for other in others)
    np.testing.assert_array_equal(masks.brush_stroke_mask((40, 72), 3).numpy(),
                                  masks.brush_stroke_mask((40, 72), 3).numpy())


def test_stroke_config_changes_the_strokes():
    config = masks.StrokeConfig(max_strokes=1, min_vertices=1, max_vertices=2, min_width=3,
                                max_width=4, angle_range=0.0)
    params = _many_parameters((64, 64), 200, seed=3, config=config)
    assert (params["count"] == 1).all() and (params["segments"] == 1).all()
    assert (params["width"] == 3).all() and params["points"].shape == (200, 1, 2, 2)
    holes = _stroke_masks((64, 64), 200, seed=3, config={"max_strokes": 1, "min_vertices": 1,
                                                          "max_vertices": 2, "min_width": 3,
                                                          "max_width": 4, "angle_range": 0.0})
    thin = holes.sum(axis=(1, 2))
    # One segment of width 3 and length <= 2 R = 22.6: at most about 3 * 22.6 + 9 pixels.
    assert thin.min() >= 1 and thin.max() <= 3 * 2 * math.sqrt(2 * 64 ** 2) / 8 + 3 * 3 + 4
    default = _stroke_masks((64, 64), 200, seed=3).sum(axis=(1, 2))
    assert thin.mean() < default.mean() / 4


@pytest.mark.parametrize("fields, shown", [
    ({"max_strokes": 0}, "max_strokes must be an integer >= 1, got 0"),
    ({"max_strokes": 2.5}, "max_strokes"),
    ({"min_vertices": 5, "max_vertices": 5}, "1 <= min_vertices < max_vertices"),
    ({"min_vertices": 0}, "min_vertices"),
    ({"min_width": 40, "max_width": 12}, "got 40 and 12"),
    ({"min_width": True}, "min_width"),
    ({"mean_angle": float("nan")}, "mean_angle must be a finite number"),
    ({"angle_range": -0.1}, "angle_range must be a finite number of radians >= 0"),
])
def test_bad_stroke_configs_are_refused(fields, shown):
    with pytest.raises(DataError) as excinfo:
        masks.StrokeConfig(**fields)
    _message(excinfo, "StrokeConfig", shown)
    with pytest.raises(DataError):
        masks.StrokeConfig.of(fields)


def test_stroke_config_of():
    assert masks.StrokeConfig.of(None) == masks.StrokeConfig()
    config = masks.StrokeConfig(max_width=20)
    assert masks.StrokeConfig.of(config) is config
    assert masks.StrokeConfig.of({"max_width": 20}) == config
    with pytest.raises(DataError) as excinfo:
        masks.StrokeConfig.of({"widths": 3})
    _message(excinfo, "unknown field(s) widths", "max_strokes")
    with pytest.raises(DataError) as excinfo:
        masks.brush_stroke_mask((16, 16), 0, config=[3])
    _message(excinfo, "StrokeConfig", "list")
    with pytest.raises(DataError) as excinfo:
        masks.brush_stroke_mask((0, 16), 0)
    _message(excinfo, "image_size")
