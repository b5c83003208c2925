"""Tests for inpainting.imageio: reading, composing, writing, padding and finding image files."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from inpainting import imageio
from inpainting.imageio import ImageError

RNG_SEED = 1234


def _save(path, array):
    """Writes an array with plain OpenCV (independent of the module under test)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix, array)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def _load(path):
    return cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)


def _message(excinfo, *parts):
    """Checks an ImageError message is one line and contains every part."""
    text = str(excinfo.value)
    assert "\n" not in text
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"
    return text


def _sample(kind, height=9, width=13):
    rng = np.random.default_rng(RNG_SEED)
    dtype = np.uint16 if kind.endswith("16") else np.uint8
    channels = {"gray": None, "bgr": 3, "bgra": 4}[kind.rstrip("0123456789")]
    shape = (height, width) if channels is None else (height, width, channels)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)


def _expected_rgb(original):
    """The network input as the spec defines it, computed without the module."""
    values = original.astype(np.float64)
    if original.dtype == np.uint16:
        values = np.round(values / 257)
    if original.ndim == 2:
        values = np.stack([values] * 3, axis=-1)
    else:
        values = np.stack([values[..., 2], values[..., 1], values[..., 0]], axis=-1)
    return values.astype(np.uint8)


def _expected_fill(original, fill_rgb):
    """The stored pixels a float RGB fill should become for `original`'s format."""
    peak = 65535 if original.dtype == np.uint16 else 255
    red, green, blue = (fill_rgb[..., i].astype(np.float64) for i in range(3))
    if original.ndim == 2:
        channels = [0.299 * red + 0.587 * green + 0.114 * blue]
    else:
        channels = [blue, green, red]
    return [np.clip(np.round(c * peak / 255), 0, peak).astype(original.dtype) for c in channels]


# ------------------------------------------------------------ read / compose / write round trips

@pytest.mark.parametrize("kind", ["gray8", "gray16", "bgr8", "bgra8", "bgr16", "bgra16"])
def test_round_trip_keeps_unmasked_pixels_and_fills_hole(tmp_path, kind):
    original = _sample(kind)
    source = _save(tmp_path / f"in_{kind}.png", original)
    image = imageio.read_image(source)
    np.testing.assert_array_equal(image.original, original)
    assert image.original.dtype == original.dtype
    np.testing.assert_array_equal(image.rgb, _expected_rgb(original))
    assert image.rgb.dtype == np.uint8 and image.rgb.shape == (9, 13, 3)

    rng = np.random.default_rng(RNG_SEED + 1)
    fill = rng.uniform(-20, 275, size=(9, 13, 3)).astype(np.float32)  # includes out-of-range values
    mask = np.zeros((9, 13), np.float32)
    mask[2:6, 3:10] = 1
    mask[8, 12] = 1
    out_path = tmp_path / "out" / f"{kind}.png"
    imageio.write_image(out_path, imageio.compose(image, fill, mask))

    result = _load(out_path)
    assert result.dtype == original.dtype and result.shape == original.shape
    hole = mask == 1
    np.testing.assert_array_equal(result[~hole], original[~hole])
    for index, expected in enumerate(_expected_fill(original, fill)):
        stored = result if result.ndim == 2 else result[..., index]
        np.testing.assert_array_equal(stored[hole], expected[hole])
    if kind.startswith("bgra"):
        np.testing.assert_array_equal(result[..., 3], original[..., 3])


def test_compose_clips_and_rounds_extremes():
    original = np.full((1, 4, 3), 7, np.uint8)
    original.setflags(write=False)
    image = imageio.LoadedImage(rgb=original[..., ::-1], original=original, path="x.png")
    fill = np.array([[[-5, 300, 10.4], [10.6, 0, 255], [254.6, 1, 2], [9, 9, 9]]], np.float32)
    result = imageio.compose(image, fill, np.array([[1, 1, 1, 0]], np.float32))
    # BGR order: blue first.
    assert result.tolist() == [[[10, 255, 0], [255, 0, 11], [2, 1, 255], [7, 7, 7]]]
    assert result.flags.writeable and image.original.tolist() == [[[7, 7, 7]] * 4]


