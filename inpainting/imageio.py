"""Image and mask file I/O for the inpainting tools (numpy + OpenCV only, no TensorFlow).

Images
    Any 8- or 16-bit image OpenCV can decode: gray, BGR colour or BGRA colour with
    alpha. `read_image` keeps the pixels exactly as stored (`LoadedImage.original`)
    next to an 8-bit RGB copy for the network (`LoadedImage.rgb`: 16-bit values are
    scaled with round(v / 257), gray is replicated to three channels, alpha is
    dropped). `compose` puts the network's fill into the holes of the original, so
    the output keeps the input's bit depth, channel layout and alpha, and every
    pixel outside the hole is bit-identical to the input. EXIF orientation tags are
    not applied: pixels are used in the order they are stored in the file. Animated
    images (GIF, PNG, WebP) and multi-page TIFFs are refused, not cut to a frame.

Masks
    A mask is any 8- or 16-bit image of the same size as the image it belongs to.
    A pixel is part of the hole (to be filled) where the mask is white-ish: its gray
    value is above half of the maximum (> 127 for 8-bit, > 32767 for 16-bit). Colour
    masks are converted to gray with the luma weights 0.299 R + 0.587 G + 0.114 B,
    rounded to an integer, before the comparison. If the mask has an alpha channel
    that is not uniformly opaque, the alpha channel alone is the mask, whatever the
    colour: a pixel is a hole where alpha is above half (opaque strokes painted on a
    transparent layer). A uniformly opaque mask with alpha is treated like a colour
    mask. An all-black mask is valid and means there is nothing to fill.

Output files
    `write_image` picks the format from the extension (see `IMAGE_EXTENSIONS`),
    refuses to replace an existing file unless asked, and writes through a
    temporary file in the target directory that is renamed into place, so an
    interrupted write never leaves a partial file or destroys an existing one.
"""

import dataclasses
import os

import cv2
import numpy as np

from inpainting import files
from inpainting.errors import ImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
EXTENSIONS_16BIT = (".png", ".tif", ".tiff")
MAX_PIXELS = 100_000_000
MASK_HELP = ("mask: an image of the same size as the input; white pixels (gray above half of "
             "the maximum) are filled, black pixels are kept; if the mask has a partly "
             "transparent alpha channel, its opaque pixels are filled whatever their colour")

_LUMA_RGB = np.array([0.299, 0.587, 0.114])
_PEAK = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}
_SUPPORTED = ", ".join(ext[1:] for ext in IMAGE_EXTENSIONS)


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedImage:
    """An image file's stored pixels and the 8-bit RGB version the network sees.

    Both arrays are read-only so the original pixels cannot change by accident.

    Attributes:
        rgb: uint8 [H, W, 3] in RGB order.
        original: the pixels as stored: uint8 or uint16, [H, W] gray, [H, W, 3] BGR
            or [H, W, 4] BGRA (OpenCV's channel order).
        path: the file the image was read from.
    """

    rgb: np.ndarray = dataclasses.field(repr=False)
    original: np.ndarray = dataclasses.field(repr=False)
    path: str

    @property
    def height(self):
        """Image height in pixels."""
        return self.original.shape[0]

    @property
    def width(self):
        """Image width in pixels."""
        return self.original.shape[1]

    @property
    def size(self):
        """(height, width), the form `read_mask` and `crop_to` take."""
        return self.original.shape[:2]

    @property
    def channels(self):
        """Stored channel count: 1 (gray), 3 (BGR) or 4 (BGRA)."""
        return _channels(self.original)

    @property
    def bit_depth(self):
        """Stored bits per channel: 8 or 16."""
        return self.original.dtype.itemsize * 8

    @property
    def has_alpha(self):
        """Whether the file has an alpha channel."""
        return self.channels == 4


def check_sketch(sketch, guided, name="image"):
    """Raises ImageError when a sketch is given to a model that was not trained with sketches."""
    if sketch is not None and not guided:
        raise ImageError(f"{name}: a sketch was given but this model is not guided (it was not "
                         "trained with sketches)")


def _show(path):
    """A path as it appears in messages, with control characters escaped to keep one line."""
    text = os.fspath(path)
    return text if text.isprintable() else repr(text)[1:-1]


def _channels(array):
    """Channel count of an [H, W] or [H, W, C] array."""
    return 1 if array.ndim == 2 else array.shape[2]


def _luma(rgb):
    """Gray from RGB in the last axis, with the weights cv2.cvtColor uses (float result)."""
    return rgb[..., :3].astype(np.float64) @ _LUMA_RGB


