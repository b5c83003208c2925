"""Tests for inpainting.data.pipeline: sources, decoding, skipped files, resuming, batches, TFDS."""

import functools
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from inpainting.config import PREPROCESSING
from inpainting.data import masks, pipeline, sources
from inpainting.data.edges import canny_edges
from inpainting.errors import DataError


def _save(path, array, params=()):
    """Writes an image with plain OpenCV (BGR order), independent of the module under test."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ok, encoded = cv2.imencode(os.path.splitext(path)[1], array, list(params))
    assert ok
    with open(path, "wb") as handle:
        handle.write(encoded.tobytes())
    return path


def _flat(value, size=(8, 8)):
    """A uniform gray image whose value identifies it."""
    return np.full((*size, 3), value, np.uint8)


def _ids(elements):
    """The identifying value of each image of `_flat` files."""
    return [int(element["image"][0, 0, 0]) for element in elements]


def _read(dataset, count=None):
    if count is not None:
        dataset = dataset.take(count)
    return list(dataset.as_numpy_iterator())


def _message(excinfo, *parts):
    text = str(excinfo.value)
    assert "\n" not in text
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"


def _folder(root, values, size=(8, 8)):
    """A folder of `_flat` png images named i<value>.png."""
    for value in values:
        _save(root / f"i{value:03d}.png", _flat(value, size))
    return root


def _spoil(root):
    """Adds five unreadable files; returns their paths."""
    root.mkdir(parents=True, exist_ok=True)
    bad = {"empty.png": b"", "text.jpg": b"this is not an image\n"}
    for name, source in (("truncated.png", ".png"), ("truncated.jpg", ".jpg"),
                         ("truncated.webp", ".webp")):
        ok, encoded = cv2.imencode(source, np.random.default_rng(0).integers(
            0, 256, (32, 32, 3), dtype=np.uint8))
        bad[name] = encoded.tobytes()[:len(encoded) // 2]
    for name, content in bad.items():
        (root / name).write_bytes(content)
    return sorted(str(root / name) for name in bad)


# ------------------------------------------------------------------------------ parsing


# ---------------------------------------------------------------------- file lists, folders

def test_flist_paths_are_relative_to_the_list_and_blank_lines_ignored(tmp_path):
    _folder(tmp_path / "images", [10, 20])
    absolute = _save(tmp_path / "elsewhere" / "x.png", _flat(30))
    _save(tmp_path / "lists" / "sub" / "y.png", _flat(40))
    flist = tmp_path / "lists" / "train.flist"
    flist.write_text(f"../images/i020.png\n\n   \n{absolute}\nsub/y.png\r\n../images/i010.png\n")
    assert sources.read_file_list(flist) == [
        str(tmp_path / "lists" / "../images/i020.png"), absolute,
        str(tmp_path / "lists" / "sub/y.png"), str(tmp_path / "lists" / "../images/i010.png")]
    stream = pipeline.image_dataset(f"flist:{flist}", image_size=(8, 8), training=False)
    assert _ids(_read(stream)) == [20, 30, 40, 10]
    assert sources.num_examples(f"flist:{flist}") == 4


def test_flist_errors(tmp_path):
    with pytest.raises(DataError) as excinfo:
        pipeline.image_dataset(f"flist:{tmp_path / 'none.flist'}", image_size=(8, 8))
    _message(excinfo, str(tmp_path / "none.flist"), "no such file list", "one image path per line")
    empty = tmp_path / "empty.flist"
    empty.write_text("\n  \n")
    with pytest.raises(DataError) as excinfo:
        pipeline.image_dataset(f"flist:{empty}", image_size=(8, 8))
    _message(excinfo, str(empty), "file list is empty")
    binary = tmp_path / "binary.flist"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError) as excinfo:
        pipeline.image_dataset(f"flist:{binary}", image_size=(8, 8))
    _message(excinfo, str(binary), "cannot read the file list", "UTF-8")


def test_folder_is_recursive_sorted_and_filters_extensions(tmp_path):
    root = tmp_path / "photos"
    _save(root / "b.png", _flat(1))
    _save(root / "A.JPG", _flat(2), [cv2.IMWRITE_JPEG_QUALITY, 100])
    _save(root / "sub" / "deeper" / "c.webp", _flat(3), [cv2.IMWRITE_WEBP_QUALITY, 101])
    _save(root / "sub" / "d.bmp", _flat(4))
    _save(root / "e.jpeg", _flat(5), [cv2.IMWRITE_JPEG_QUALITY, 100])
    _save(root / "f.tif", _flat(6))
    _save(root / ".hidden.png", _flat(7))
    _save(root / ".cache" / "g.png", _flat(8))
    (root / "notes.txt").write_text("x")
    (root / "folder.png").mkdir()
    expected = [root / "A.JPG", root / "b.png", root / "e.jpeg", root / "sub" / "d.bmp",
                root / "sub" / "deeper" / "c.webp"]
    assert sources.list_image_files(root) == [str(path) for path in expected]
    stream = pipeline.image_dataset(f"folder:{root}", image_size=(8, 8), training=False)
    assert _ids(_read(stream)) == [2, 1, 5, 4, 3]


def test_folder_errors(tmp_path):
    with pytest.raises(DataError) as excinfo:
        pipeline.image_dataset(f"folder:{tmp_path / 'absent'}", image_size=(8, 8))
    _message(excinfo, str(tmp_path / "absent"), "no such directory")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    _save(tmp_path / "docs" / "b.tif", _flat(1))
    with pytest.raises(DataError) as excinfo:
        pipeline.image_dataset(f"folder:{tmp_path / 'docs'}", image_size=(8, 8))
    _message(excinfo, str(tmp_path / "docs"), "no image files", ".webp")


def test_bad_arguments_are_refused(tmp_path):
    folder = f"folder:{_folder(tmp_path / 'a', [1])}"
    with pytest.raises(DataError) as excinfo:
        pipeline.image_dataset(folder, image_size=(8, 8), preprocess="zoom")
    _message(excinfo, "preprocess", "crop", "'zoom'")
    with pytest.raises(DataError) as excinfo:
        pipeline.image_dataset(folder, image_size=(0, 8))
    _message(excinfo, "image_size")
    with pytest.raises(DataError) as excinfo:
        pipeline.training_batches(lambda **kw: None, batch_size=2, image_size=(32, 32),
                                  box_size=(32, 16))
    _message(excinfo, "does not fit")


# ------------------------------------------------------------------------------ decoding

def _pixels(kind, size=(9, 13)):
    rng = np.random.default_rng(42)
    dtype = np.uint16 if "16" in kind else np.uint8
    channels = {"gray": (), "bgr": (3,), "bgra": (4,)}[kind.rstrip("0123456789")]
    array = rng.integers(0, np.iinfo(dtype).max, size=(*size, *channels), endpoint=True,
                         dtype=dtype)
    if dtype == np.uint16:  # values around the rounding boundaries of v / 257
        array.reshape(-1)[:6] = [0, 128, 129, 383, 384, 65535]
    return array


def _expected_rgb(stored):
    values = stored.astype(np.int64)
    if stored.dtype == np.uint16:
        values = (values + 128) // 257
    if values.ndim == 2:
        return np.repeat(values[:, :, None], 3, axis=2).astype(np.uint8)
    return values[:, :, 2::-1].astype(np.uint8)  # BGR(A) -> RGB, alpha dropped


@pytest.mark.parametrize("kind, ext, params", [
    ("gray8", ".png", ()), ("bgr8", ".png", ()), ("bgra8", ".png", ()),
    ("gray16", ".png", ()), ("bgr16", ".png", ()), ("bgra16", ".png", ()),
    ("bgr8", ".bmp", ()), ("gray8", ".bmp", ()),
    ("bgr8", ".webp", (cv2.IMWRITE_WEBP_QUALITY, 101)),   # lossless
    ("bgra8", ".webp", (cv2.IMWRITE_WEBP_QUALITY, 101)),
    ("gray8", ".webp", (cv2.IMWRITE_WEBP_QUALITY, 101)),
])
def test_decoding_is_exact(tmp_path, kind, ext, params):
    stored = _pixels(kind)
    _save(tmp_path / "img" / f"x{ext}", stored, params)
    [element] = _read(pipeline.image_dataset(f"folder:{tmp_path / 'img'}", image_size=(9, 13),
                                             training=False))
    assert element["image"].dtype == np.uint8 and element["image"].shape == (9, 13, 3)
    np.testing.assert_array_equal(element["image"], _expected_rgb(stored))
    assert element["skipped"] == 0 and element["position"] == 0


def test_jpeg_gray_and_colour_decode_close_to_opencv(tmp_path):
    rng = np.random.default_rng(3)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), (7, 7), 3)
    _save(tmp_path / "img" / "a.jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 95])
    _save(tmp_path / "img" / "b.jpg", smooth[:, :, 0], [cv2.IMWRITE_JPEG_QUALITY, 95])
    colour, gray = _read(pipeline.image_dataset(f"folder:{tmp_path / 'img'}", image_size=(24, 32),
                                                training=False))
    reference = cv2.imread(str(tmp_path / "img" / "a.jpg"))[:, :, ::-1]
    assert np.abs(colour["image"].astype(int) - reference).max() <= 1
    assert (gray["image"][..., 0] == gray["image"][..., 2]).all()
    reference = cv2.imread(str(tmp_path / "img" / "b.jpg"), cv2.IMREAD_GRAYSCALE)
    assert np.abs(gray["image"][..., 1].astype(int) - reference).max() <= 1


# ------------------------------------------------------------------- crop, resize, flips

def test_crop_and_resize_sizes(tmp_path):
    _save(tmp_path / "img" / "wide.png", _pixels("bgr8", (40, 70)))
    _save(tmp_path / "img" / "thin.png", _pixels("bgr8", (50, 10)))
    folder = f"folder:{tmp_path / 'img'}"
    for preprocess in PREPROCESSING:
        for training in (True, False):
            elements = _read(pipeline.image_dataset(folder, image_size=(32, 24), preprocess=preprocess,
                                                    training=training), 4)
            assert [e["image"].shape for e in elements] == [(32, 24, 3)] * (4 if training else 2)
    spec = pipeline.image_dataset(folder, image_size=(32, 24)).element_spec
    assert spec["image"].shape == (32, 24, 3) and spec["image"].dtype == tf.uint8
    assert spec["skipped"].shape == () and spec["skipped"].dtype == tf.int64


def test_centre_crop_and_resize_content(tmp_path):
    stored = _pixels("bgr8", (40, 60))
    _save(tmp_path / "img" / "a.png", stored)
    folder = f"folder:{tmp_path / 'img'}"
    [crop] = _read(pipeline.image_dataset(folder, image_size=(32, 32), training=False))
    np.testing.assert_array_equal(crop["image"], stored[4:36, 14:46, ::-1])
    halves = np.zeros((40, 60, 3), np.uint8)
    halves[:, 30:] = 200
    _save(tmp_path / "halves" / "a.png", halves)
    [resized] = _read(pipeline.image_dataset(f"folder:{tmp_path / 'halves'}", image_size=(20, 30),
                                             preprocess="resize", training=False))
    image = resized["image"].astype(int)
    assert (image[:, :14] == 0).all() and (image[:, 16:] == 200).all()


def test_small_images_are_scaled_up_keeping_the_aspect_ratio(tmp_path):
    gradient = np.tile((np.arange(24) * 10).astype(np.uint8), (16, 1))  # 16 x 24, gray
    _save(tmp_path / "img" / "g.png", gradient)
    [element] = _read(pipeline.image_dataset(f"folder:{tmp_path / 'img'}", image_size=(32, 32),
                                             training=False))
    # Scaled by 2 to 32 x 48 (bilinear, half-pixel centres), then the centre 32 columns.
    source_column = np.clip((np.arange(8, 40) + 0.5) / 2 - 0.5, 0, 23)
    expected = np.round(10 * source_column)
    np.testing.assert_allclose(element["image"][:, :, 0], np.tile(expected, (32, 1)), atol=1)
    tall = np.zeros((50, 10), np.uint8)
    _save(tmp_path / "tall" / "t.png", tall)
    [element] = _read(pipeline.image_dataset(f"folder:{tmp_path / 'tall'}", image_size=(32, 32),
                                             training=False))
    assert element["image"].shape == (32, 32, 3)


def _coordinates(size=(40, 44)):
    """A BGR image whose red is 4 * row and green 4 * column."""
    rows, cols = np.mgrid[:size[0], :size[1]]
    return np.stack([np.zeros(size), 4 * cols, 4 * rows], axis=-1).astype(np.uint8)


def test_random_crop_offsets_are_uniform_and_flips_random(tmp_path):
    stored = _coordinates()
    _save(tmp_path / "img" / "c.png", stored)
    folder = f"folder:{tmp_path / 'img'}"
    rgb = stored[:, :, ::-1]
    elements = _read(pipeline.image_dataset(folder, image_size=(32, 32), flip=False, seed=5), 300)
    tops = [int(e["image"][0, 0, 0]) // 4 for e in elements]
    lefts = [int(e["image"][0, 0, 1]) // 4 for e in elements]
    assert sorted(set(tops)) == list(range(9)) and sorted(set(lefts)) == list(range(13))
    for element, top, left in zip(elements, tops, lefts):
        np.testing.assert_array_equal(element["image"], rgb[top:top + 32, left:left + 32])
    assert [e["position"] for e in elements] == list(range(300))
    flipped = 0
    for element in _read(pipeline.image_dataset(folder, image_size=(32, 32), seed=5), 60):
        image = element["image"]
        mirrored = image[0, 0, 1] > image[0, 31, 1]
        flipped += mirrored
        top, left = image[0, 0, 0] // 4, min(image[0, 0, 1], image[0, 31, 1]) // 4
        crop = rgb[top:top + 32, left:left + 32]
        np.testing.assert_array_equal(image, crop[:, ::-1] if mirrored else crop)
    assert 10 < flipped < 50
    for element in _read(pipeline.image_dataset(folder, image_size=(32, 32), training=False)):
        assert element["image"][0, 0, 1] < element["image"][0, 31, 1]  # never flipped


def test_each_epoch_visits_every_file_once_in_a_seeded_order(tmp_path):
    folder = f"folder:{_folder(tmp_path / 'img', range(10, 70, 10))}"
    first = _read(pipeline.image_dataset(folder, image_size=(8, 8), seed=1), 24)
    ids = _ids(first)
    for epoch in range(4):
        assert sorted(ids[epoch * 6:epoch * 6 + 6]) == [10, 20, 30, 40, 50, 60]
    assert len({tuple(ids[e * 6:e * 6 + 6]) for e in range(4)}) > 1
    again = _read(pipeline.image_dataset(folder, image_size=(8, 8), seed=1), 24)
    assert _ids(again) == ids
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["image"], b["image"])
    assert _ids(_read(pipeline.image_dataset(folder, image_size=(8, 8), seed=2), 24)) != ids
    # Validation is the source's order.
    assert _ids(_read(pipeline.image_dataset(folder, image_size=(8, 8), training=False))) == [
        10, 20, 30, 40, 50, 60]


# --------------------------------------------------------------------------- unreadable

def test_unreadable_files_are_skipped_counted_and_named(tmp_path, capfd):
    root = _folder(tmp_path / "img", [10, 20, 30])
    bad = _spoil(root)  # empty.png, text.jpg, truncated.jpg, truncated.png, truncated.webp
    missing = str(root / "missing.png")
    good = [str(root / f"i0{value}0.png") for value in (1, 2, 3)]
    flist = tmp_path / "list.flist"
    flist.write_text("\n".join([bad[0], good[0], bad[1], missing, good[1], *bad[2:], good[2]]))
    elements = _read(pipeline.image_dataset(f"flist:{flist}", image_size=(8, 8), training=False))
    assert _ids(elements) == [10, 20, 30]
    assert [e["skipped"] for e in elements] == [1, 3, 6]  # cumulative, carried by each image
    assert [e["position"] for e in elements] == [1, 4, 8]
    err = capfd.readouterr().err
    for path in bad + [missing]:
        assert f"skipped an unreadable image: {path}" in err
    # In a training stream every epoch of 9 files skips 6 of them.
    elements = _read(pipeline.image_dataset(f"flist:{flist}", image_size=(8, 8), seed=3), 9)
    assert sorted(_ids(elements)) == [10, 10, 10, 20, 20, 20, 30, 30, 30]
    epochs = [e["position"] // 9 for e in elements]
    assert epochs == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    skipped = np.array([e["skipped"] for e in elements])
    positions = np.array([e["position"] for e in elements])
    np.testing.assert_array_equal(positions - np.arange(9), skipped)
    assert skipped[3] >= 6 and skipped[6] >= 12 and (np.diff(skipped) >= 0).all()


def test_file_names_that_are_not_utf8_are_read_or_named(tmp_path, capfd):
    """A name of bytes that are not UTF-8 (e.g. Latin-1 from an old camera): its image is read, and
    an unreadable one is skipped with a warning naming it (its odd bytes shown as U+FFFD)."""
    root = _folder(tmp_path / "img", [10])
    good, bad = os.path.join(os.fsencode(root), b"caf\xe9.png"), os.path.join(os.fsencode(root), b"a\xe9t\xe9.jpg")
    _save(os.fsdecode(good), _flat(20))
    with open(bad, "wb") as handle:
        handle.write(b"not an image")
    for training, count in ((False, 2), (True, 4)):  # training: two epochs
        elements = _read(pipeline.image_dataset(f"folder:{root}", image_size=(8, 8), training=training,
                                                seed=1), count)
        assert sorted(_ids(elements)) == sorted([10, 20] * (count // 2))
        assert elements[-1]["skipped"] >= 1  # the unreadable one, before the image or its next epoch
        # TensorFlow prints the bytes that are not UTF-8 as U+FFFD.
        err = capfd.readouterr().err
        assert "skipped an unreadable image: " + bad.decode("utf-8", "replace") in err, err


def test_long_runs_of_unreadable_files_are_named_and_counted(tmp_path, capfd):
    root = _folder(tmp_path / "img", [10])
    bad = _spoil(root)
    paths = bad[:4] + [str(root / "i010.png")]
    stream = sources.read_items(
        sources.file_items(paths, seed=0, training=False),
        lambda path, position: sources.decode_rgb(tf.io.read_file(path))[:1, :1],
        empty=tf.zeros([1, 1, 3], tf.uint8), label="run", num_items=5, remembered=2)
    [element] = _read(stream)
    assert element["skipped"] == 4 and element["position"] == 4
    err = capfd.readouterr().err
    assert f"warning: run: skipped an unreadable image: {bad[2]}" in err
    assert f"warning: run: skipped an unreadable image: {bad[3]}" in err
    assert "warning: run: and 2 more before them" in err


def test_a_source_without_any_readable_file_ends_the_stream(tmp_path, capfd):
    root = tmp_path / "bad"
    _spoil(root)
    folder = f"folder:{root}"
    assert _read(pipeline.image_dataset(folder, image_size=(8, 8), training=False)) == []
    assert _read(pipeline.image_dataset(folder, image_size=(8, 8), seed=1)) == []
    assert _read(pipeline.image_dataset(folder, image_size=(8, 8), seed=1, start_example=7)) == []
    batches = pipeline.training_batches(
        functools.partial(pipeline.image_dataset, folder, image_size=(32, 32)), batch_size=2,
        image_size=(32, 32), box_size=(16, 16))
    with pytest.raises(StopIteration):
        next(iter(batches))
    assert "no image of a whole epoch (5 files) could be read" in capfd.readouterr().err


# ---------------------------------------------------------------------------- resuming

def test_start_example_reproduces_the_uninterrupted_stream(tmp_path):
    root = _folder(tmp_path / "img", [10, 20, 30, 40])
    _spoil(root)  # 9 files, 5 unreadable
    make = functools.partial(pipeline.image_dataset, f"folder:{root}", image_size=(8, 8), seed=7)
    full = _read(make(), 20)
    for consumed in (1, 3, 4, 9, 13):
        skipped = int(full[consumed - 1]["skipped"])
        resumed = _read(make(start_example=consumed + skipped, skipped_before=skipped),
                        20 - consumed)
        assert len(resumed) == 20 - consumed
        for a, b in zip(resumed, full[consumed:]):
            assert a.keys() == b.keys()
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
    # Without the skipped count positions still match, only the count restarts.
    tail = _read(make(start_example=18), 4)
    assert [e["position"] for e in tail] == [p for p in (e["position"] for e in full)
                                            if p >= 18][:4]


def test_validation_stream_start_example(tmp_path):
    folder = f"folder:{_folder(tmp_path / 'img', [1, 2, 3, 4, 5])}"
    stream = pipeline.image_dataset(folder, image_size=(8, 8), training=False, start_example=3)
    assert _ids(_read(stream)) == [4, 5]


# ------------------------------------------------------------------------------ shards

@pytest.mark.parametrize("count", [2, 3, 9])  # 9: more workers than the 7 files
def test_shards_split_the_stream_before_reading_and_resume_on_their_own(tmp_path, count):
    root = _folder(tmp_path / "img", range(10, 50, 10), (12, 10))
    _spoil(tmp_path / "img")  # 4 readable, 5 unreadable files
    make = functools.partial(pipeline.image_dataset, f"folder:{root}", image_size=(8, 8), seed=5)
    whole = {int(e["position"]): e for e in _read(make(), 40)}
    shards = [_read(make(shard=sources.Shard(k, count)), 40 // count + 4) for k in range(count)]
    seen = []
    for k, elements in enumerate(shards):
        positions = [int(e["position"]) for e in elements]
        assert all(p % count == k for p in positions)  # only its own files are read
        seen += positions
        for element in elements:  # an image of a position is the one the whole stream has there
            if element["position"] in whole:
                np.testing.assert_array_equal(element["image"], whole[element["position"]]["image"])
        # Its item i (read or skipped) is position i * count + k: the skipped count gives i.
        items = (np.array(positions) - k) // count
        np.testing.assert_array_equal(items - np.arange(len(items)),
                                      [e["skipped"] for e in elements])
        for consumed in (1, 4):
            skipped = int(elements[consumed - 1]["skipped"])
            resumed = _read(make(shard=sources.Shard(k, count), start_example=consumed + skipped,
                                 skipped_before=skipped), 3)
            assert [(e["position"], e["skipped"]) for e in resumed] == [
                (e["position"], e["skipped"]) for e in elements[consumed:consumed + 3]]
    last = min(max(whole), *(e[-1]["position"] for e in shards))
    assert sorted(p for p in seen if p <= last) == [p for p in sorted(whole) if p <= last]
    assert last > 30  # together they are the whole stream, here over 3 epochs of 9 files
    # Validation is never sharded.
    assert len(_read(pipeline.image_dataset(f"folder:{root}", image_size=(8, 8), training=False,
                                            shard=sources.Shard(1, count)))) == 4


def test_a_shard_of_unreadable_files_ends_its_stream(tmp_path, capfd):
    _spoil(tmp_path / "bad")
    stream = pipeline.image_dataset(f"folder:{tmp_path / 'bad'}", image_size=(8, 8),
                                    shard=sources.Shard(1, 2))
    assert _read(stream) == []
    assert ("error: folder:" + str(tmp_path / "bad") + ": no image of 2 epochs (this worker's share "
            "of 5 files each) could be read; the stream ends") in capfd.readouterr().err
    with pytest.raises(DataError, match="shard 2 of 2: expected 0 <= index < count"):
        sources.Shard(2, 2)


def test_a_shard_of_training_batches_is_its_part_of_the_global_batch(tmp_path):
    root = _folder(tmp_path / "img", range(1, 9), (40, 40))
    make = functools.partial(pipeline.training_batches, batch_size=4, image_size=(32, 32),
                             box_size=(16, 16), seed=3)
    whole = _read(make(_images(f"folder:{root}", seed=3)), 3)
    for k in (0, 1):
        shard = sources.Shard(k, 2)
        part = _read(make(_images(f"folder:{root}", seed=3, shard=shard), shard=shard), 3)
        for mine, batch in zip(part, whole):
            assert mine["image"].shape == (2, 32, 32, 3)
            np.testing.assert_array_equal(mine["mask"], batch["mask"][:2])
            np.testing.assert_array_equal(mine["bbox"], batch["bbox"][:2])
            for key in ("alpha_local", "alpha_global"):
                np.testing.assert_array_equal(mine[key], batch[key][2 * k:2 * k + 2])
    with pytest.raises(DataError, match="batch_size 3 cannot be split evenly over 2 workers"):
        make(_images(f"folder:{root}"), batch_size=3, shard=sources.Shard(0, 2))


# ------------------------------------------------------------------------------ batches

def _images(folder, **kwargs):
    return functools.partial(pipeline.image_dataset, folder, image_size=(32, 32), **kwargs)


def test_training_batch_layout(tmp_path):
    folder = f"folder:{_folder(tmp_path / 'img', range(1, 8), (40, 40))}"
    batches = pipeline.training_batches(_images(folder, seed=1), batch_size=3, image_size=(32, 32),
                                        box_size=(16, 16), max_delta=(8, 8), seed=1)
    spec = batches.element_spec
    assert spec["image"].shape == (3, 32, 32, 3) and spec["image"].dtype == tf.uint8
    assert spec["mask"].shape == (3, 32, 32, 1) and spec["mask"].dtype == tf.float32
    assert spec["bbox"].shape == (3, 4) and spec["bbox"].dtype == tf.int32
    assert spec["alpha_local"].shape == (3, 1) and spec["alpha_global"].shape == (3, 1)
    assert spec["skipped"].shape == (3,) and spec["skipped"].dtype == tf.int64
    for batch in _read(batches, 6):
        mask, bbox = batch["mask"], batch["bbox"]
        assert (mask == mask[:1]).all() and (bbox == bbox[:1]).all()
        top, left, height, width = bbox[0]
        assert (height, width) == (16, 16) and 0 <= top < 16 and 0 <= left < 16
        hole = mask[0, :, :, 0]
        assert set(np.unique(hole)) == {0.0, 1.0}
        assert hole[top:top + 16, left:left + 16].sum() == hole.sum() >= 64  # trim <= 4 a side
        for alpha in (batch["alpha_local"], batch["alpha_global"]):
            assert alpha.dtype == np.float32 and ((0 <= alpha) & (alpha < 1)).all()
            assert len(np.unique(alpha)) == 3
        assert not np.array_equal(batch["alpha_local"], batch["alpha_global"])
        np.testing.assert_array_equal(batch["skipped"], 0)


def _assert_batches_equal(first, second, keys=None):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        for key in keys or a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_batch_randomness_depends_only_on_seed_and_batch_index(tmp_path):
    one = f"folder:{_folder(tmp_path / 'a', range(1, 8), (40, 40))}"
    two = f"folder:{_folder(tmp_path / 'b', range(50, 60), (36, 36))}"
    make = functools.partial(pipeline.training_batches, batch_size=2, image_size=(32, 32),
                             box_size=(16, 16))
    first = _read(make(_images(one, seed=1), seed=3), 5)
    other_images = _read(make(_images(two, seed=9), seed=3), 5)
    random_keys = ["mask", "bbox", "alpha_local", "alpha_global"]
    _assert_batches_equal(first, other_images, random_keys)
    assert len({(tuple(b["bbox"][0]), float(b["alpha_local"][0, 0])) for b in first}) == 5
    other_seed = _read(make(_images(one, seed=1), seed=4), 5)
    assert any(not np.array_equal(a["mask"], b["mask"]) for a, b in zip(first, other_seed))
    _assert_batches_equal(first, _read(make(_images(one, seed=1), seed=3), 5))


def test_start_batch_reproduces_the_uninterrupted_batches(tmp_path):
    root = _folder(tmp_path / "img", range(1, 6), (40, 40))
    _spoil(root)  # 10 files, 5 unreadable
    make = functools.partial(pipeline.training_batches, _images(f"folder:{root}", seed=2),
                             batch_size=3, image_size=(32, 32), box_size=(16, 16), seed=2)
    full = _read(make(), 8)
    assert full[-1]["skipped"].max() > 0
    for start in (1, 2, 5):
        skipped = int(full[start - 1]["skipped"].max())
        _assert_batches_equal(_read(make(start_batch=start, skipped_before=skipped), 8 - start),
                              full[start:])
    # A plain dataset of images is skipped by decoding.
    stream = pipeline.image_dataset(f"folder:{root}", image_size=(32, 32), seed=2)
    resumed = _read(pipeline.training_batches(stream, batch_size=3, image_size=(32, 32),
                                              box_size=(16, 16), seed=2, start_batch=2), 2)
    _assert_batches_equal(resumed, full[2:4])


def test_training_batches_with_a_mask_folder(tmp_path):
    folder = f"folder:{_folder(tmp_path / 'img', range(1, 5), (32, 32))}"
    for index in range(3):
        mask = np.zeros((16, 16), np.uint8)
        mask[2 + index:6 + 2 * index, 3:9 + index] = 255
        _save(tmp_path / "masks" / f"m{index}.png", mask)
    batches = _read(pipeline.training_batches(_images(folder), batch_size=2, image_size=(32, 32),
                                              box_size=(16, 16), seed=3,
                                              mask_dir=tmp_path / "masks"), 6)
    stream = _read(masks.mask_folder_dataset(tmp_path / "masks", (32, 32), 3).take(6))
    for batch, mask in zip(batches, stream):
        np.testing.assert_array_equal(batch["mask"], np.stack([mask, mask]))
        expected = masks.mask_bbox(mask, (16, 16), (32, 32)).numpy()
        np.testing.assert_array_equal(batch["bbox"], np.stack([expected, expected]))
    # The first three batches are one epoch of the three masks, each scaled up twice.
    assert sorted(int(b["mask"][0].sum()) for b in batches[:3]) == [4 * 6 * 4, 5 * 7 * 4,
                                                                    6 * 8 * 4]
    resumed = _read(pipeline.training_batches(_images(folder), batch_size=2, image_size=(32, 32),
                                              box_size=(16, 16), seed=3, start_batch=4,
                                              mask_dir=tmp_path / "masks"), 2)
    _assert_batches_equal(resumed, batches[4:6])


def test_validation_batches(tmp_path):
    folder = f"folder:{_folder(tmp_path / 'img', [1, 2, 3, 4, 5], (32, 32))}"
    stream = pipeline.image_dataset(folder, image_size=(32, 32), training=False)
    [batch] = _read(pipeline.validation_batches(stream, count=3, image_size=(32, 32),
                                                box_size=(16, 8)))
    assert _ids([{"image": image} for image in batch["image"]]) == [1, 2, 3]
    hole = np.zeros((32, 32, 1), np.float32)
    hole[8:24, 12:20] = 1
    np.testing.assert_array_equal(batch["mask"], np.stack([hole] * 3))
    np.testing.assert_array_equal(batch["bbox"], [[8, 12, 16, 8]] * 3)
    np.testing.assert_array_equal(batch["alpha_local"], np.full((3, 1), 0.5, np.float32))
    np.testing.assert_array_equal(batch["alpha_global"], np.full((3, 1), 0.5, np.float32))
    np.testing.assert_array_equal(batch["skipped"], [0, 0, 0])
    # Fixed masks from a folder, one per example; fewer images than count give a smaller batch.
    for index in range(2):
        mask = np.zeros((32, 32), np.uint8)
        mask[index:index + 4, 20:30] = 255
        _save(tmp_path / "masks" / f"m{index}.png", mask)
    [batch] = _read(pipeline.validation_batches(
        functools.partial(pipeline.image_dataset, folder, image_size=(32, 32), training=False),
        count=8, image_size=(32, 32), box_size=(16, 8), mask_dir=tmp_path / "masks"))
    assert batch["image"].shape == (5, 32, 32, 3)
    fixed = masks.fixed_masks(tmp_path / "masks", (32, 32), 8).numpy()
    np.testing.assert_array_equal(batch["mask"], fixed[:5])
    assert [int(m.sum()) for m in batch["mask"]] == [40] * 5
    np.testing.assert_array_equal(batch["bbox"][0], masks.mask_bbox(fixed[0], (16, 8),
                                                                     (32, 32)).numpy())
    assert batch["bbox"][0].tolist() == [0, 21, 16, 8]


def _blocks(root, count, size=(40, 40)):
    """A folder of images of random 8 x 8 colour blocks (they have Canny edges)."""
    rng = np.random.default_rng(5)
    for index in range(count):
        small = (rng.integers(0, 4, (size[0] // 8, size[1] // 8, 3)) * 85).astype(np.uint8)
        _save(root / f"b{index}.png", np.kron(small, np.ones((8, 8, 1), np.uint8)))
    return root


def test_free_form_training_batches_join_strokes_to_the_box(tmp_path):
    folder = f"folder:{_folder(tmp_path / 'img', range(1, 8), (40, 40))}"
    make = functools.partial(pipeline.training_batches, _images(folder, seed=1), batch_size=2,
                             image_size=(32, 32), box_size=(16, 16), max_delta=(8, 8), seed=6)
    boxes = _read(make(), 4)
    free = _read(make(free_form=True), 4)
    # The box, trim, alphas and images do not change; no "edge" unless asked for.
    _assert_batches_equal(free, boxes, ["image", "bbox", "alpha_local", "alpha_global",
                                        "skipped"])
    assert free[0].keys() == boxes[0].keys()
    for index, (batch, box) in enumerate(zip(free, boxes)):
        mask = batch["mask"]
        assert mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
        assert (mask == mask[:1]).all()
        assert (mask >= box["mask"]).all() and mask.sum() > box["mask"].sum()
        # The strokes are a pure function of (seed, batch index): deterministic.
        key = sources.stream_seed(sources.stream_seed(6, pipeline.BATCH, index), 4)
        strokes = masks.brush_stroke_mask((32, 32), key).numpy()
        np.testing.assert_array_equal(mask[0], np.maximum(box["mask"][0], strokes))
    assert len({batch["mask"].tobytes() for batch in free}) == 4
    _assert_batches_equal(_read(make(free_form=True, start_batch=2), 2), free[2:])
    # A stroke configuration is passed on.
    thin = {"max_strokes": 1, "min_vertices": 1, "max_vertices": 2, "min_width": 1,
            "max_width": 2}
    [batch] = _read(make(free_form=True, strokes=thin), 1)
    key = sources.stream_seed(sources.stream_seed(6, pipeline.BATCH, 0), 4)
    np.testing.assert_array_equal(batch["mask"][1], np.maximum(
        boxes[0]["mask"][0], masks.brush_stroke_mask((32, 32), key, thin).numpy()))


def test_edge_maps_of_training_and_validation_batches(tmp_path):
    folder = f"folder:{_blocks(tmp_path / 'img', 5)}"
    batches = pipeline.training_batches(_images(folder, seed=2), batch_size=2, image_size=(32, 32),
                                        box_size=(16, 16), seed=2, edges=True, free_form=True)
    spec = batches.element_spec["edge"]
    assert spec.shape == (2, 32, 32, 1) and spec.dtype == tf.float32
    for batch in _read(batches, 2):
        edges = batch["edge"]
        assert set(np.unique(edges)) == {0.0, 1.0}
        np.testing.assert_array_equal(edges, canny_edges(batch["image"]).numpy())
        for image, edge in zip(batch["image"], edges):  # the unmasked images' edges
            expected = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 100, 200) > 0
            np.testing.assert_array_equal(edge[..., 0], expected)
    [batch] = _read(pipeline.validation_batches(
        functools.partial(pipeline.image_dataset, folder, image_size=(32, 32), training=False),
        count=8, image_size=(32, 32), box_size=(16, 16), edges=True))
    assert batch["edge"].shape == (5, 32, 32, 1) and batch["edge"].any()
    np.testing.assert_array_equal(batch["edge"], canny_edges(batch["image"]).numpy())


def test_free_form_validation_batches_use_one_fixed_stroke_mask(tmp_path):
    folder = f"folder:{_folder(tmp_path / 'img', [1, 2, 3], (32, 48))}"

    def make(**kwargs):
        stream = pipeline.image_dataset(folder, image_size=(32, 48), training=False)
        [batch] = _read(pipeline.validation_batches(stream, count=3, image_size=(32, 48),
                                                    box_size=(16, 16), **kwargs))
        return batch

    box, free = make(), make(free_form=True)
    _assert_batches_equal([free], [box], ["image", "bbox", "alpha_local", "alpha_global"])
    strokes = masks.brush_stroke_mask((32, 48), sources.stream_seed(0, pipeline.VALIDATION_STROKES))
    np.testing.assert_array_equal(free["mask"],
                                  np.maximum(box["mask"], strokes.numpy()[None]))
    assert free["mask"].sum() > box["mask"].sum() and (free["mask"] == free["mask"][:1]).all()
    thin = make(free_form=True, strokes=masks.StrokeConfig(max_strokes=1, max_width=13))
    assert box["mask"].sum() < thin["mask"].sum() < free["mask"].sum()


def test_free_form_and_a_mask_folder_are_refused_together(tmp_path):
    folder = f"folder:{_folder(tmp_path / 'img', [1, 2], (32, 32))}"
    _save(tmp_path / "masks" / "m.png", np.full((32, 32), 255, np.uint8))
    with pytest.raises(DataError) as excinfo:
        pipeline.training_batches(_images(folder), batch_size=2, image_size=(32, 32),
                                  box_size=(16, 16), mask_dir=tmp_path / "masks", free_form=True)
    _message(excinfo, "free_form", str(tmp_path / "masks"), "drop one")
    with pytest.raises(DataError) as excinfo:
        pipeline.validation_batches(_images(folder, training=False), count=2, image_size=(32, 32),
                                    box_size=(16, 16), mask_dir=tmp_path / "masks", free_form=True)
    _message(excinfo, "free_form", "mask_dir")
    with pytest.raises(DataError) as excinfo:
        pipeline.training_batches(_images(folder), batch_size=2, image_size=(32, 32),
                                  box_size=(16, 16), free_form=True, strokes={"min_width": 0})
    _message(excinfo, "StrokeConfig", "min_width")


# ------------------------------------------------------------------------------ samples

def test_samples_are_the_bundled_photos_without_the_held_out_ones():
    import skimage.data

    folder = os.path.dirname(skimage.data.__file__)
    for name in sources.SAMPLES_PHOTOS:
        assert os.path.isfile(os.path.join(folder, name)), name  # the list matches the wheel
    training = sources.sample_paths()
    held_out = sources.held_out_sample_paths()
    assert all(os.path.isfile(path) for path in training + held_out)
    assert {os.path.basename(p) for p in held_out} == set(sources.SAMPLES_HELD_OUT)
    assert not {os.path.basename(p) for p in training} & set(sources.SAMPLES_HELD_OUT)
    assert len(training) == len(sources.SAMPLES_PHOTOS) - len(sources.SAMPLES_HELD_OUT)
    assert sources.num_examples("samples") == len(training)
    assert sources.num_examples("samples", training=False) == len(held_out)
    # Validation on samples reads only the held-out photos (sorted), centre-cropped.
    elements = _read(pipeline.image_dataset("samples", image_size=(32, 48), training=False))
    assert len(elements) == len(held_out)
    for element, path in zip(elements, sorted(held_out)):
        stored = cv2.imread(path)[:, :, ::-1]
        top, left = (stored.shape[0] - 32) // 2, (stored.shape[1] - 48) // 2
        np.testing.assert_array_equal(element["image"], stored[top:top + 32, left:left + 48])


# -------------------------------------------------------------------------------- TFDS

def test_tfds_unknown_dataset(tmp_path):
    with pytest.raises(DataError) as excinfo:
        pipeline.image_dataset("tfds:no_such_dataset_xyz", image_size=(8, 8), data_dir=tmp_path)
    _message(excinfo, "tfds:no_such_dataset_xyz", "unknown TFDS dataset", "no_such_dataset_xyz")


def test_tfds_unprepared_dataset_is_not_downloaded(tmp_path):
    with pytest.raises(DataError) as excinfo:
        pipeline.image_dataset("tfds:dtd", image_size=(8, 8), data_dir=tmp_path)
    _message(excinfo, "tfds:dtd", "not prepared", str(tmp_path), "tfds build dtd")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("name, instruction, download, problem", [
    ("celeb_a_hq", "data1024x1024.tar", False, "not prepared"),
    ("celeb_a_hq", "data1024x1024.tar", True, "cannot be downloaded automatically"),
    ("imagenet2012", "ILSVRC2012_img_train.tar", False, "not prepared"),
])
def test_tfds_manual_download_instructions_are_shown(tmp_path, name, instruction, download,
                                                     problem):
    with pytest.raises(DataError) as excinfo:
        pipeline.image_dataset(f"tfds:{name}", image_size=(8, 8), data_dir=tmp_path,
                               download=download)
    _message(excinfo, f"tfds:{name}", problem, "downloaded by hand", instruction,
             str(tmp_path / "downloads" / "manual"), f"tfds build {name}")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    """A TFDS dataset prepared offline: 'train' (40 examples, 3 shards) and 'test' (3).

    The image feature is called 'picture'; example i is a uniform image of value i.
    """
    import tensorflow_datasets as tfds

    class InpaintingTestPictures(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "label": tfds.features.ClassLabel(num_classes=2),
                "picture": tfds.features.Image(shape=(None, None, 3)),
            }))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(40), "test": self._generate_examples(3)}

        def _generate_examples(self, count):
            for index in range(count):
                yield index, {"picture": _flat(index + 100, (6 + index % 3, 9)),
                              "label": index % 2}

    data_dir = tmp_path_factory.mktemp("tfds")
    builder = tfds.builder("inpainting_test_pictures", data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=3))
    assert len(builder.info.splits["train"].file_instructions) == 3
    return data_dir


def test_tfds_prepared_dataset_reads_every_example_once_per_epoch(tiny_tfds, monkeypatch):
    make = functools.partial(pipeline.image_dataset, "tfds:inpainting_test_pictures",
                             image_size=(6, 8), data_dir=tiny_tfds, seed=4)
    assert sources.num_examples("tfds:inpainting_test_pictures", data_dir=tiny_tfds) == 40
    for block, window, starts in ((16, 256, (17, 40)), (2, 3, (1, 13, 39, 63)), (1, 1, (27,))):
        monkeypatch.setattr(sources, "TFDS_BLOCK_SHARDS", block)
        monkeypatch.setattr(sources, "TFDS_WINDOW", window)
        full = _read(make(), 90)
        ids = _ids(full)
        assert sorted(ids[:40]) == sorted(ids[40:80]) == list(range(100, 140))
        if window > 1:  # with windows of one record only the shard order changes
            assert ids[:40] != ids[40:80]
        assert [e["position"] for e in full] == list(range(90))
        for start in starts:
            resumed = _read(make(start_example=start), 90 - start)
            assert _ids(resumed) == ids[start:], (block, window, start)


def test_tfds_splits(tiny_tfds):
    make = functools.partial(pipeline.image_dataset, image_size=(6, 8), data_dir=tiny_tfds,
                             training=False)
    # No 'validation' split: validation reads 'test'.
    assert sorted(_ids(_read(make("tfds:inpainting_test_pictures")))) == [100, 101, 102]
    assert len(_read(make("tfds:inpainting_test_pictures:train[:25%]"))) == 10
    assert sorted(_ids(_read(make("tfds:inpainting_test_pictures:train")))) == list(
        range(100, 140))
    with pytest.raises(DataError) as excinfo:
        make("tfds:inpainting_test_pictures:valid")
    _message(excinfo, "bad split 'valid'", "test, train")


@pytest.mark.parametrize("count", [2, 4])  # 3 record files: by file for 2 workers, by record for 4
def test_tfds_shards_read_their_own_records(tiny_tfds, count):
    make = functools.partial(pipeline.image_dataset, "tfds:inpainting_test_pictures",
                             image_size=(6, 8), data_dir=tiny_tfds, seed=4)
    epochs = []
    for k in range(count):
        shard = sources.Shard(k, count)
        size = sources.source_items("tfds:inpainting_test_pictures", seed=4, data_dir=tiny_tfds,
                                    shard=shard).size
        ids = _ids(_read(make(shard=shard), 2 * size))
        assert sorted(ids[size:]) == sorted(ids[:size]) and len(set(ids)) == size  # its epochs
        epochs.append(ids[:size])
        assert _ids(_read(make(shard=shard, start_example=5), 10)) == ids[5:15]
    assert sorted(sum(epochs, [])) == list(range(100, 140))  # every record on one worker
    if count == 4:
        assert sorted(len(e) for e in epochs) == [10, 10, 10, 10]