def test_compose_rejects_mismatched_shapes(tmp_path):
    image = imageio.read_image(_save(tmp_path / "a.png", _sample("bgr8")))
    with pytest.raises(ValueError):
        imageio.compose(image, np.zeros((8, 13, 3), np.float32), np.zeros((9, 13)))
    with pytest.raises(ValueError):
        imageio.compose(image, np.zeros((9, 13, 3), np.float32), np.zeros((9, 12)))
    with pytest.raises(ValueError, match="NaN"):
        imageio.compose(image, np.full((9, 13, 3), np.nan, np.float32), np.ones((9, 13)))


def test_rgb_is_in_rgb_order(tmp_path):
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[0, 0] = (0, 0, 255)  # pure red in BGR
    pixels[1, 2] = (255, 0, 0)  # pure blue in BGR
    image = imageio.read_image(_save(tmp_path / "red.png", pixels))
    assert image.rgb[0, 0].tolist() == [255, 0, 0]
    assert image.rgb[1, 2].tolist() == [0, 0, 255]
    assert (image.channels, image.bit_depth, image.has_alpha) == (3, 8, False)
    assert (image.height, image.width, tuple(image.size)) == (2, 3, (2, 3))
    assert image.path == str(tmp_path / "red.png")
    assert "path=" in repr(image) and "array" not in repr(image)


def test_rgb_drops_alpha_of_bgra(tmp_path):
    pixels = np.zeros((1, 2, 4), np.uint8)
    pixels[0, 0] = (0, 0, 255, 0)
    pixels[0, 1] = (10, 20, 30, 40)
    image = imageio.read_image(_save(tmp_path / "alpha.png", pixels))
    assert image.rgb.tolist() == [[[255, 0, 0], [30, 20, 10]]]
    assert image.has_alpha and image.channels == 4


def test_16bit_scaling_every_value(tmp_path):
    every_value = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    image = imageio.read_image(_save(tmp_path / "all.png", every_value))
    assert image.bit_depth == 16 and image.channels == 1
    expected = np.round(every_value / 257).astype(np.uint8)
    np.testing.assert_array_equal(image.rgb[..., 0], expected)
    np.testing.assert_array_equal(image.rgb[..., 2], expected)
    assert image.rgb[0, 128, 0] == 0 and image.rgb[0, 129, 0] == 1  # 128/257 < 0.5 < 129/257


def test_arrays_are_read_only(tmp_path):
    image = imageio.read_image(_save(tmp_path / "a.png", _sample("bgr8")))
    with pytest.raises(ValueError):
        image.original[0, 0, 0] = 1
    with pytest.raises(ValueError):
        image.rgb[0, 0, 0] = 1


def test_non_ascii_path(tmp_path):
    pixels = _sample("bgr8")
    image = imageio.read_image(_save(tmp_path / "bild_ü_画像.png", pixels))
    np.testing.assert_array_equal(image.original, pixels)
    target = tmp_path / "ausgabe_ö" / "画像.jpg"
    imageio.write_image(target, pixels)
    assert _load(target).shape == pixels.shape


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".PNG"])
def test_write_formats_by_extension(tmp_path, ext):
    pixels = _sample("bgr8")
    imageio.write_image(tmp_path / f"out{ext}", pixels)
    data = (tmp_path / f"out{ext}").read_bytes()
    magic = {".jpg": b"\xff\xd8", ".jpeg": b"\xff\xd8", ".webp": b"RIFF", ".bmp": b"BM",
             ".tif": b"II", ".tiff": b"II", ".PNG": b"\x89PNG"}[ext]
    assert data.startswith(magic)
    if ext in (".bmp", ".tif", ".tiff", ".PNG"):  # lossless
        np.testing.assert_array_equal(_load(tmp_path / f"out{ext}"), pixels)


