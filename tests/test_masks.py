"""Tests for inpainting.masks: DeepFill v1 boxes and trims, mask boxes, mask folders."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from inpainting import masks
from inpainting.errors import DataError


def _many(function, count):
    """Evaluates function(i) for i in range(count) inside tf.data and stacks the results."""
    stream = tf.data.Dataset.range(count).map(function).batch(count)
    return next(iter(stream)).numpy()


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
    first = masks.stream_seed(5, 1, 2).numpy()
    np.testing.assert_array_equal(first, masks.stream_seed(5, 1, 2).numpy())
    others = [masks.stream_seed(5, 1, 3), masks.stream_seed(5, 2, 2), masks.stream_seed(6, 1, 2)]
    assert all(not np.array_equal(first, other.numpy()) for other in others)
    assert first.shape == (2,) and first.dtype == np.int64
    # A key passes through unchanged when no part is given.
    np.testing.assert_array_equal(masks.stream_seed(tf.constant(first)).numpy(), first)


# ------------------------------------------------------------------------------- boxes

@pytest.mark.parametrize("image_size, box_size, margins", [
    ((64, 48), (32, 16), (0, 0)),
    ((64, 64), (40, 24), (4, 10)),
    ((40, 72), (38, 20), (0, 3)),  # only two possible rows: 0 and 1
])
def test_random_bbox_range_has_an_exclusive_upper_bound(image_size, box_size, margins):
    boxes = _many(lambda i: masks.random_bbox(masks.stream_seed(3, i), image_size, box_size,
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
    a = masks.random_bbox(masks.stream_seed(1, 7), (128, 128), (32, 32)).numpy()
    b = masks.random_bbox(masks.stream_seed(1, 7), (128, 128), (32, 32)).numpy()
    np.testing.assert_array_equal(a, b)
    c = [masks.random_bbox(masks.stream_seed(1, i), (128, 128), (32, 32)).numpy()[:2]
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
                                               seed=masks.stream_seed(9, i)), 3000)[..., 0]
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
    a = masks.bbox_to_mask(bbox, (64, 64), seed=masks.stream_seed(2, 5)).numpy()
    b = masks.bbox_to_mask(bbox, (64, 64), seed=masks.stream_seed(2, 5)).numpy()
    np.testing.assert_array_equal(a, b)
    sums = {masks.bbox_to_mask(bbox, (64, 64), seed=masks.stream_seed(2, i)).numpy().sum()
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