def _size_text(size):
    """(H, W, ...) as "WxH", the way image sizes are usually written."""
    return f"{size[1]}x{size[0]}"


def _frame_count(path):
    """Frames (or pages) in an image file OpenCV has decoded; 1 if it cannot tell."""
    try:
        return cv2.imcount(path)
    except cv2.error:
        return 1


def _decode(path):
    """Reads and validates an image file; returns (path as str, pixels as cv2 decodes them)."""
    path = os.fspath(path)
    name = _show(path)
    if os.path.isdir(path):
        raise ImageError(f"{name}: is a directory, expected an image file")
    if not os.path.exists(path):
        raise ImageError(f"{name}: no such file")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise ImageError(f"{name}: cannot read the file ({err.strerror or err})") from None
    array = None
    if data:
        try:
            array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error as err:
            if "MAX_IMAGE" in str(err):
                raise ImageError(f"{name}: image is larger than OpenCV's decoding limit; raise the "
                                 f"OPENCV_IO_MAX_IMAGE_PIXELS environment variable or use a "
                                 f"smaller image") from None
    if array is None:
        empty = "file is empty; " if not data else ""
        raise ImageError(f"{name}: {empty}cannot decode as an image (supported: {_SUPPORTED})")
    frames = _frame_count(path)
    if frames > 1:
        raise ImageError(f"{name}: has {frames} frames (an animation or a multi-page file), but "
                         "inpainting takes one still image; save the frame you want as a PNG")
    if array.dtype not in _PEAK:
        raise ImageError(f"{name}: {array.dtype} pixels are not supported; "
                         f"expected an 8- or 16-bit image (e.g. 8-bit png or jpg)")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != 2 and (array.ndim != 3 or array.shape[2] not in (3, 4)):
        raise ImageError(f"{name}: pixel layout {array.shape} is not supported; "
                         f"expected a gray, RGB or RGBA image")
    height, width = array.shape[:2]
    if height * width == 0:
        raise ImageError(f"{name}: image is empty ({width}x{height} pixels)")
    if height * width > MAX_PIXELS:
        raise ImageError(f"{name}: image is {width}x{height} = {height * width} pixels, more than "
                         f"the limit of {MAX_PIXELS}; downscale it or cut it into tiles")
    return path, array