def test_write_16bit_tiff_keeps_16_bits(tmp_path):
    pixels = _sample("bgr16")
    imageio.write_image(tmp_path / "deep.tif", pixels)
    np.testing.assert_array_equal(_load(tmp_path / "deep.tif"), pixels)


# ---------------------------------------------------------------- masks

def test_mask_gray_threshold_8bit(tmp_path):
    pixels = np.array([[0, 127, 128, 255]], np.uint8)
    mask = imageio.read_mask(_save(tmp_path / "m.png", pixels))
    assert mask.dtype == np.float32 and mask.shape == (1, 4)
    assert mask.tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_mask_gray_threshold_16bit(tmp_path):
    pixels = np.array([[0, 127, 255, 32767, 32768, 65535]], np.uint16)
    mask = imageio.read_mask(_save(tmp_path / "m.png", pixels))
    assert mask.tolist() == [[0, 0, 0, 0, 1, 1]]


def test_mask_colour_uses_luma(tmp_path):
    # BGR pixels with their luma: white 255, red 76.2, green 149.7, blue 29.1,
    # gray 128, gray 127, yellow 225.9, magenta 105.3.
    pixels = np.array([[[255, 255, 255], [0, 0, 255], [0, 255, 0], [255, 0, 0],
                        [128, 128, 128], [127, 127, 127], [0, 255, 255], [255, 0, 255]]], np.uint8)
    mask = imageio.read_mask(_save(tmp_path / "m.png", pixels))
    assert mask.tolist() == [[1, 0, 1, 0, 1, 0, 1, 0]]
    # Luma is rounded to an integer gray first, like cv2.cvtColor:
    # RGB (0, 217, 0) -> 127.379 -> 127 (kept); RGB (0, 168, 255) -> 127.686 -> 128 (hole).
    edge = np.array([[[0, 217, 0], [255, 168, 0]]], np.uint8)
    assert cv2.cvtColor(edge, cv2.COLOR_BGR2GRAY).tolist() == [[127, 128]]
    assert imageio.read_mask(_save(tmp_path / "edge.png", edge)).tolist() == [[0, 1]]


def test_mask_alpha_decides_when_not_opaque(tmp_path):
    pixels = np.zeros((2, 4, 4), np.uint8)
    pixels[0, :, :3] = 255            # white but fully transparent: kept
    pixels[1, :, :3] = 0              # black strokes ...
    pixels[1, :, 3] = [255, 200, 128, 127]  # ... with these opacities
    mask = imageio.read_mask(_save(tmp_path / "strokes.png", pixels))
    assert mask.tolist() == [[0, 0, 0, 0], [1, 1, 1, 0]]


def test_mask_opaque_rgba_uses_brightness(tmp_path):
    pixels = np.full((1, 3, 4), 255, np.uint8)
    pixels[0, 1, :3] = 0
    pixels[0, 2, :3] = 127
    mask = imageio.read_mask(_save(tmp_path / "opaque.png", pixels))
    assert mask.tolist() == [[1, 0, 0]]


def test_mask_16bit_alpha(tmp_path):
    pixels = np.zeros((1, 2, 4), np.uint16)
    pixels[0, :, 3] = [32768, 32767]
    assert imageio.read_mask(_save(tmp_path / "a16.png", pixels)).tolist() == [[1, 0]]


def test_mask_all_black_is_allowed(tmp_path):
    mask = imageio.read_mask(_save(tmp_path / "none.png", np.zeros((3, 3), np.uint8)), size=(3, 3))
    assert not mask.any()


def test_mask_size_mismatch(tmp_path):
    path = _save(tmp_path / "small_mask.png", np.zeros((4, 6), np.uint8))
    with pytest.raises(ImageError) as excinfo:
        imageio.read_mask(path, size=(5, 6))
    _message(excinfo, "small_mask.png", "6x4", "6x5")


def test_mask_help_is_one_line():
    assert isinstance(imageio.MASK_HELP, str) and "\n" not in imageio.MASK_HELP
    assert "white" in imageio.MASK_HELP and "transparent" in imageio.MASK_HELP


# ---------------------------------------------------------------- read errors

@pytest.mark.parametrize("reader", [imageio.read_image, imageio.read_mask])
def test_missing_file(tmp_path, reader):
    with pytest.raises(ImageError) as excinfo:
        reader(tmp_path / "nothere.png")
    _message(excinfo, "nothere.png", "no such file")


def test_directory_is_not_an_image(tmp_path):
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ImageError) as excinfo:
        imageio.read_image(tmp_path / "folder.png")
    _message(excinfo, "folder.png", "directory")


def _truncated_png():
    ok, data = cv2.imencode(".png", _sample("bgr8", 32, 32))
    return data.tobytes()[:-40]


@pytest.mark.parametrize("name, content", [
    ("random.png", np.random.default_rng(0).bytes(2000)),
    ("truncated.png", None),
    ("empty.png", b""),
    ("text.jpg", b"this is not an image\n"),
])
def test_undecodable_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(_truncated_png() if content is None else content)
    with pytest.raises(ImageError) as excinfo:
        imageio.read_image(path)
    _message(excinfo, name, "cannot decode as an image", "png", "jpg")


@pytest.mark.parametrize("ext", [".gif", ".png", ".webp", ".tif"])
def test_animated_or_multi_page_files_are_refused(tmp_path, ext):
    frames = [np.full((9, 13, 3), level, np.uint8) for level in (50, 120, 200)]
    if ext == ".tif":
        ok, data = cv2.imencodemulti(ext, frames)
    else:
        animation = cv2.Animation()
        animation.frames, animation.durations = frames, [100] * 3
        ok, data = cv2.imencodeanimation(ext, animation)
    assert ok
    path = tmp_path / f"moving{ext}"
    path.write_bytes(np.asarray(data).tobytes())
    assert cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED) is not None  # the first frame
    for reader in (imageio.read_image, imageio.read_mask):
        with pytest.raises(ImageError) as excinfo:
            reader(path)
        _message(excinfo, f"moving{ext}", "has 3 frames", "save the frame you want as a PNG")


def test_still_gif_is_read(tmp_path):
    pixels = np.zeros((9, 13, 3), np.uint8)
    pixels[2:5, 3:9] = (0, 0, 255)  # red in BGR
    path = _save(tmp_path / "still.gif", pixels)
    np.testing.assert_array_equal(imageio.read_image(path).rgb[..., ::-1], _load(path)[..., :3])


def test_float_tiff_is_rejected(tmp_path):
    pixels = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    path = _save(tmp_path / "float.tif", pixels)
    assert _load(path).dtype == np.float32
    with pytest.raises(ImageError) as excinfo:
        imageio.read_image(path)
    _message(excinfo, "float.tif", "float32", "8- or 16-bit")


def test_too_many_pixels(tmp_path, monkeypatch):
    path = _save(tmp_path / "big.png", np.zeros((4, 5), np.uint8))
    monkeypatch.setattr(imageio, "MAX_PIXELS", 19)
    with pytest.raises(ImageError) as excinfo:
        imageio.read_image(path)
    _message(excinfo, "big.png", "5x4", "19")
    monkeypatch.setattr(imageio, "MAX_PIXELS", 20)
    assert imageio.read_image(path).size == (4, 5)