def read_image(path):
    """Reads an image file for inpainting.

    Args:
        path: the image file (str or path-like); any 8- or 16-bit gray, colour or
            colour+alpha image OpenCV can decode.

    Returns:
        A `LoadedImage` with the stored pixels and their 8-bit RGB version.

    Raises:
        ImageError: the file is missing, not decodable, empty, too large, animated (or has
            several pages), or has an unsupported bit depth or channel count.
    """
    path, original = _decode(path)
    if original.dtype == np.uint16:
        # (v + 128) // 257 == round(v / 257) exactly for every 16-bit v (no ties exist).
        eight = ((original.astype(np.uint32) + 128) // 257).astype(np.uint8)
    else:
        eight = original
    if eight.ndim == 2:
        rgb = np.repeat(eight[:, :, None], 3, axis=2)
    else:
        rgb = np.ascontiguousarray(eight[:, :, 2::-1])
    rgb.setflags(write=False)
    original.setflags(write=False)
    return LoadedImage(rgb=rgb, original=original, path=path)


def read_mask(path, size=None):
    """Reads a mask file (see the module docstring for the conventions).

    Args:
        path: the mask file (str or path-like).
        size: (height, width) the mask must have, usually the image's `size`;
            None accepts any size.

    Returns:
        float32 [H, W] array with 1.0 at hole pixels and 0.0 elsewhere.

    Raises:
        ImageError: the file cannot be read as an image (see `read_image`) or its
            size differs from `size`.
    """
    path, array = _decode(path)
    if size is not None and tuple(array.shape[:2]) != tuple(size):
        raise ImageError(f"{_show(path)}: mask is {_size_text(array.shape)} but the image is "
                         f"{_size_text(size)} (width x height); the mask must have the image's "
                         f"size")
    peak = _PEAK[array.dtype]
    if array.ndim == 2:
        value = array
    elif array.shape[2] == 4 and array[:, :, 3].min() < peak:
        value = array[:, :, 3]
    else:
        value = np.rint(_luma(array[:, :, 2::-1]))
    return (value > peak // 2).astype(np.float32)


def compose(image, filled_rgb, mask, weight=None):
    """Puts the network's fill into the hole of the original image.

    Args:
        image: the `LoadedImage` that was inpainted.
        filled_rgb: float [H, W, 3] RGB in 0..255, the network output at the image's size.
        mask: [H, W] with 1 at hole pixels (values above 0.5 count as hole).
        weight: optional float [H, W] in 0..1, the weight of the fill where the hole is feathered
            into the image (`inference.masktools.feather_weight`); hole pixels take the fill
            whatever it says.

    Returns:
        A new array with the dtype, channel count and layout of `image.original`:
        pixels outside the hole (and where `weight` is 0) are copied unchanged; hole pixels get
        the fill, and pixels with a weight `w` above 0 `w * fill + (1 - w) * input`, rounded and
        clipped to 0..255 (8-bit) or scaled by 257, rounded and clipped to 0..65535 (16-bit),
        the fill converted to gray with the luma weights for gray images and to BGR for colour
        images. Alpha, if any, is kept everywhere.

    Raises:
        ValueError: the shapes do not match the image or the fill is not finite.
    """
    original = image.original
    size = original.shape[:2]
    filled = np.asarray(filled_rgb)
    hole = np.asarray(mask)
    if hole.ndim == 3 and hole.shape[2] == 1:
        hole = hole[:, :, 0]
    if filled.shape != (*size, 3) or hole.shape != size or (weight is not None and weight.shape != size):
        raise ValueError(f"compose: expected fill {(*size, 3)} and mask {size} for {image.path}, "
                         f"got {filled.shape} and {hole.shape}")
    hole = hole > 0.5
    if weight is not None:
        share = np.where(hole, 1.0, np.asarray(weight, np.float64))
        hole = share > 0
        share = share[hole][:, None]
    fill = filled[hole].astype(np.float64)
    if not np.isfinite(fill).all():
        raise ValueError("compose: the fill contains NaN or infinite values")
    peak = _PEAK[original.dtype]
    fill = _luma(fill)[:, None] if original.ndim == 2 else fill[:, ::-1]
    fill = fill * (peak / 255)
    result = original.copy()
    target = result[:, :, None] if result.ndim == 2 else result
    if weight is not None:
        fill = share * fill + (1 - share) * target[hole, :fill.shape[1]]
    target[hole, :fill.shape[1]] = np.clip(np.rint(fill), 0, peak).astype(original.dtype)
    return result


def write_image(path, array, overwrite=False):
    """Writes an image atomically, choosing the format from the file extension.

    The image is encoded in memory, written to a temporary file next to `path` and
    renamed over it, so `path` is either untouched or complete. Missing parent
    directories are created.

    Args:
        path: the output file (str or path-like); its extension must be in
            `IMAGE_EXTENSIONS`.
        array: uint8 or uint16 [H, W], [H, W, 1], [H, W, 3] (BGR) or [H, W, 4] (BGRA),
            e.g. the result of `compose`.
        overwrite: replace `path` if it exists.

    Raises:
        ImageError: unsupported extension, 16-bit data for a format that stores only
            8 bits, `path` exists and not `overwrite`, or the file cannot be written.
        ValueError: `array` has an unsupported dtype or shape.
    """
    path = os.fspath(path)
    name = _show(path)
    array = np.asarray(array)
    if array.dtype not in _PEAK or array.ndim not in (2, 3) or _channels(array) not in (1, 3, 4):
        raise ValueError(f"write_image: cannot write a {array.dtype} array of shape {array.shape}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ImageError(f"{name}: unsupported output extension '{ext or '(none)'}'; "
                         f"use one of {', '.join(IMAGE_EXTENSIONS)}")
    if array.dtype == np.uint16 and ext not in EXTENSIONS_16BIT:
        raise ImageError(f"{name}: {ext} cannot store 16-bit images; "
                         f"use .png or .tif to keep 16 bits per channel")
    if os.path.isdir(path):
        raise ImageError(f"{name}: is a directory, expected an output file name")
    if os.path.lexists(path) and not overwrite:
        raise ImageError(f"{name}: file exists; pass {{parameter}} to replace it", parameter="overwrite")
    try:
        ok, encoded = cv2.imencode(ext, array)
    except cv2.error:
        ok = False
    if not ok:
        raise ImageError(f"{name}: OpenCV cannot encode a {array.dtype} image of shape "
                         f"{array.shape} as {ext}")
    try:
        files.write_bytes(path, encoded.tobytes(), overwrite)
    except FileExistsError:  # it appeared since the check above
        raise ImageError(f"{name}: file exists; pass {{parameter}} to replace it", parameter="overwrite") from None
    except OSError as err:
        raise ImageError(f"{name}: cannot write the file ({err.strerror or err})") from None


def pad_to_multiple(array, multiple=8, mode="symmetric"):
    """Pads an image at the bottom and right so height and width are multiples of `multiple`.

    Args:
        array: [H, W] or [H, W, C] array with H, W >= 1.
        multiple: the positive integer both sides must become multiples of.
        mode: "symmetric" mirrors the border pixels (edge pixel repeated, numpy's
            'symmetric'; works for pads larger than the image too); "constant" pads
            with zeros (use it for masks).

    Returns:
        (padded array, (H, W) of the input) -- pass the size to `crop_to` to undo.

    Raises:
        ValueError: empty array, bad `multiple` or unknown `mode`.
    """
    array = np.asarray(array)
    if mode not in ("symmetric", "constant"):
        raise ValueError(f"pad_to_multiple: mode must be 'symmetric' or 'constant', got {mode!r}")
    if not isinstance(multiple, (int, np.integer)) or multiple < 1:
        raise ValueError(f"pad_to_multiple: multiple must be a positive integer, got {multiple!r}")
    if array.ndim < 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"pad_to_multiple: expected a non-empty [H, W(, C)] array, "
                         f"got {array.shape}")
    height, width = array.shape[:2]
    pads = [(0, -height % multiple), (0, -width % multiple)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pads, mode=mode), (height, width)


def crop_to(array, size):
    """Crops the bottom and right of a padded array back to `size`.

    Args:
        array: [H', W'] or [H', W', C] array at least `size` large.
        size: (H, W) as returned by `pad_to_multiple`.

    Returns:
        `array[:H, :W]` (a view).

    Raises:
        ValueError: `array` is smaller than `size`.
    """
    height, width = size
    if array.shape[0] < height or array.shape[1] < width:
        raise ValueError(f"crop_to: cannot crop {array.shape} to {(height, width)}")
    return array[:height, :width]


def _is_image_name(name):
    """Whether a file name has one of IMAGE_EXTENSIONS (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def image_files(directory, extensions=IMAGE_EXTENSIONS, follow_links=False):
    """The files below an existing directory whose lower-case extension is in `extensions`.

    Hidden files and directories (names starting with '.') are skipped. With `follow_links`,
    symbolic links to directories are followed, each real directory once.

    Returns:
        Sorted paths relative to `directory` (os.sep separated; sorted by their parts).
    """
    directory = os.fspath(directory)
    found, seen = [], set()
    for root, dirs, names in os.walk(directory, followlinks=follow_links):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        found += [os.path.relpath(os.path.join(root, name), directory) for name in names
                  if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions]
    return sorted(found, key=lambda rel: rel.split(os.sep))


def list_images(directory):
    """Lists the image files below a directory.

    Hidden files and directories (names starting with '.') are skipped, and symbolic
    links to directories are not followed.

    Args:
        directory: the folder to search recursively.

    Returns:
        Sorted paths relative to `directory` (os.sep separated) of the files whose
        lower-case extension is in `IMAGE_EXTENSIONS`.

    Raises:
        ImageError: `directory` does not exist or is not a directory.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        problem = "not a directory" if os.path.exists(directory) else "no such directory"
        raise ImageError(f"{_show(directory)}: {problem}; expected a folder of images")
    return image_files(directory)


def find_mask_for(image_relpath, mask_dir, required=True, what="mask"):
    """Finds the mask (or sketch) of an image in a folder tree that mirrors the image folder.

    Args:
        image_relpath: the image's path relative to its folder, e.g. "a/b/x.jpg".
        mask_dir: the mask folder.
        required: whether a missing file is an error; if not, None is returned.
        what: how messages call the file ("mask", "sketch").

    Returns:
        The path (joined with `mask_dir`) of the one file with the same relative
        directory and stem and any extension in `IMAGE_EXTENSIONS`, e.g.
        mask_dir/a/b/x.png; None if there is none and it is not `required`.

    Raises:
        ImageError: no such file (when `required`), or several with different extensions.
    """
    stem_path = os.path.join(os.fspath(mask_dir), os.path.splitext(os.fspath(image_relpath))[0])
    folder, stem = os.path.split(stem_path)
    try:
        names = os.listdir(folder or ".")
    except OSError:
        names = []
    matches = sorted(os.path.join(folder, name) for name in names
                     if os.path.splitext(name)[0] == stem and _is_image_name(name)
                     and os.path.isfile(os.path.join(folder, name)))
    if not matches and not required:
        return None
    if not matches:
        raise ImageError(f"{_show(image_relpath)}: no {what} found; expected {_show(stem_path)}.png "
                         f"(or another of {', '.join(IMAGE_EXTENSIONS)})")
    if len(matches) > 1:
        raise ImageError(f"{_show(image_relpath)}: several {what} files match: "
                         f"{', '.join(_show(match) for match in matches)}; keep only one")
    return matches[0]