def _run_python(script, *args, **env):
    """Runs a script in a fresh interpreter that imports this checkout; returns its stdout."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, **env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True,
                          text=True, timeout=60, check=True).stdout


def test_opencv_pixel_limit_is_reported(tmp_path):
    path = _save(tmp_path / "big.png", np.zeros((20, 20), np.uint8))
    output = _run_python("import sys; from inpainting import imageio\n"
                         "try: imageio.read_image(sys.argv[1])\n"
                         "except imageio.ImageError as err: print(err)\n",
                         str(path), OPENCV_IO_MAX_IMAGE_PIXELS="100")
    assert "big.png" in output and "OPENCV_IO_MAX_IMAGE_PIXELS" in output


def test_module_does_not_import_tensorflow():
    output = _run_python("import sys, inpainting.imageio; print(sorted(m for m in sys.modules "
                         "if m.split('.')[0] in ('tensorflow', 'keras')))")
    assert output.strip() == "[]"


# ---------------------------------------------------------------- write errors and atomicity

def test_unknown_output_extension_leaves_nothing(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    for name in ("out.gif", "out"):
        with pytest.raises(ImageError) as excinfo:
            imageio.write_image(tmp_path / name, _sample("bgr8"))
        _message(excinfo, name, ".png", ".jpg", ".tiff")
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]


def test_existing_output_is_not_replaced(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"precious")
    with pytest.raises(ImageError) as excinfo:
        imageio.write_image(target, _sample("bgr8"))
    _message(excinfo, "out.png", "exists", "pass overwrite to")
    assert target.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["out.png"]

    imageio.write_image(target, _sample("bgr8"), overwrite=True)
    np.testing.assert_array_equal(_load(target), _sample("bgr8"))
    assert os.listdir(tmp_path) == ["out.png"]


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp", ".bmp"])
def test_16bit_to_8bit_only_format(tmp_path, ext):
    with pytest.raises(ImageError) as excinfo:
        imageio.write_image(tmp_path / f"deep{ext}", _sample("bgr16"))
    _message(excinfo, f"deep{ext}", "16-bit", ".png", ".tif")
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_existing_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"precious")

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(ImageError) as excinfo:
        imageio.write_image(target, _sample("bgr8"), overwrite=True)
    _message(excinfo, "out.png", "No space left")
    assert target.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["out.png"]


def test_write_without_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    imageio.write_image(tmp_path / "new.png", _sample("gray8"))
    np.testing.assert_array_equal(_load(tmp_path / "new.png"), _sample("gray8"))
    with pytest.raises(ImageError, match="exists"):
        imageio.write_image(tmp_path / "new.png", _sample("bgr8"))
    assert os.listdir(tmp_path) == ["new.png"]


def test_write_creates_parent_directories(tmp_path):
    target = tmp_path / "a" / "b" / "c.png"
    imageio.write_image(target, _sample("gray8"))
    np.testing.assert_array_equal(_load(target), _sample("gray8"))
    assert os.listdir(target.parent) == ["c.png"]


def test_write_to_directory_path(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageError) as excinfo:
        imageio.write_image(tmp_path / "d.png", _sample("gray8"), overwrite=True)
    _message(excinfo, "d.png", "directory")


def test_write_rejects_float_arrays(tmp_path):
    with pytest.raises(ValueError):
        imageio.write_image(tmp_path / "f.png", np.zeros((2, 2, 3), np.float32))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- padding

def test_pad_odd_size_and_crop_back():
    array = _sample("bgr8", 301, 457)
    padded, size = imageio.pad_to_multiple(array)
    assert padded.shape == (304, 464, 3) and size == (301, 457)
    np.testing.assert_array_equal(imageio.crop_to(padded, size), array)
    # Mirror padding: the first padded row/column repeats the last one.
    np.testing.assert_array_equal(padded[301, :457], array[300])
    np.testing.assert_array_equal(padded[:301, 457], array[:, 456])
    np.testing.assert_array_equal(padded[303, :457], array[298])


def test_pad_mirror_content():
    array = np.array([[1, 2, 3], [4, 5, 6]])
    padded, size = imageio.pad_to_multiple(array, multiple=4)
    assert size == (2, 3)
    assert padded.tolist() == [[1, 2, 3, 3],
                               [4, 5, 6, 6],
                               [4, 5, 6, 6],
                               [1, 2, 3, 3]]


def test_pad_constant_is_zero():
    mask = np.ones((3, 5), np.float32)
    padded, size = imageio.pad_to_multiple(mask, mode="constant")
    assert padded.shape == (8, 8) and padded.dtype == np.float32
    assert padded.sum() == 15 and padded[:3, :5].all()


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 5, 3), (1, 1), (3, 5), (8, 16, 3)])
def test_pad_tiny_and_exact(shape):
    array = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape) + 1
    padded, size = imageio.pad_to_multiple(array)
    assert padded.shape[:2] == (8, 8 if shape[1] <= 8 else 16)
    assert padded.shape[2:] == shape[2:]
    np.testing.assert_array_equal(imageio.crop_to(padded, size), array)
    # Every padded value is a copy of some image value (mirror, no zeros).
    assert set(np.unique(padded)) == set(np.unique(array))
    if shape[:2] == (1, 1):
        assert (padded == array[0, 0]).all()


def test_pad_and_crop_reject_bad_input():
    with pytest.raises(ValueError):
        imageio.pad_to_multiple(np.zeros((0, 4)))
    with pytest.raises(ValueError):
        imageio.pad_to_multiple(np.zeros((4, 4)), mode="reflect")
    with pytest.raises(ValueError):
        imageio.pad_to_multiple(np.zeros((4, 4)), multiple=0)
    with pytest.raises(ValueError):
        imageio.crop_to(np.zeros((4, 4)), (5, 4))


# ---------------------------------------------------------------- finding files

def _touch(root, *names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_list_images_recursive_sorted_filtered(tmp_path):
    _touch(tmp_path, "z.tif", "a/y.png", "a/b/x.JPG", "c/d.webp", "b.jpeg", "notes.txt",
           "a/readme.md", ".hidden.png", ".cache/e.png", "f.bmp", "g.TIFF", "h.gif")
    expected = ["a/b/x.JPG", "a/y.png", "b.jpeg", "c/d.webp", "f.bmp", "g.TIFF", "z.tif"]
    assert imageio.list_images(tmp_path) == [name.replace("/", os.sep) for name in expected]


def test_list_images_missing_dir(tmp_path):
    with pytest.raises(ImageError) as excinfo:
        imageio.list_images(tmp_path / "nope")
    _message(excinfo, "nope", "no such directory")
    _touch(tmp_path, "file.png")
    with pytest.raises(ImageError) as excinfo:
        imageio.list_images(tmp_path / "file.png")
    _message(excinfo, "file.png", "not a directory")


def test_find_mask_with_other_extension(tmp_path):
    _touch(tmp_path, "masks/a/b/x.png", "masks/a/b/x.txt", "masks/a/b/xx.png", "masks/x.png")
    found = imageio.find_mask_for(os.path.join("a", "b", "x.jpg"), tmp_path / "masks")
    assert found == str(tmp_path / "masks" / "a" / "b" / "x.png")


def test_find_mask_missing(tmp_path):
    _touch(tmp_path, "masks/a/y.png", "masks/x.png.bak")
    for relpath in ("x.jpg", os.path.join("a", "x.jpg"), os.path.join("nodir", "x.jpg")):
        with pytest.raises(ImageError) as excinfo:
            imageio.find_mask_for(relpath, tmp_path / "masks")
        stem = os.path.join(str(tmp_path / "masks"), os.path.splitext(relpath)[0])
        _message(excinfo, relpath, "no mask", stem)


def test_find_optional_sketch(tmp_path):
    # Sketches are optional per image: missing is None, ambiguous is still an error naming them.
    _touch(tmp_path, "sketches/x.png", "sketches/x.BMP", "sketches/y.png")
    assert imageio.find_mask_for("z.jpg", tmp_path / "sketches", required=False, what="sketch") is None
    found = imageio.find_mask_for("y.jpg", tmp_path / "sketches", required=False, what="sketch")
    assert found == str(tmp_path / "sketches" / "y.png")
    with pytest.raises(ImageError) as excinfo:
        imageio.find_mask_for("x.jpg", tmp_path / "sketches", required=False, what="sketch")
    _message(excinfo, "x.jpg", "several sketch files match")


def test_find_mask_ambiguous(tmp_path):
    _touch(tmp_path, "masks/x.png", "masks/x.BMP")
    with pytest.raises(ImageError) as excinfo:
        imageio.find_mask_for("x.jpg", tmp_path / "masks")
    _message(excinfo, "x.jpg", "x.png", "x.BMP", "several")
