"""Training and validation data: image sources read into pure `tf.data` pipelines.

Sources (`parse_dataset`)
    flist:PATH                 a text file with one image path per line (the original
                               DeepFill format); blank lines are ignored and relative
                               paths are relative to the file's folder.
    folder:DIR                 every jpg, jpeg, png, webp and bmp file under DIR
                               (recursive, any case of extension, sorted).
    tfds:NAME[/CONFIG][:SPLIT] a TensorFlow Datasets dataset prepared in `data_dir`
                               (downloaded only when the caller allows it), read
                               from its TFRecord shards. Without SPLIT, training
                               reads "train" and validation reads "validation", else
                               "test". SPLIT may use TFDS slicing, e.g. train[:95%].
    samples                    the photos shipped inside the scikit-image package;
                               training never sees `SAMPLES_HELD_OUT`, validation
                               sees only them.

Positions
    A stream is a sequence of positions, one per file (or TFDS record). A training
    stream is endless: epoch e is position e * n .. e * n + n - 1, every file once,
    in an order drawn from (seed, e). The random crop and flip of position p are
    drawn from (seed, p). So the stream is a pure function of (seed, position) and
    `start_example=p` reproduces the stream from position p on, skipping the
    earlier positions before anything is read or decoded.

Unreadable files
    A file (or record) that is missing, empty, not an image or corrupt is skipped:
    its decoding error is logged by `tf.data` and a warning naming it is printed to
    stderr. Every element carries `skipped`, the cumulative number of files skipped
    in this stream before it (plus the `skipped_before` the stream was started
    with); files skipped after the last element of a finite stream are named but
    no element counts them. Skipped files make positions run ahead of element
    indices: element i (counted from the stream's start) with count s came from
    position start + i + s - skipped_before. To resume exactly after consuming i
    elements, the last with count s, start at position start + i + s -
    skipped_before with `skipped_before=s`; `training_batches` does it when given
    `skipped_before`. Without it the resumed stream starts s files early: it is
    the right stream, shifted by the number of files skipped so far.
    When a whole epoch yields no image (every file unreadable) an error is printed
    and the training stream ends (after at most two epochs of attempts when it was
    started mid-epoch): a trainer sees its endless stream stop (`StopIteration`, or
    `tf.errors.OutOfRangeError` / `get_next_as_optional` without a value inside a
    `tf.function`), and must treat that as a fatal data error.

Holes and edges
    `training_batches` gives every batch one hole: a trimmed DeepFill v1 box, a
    mask from a folder, or (`free_form`, DeepFill v2) the box joined with brush
    strokes. With `edges` a batch also carries the Canny edge map of its images
    (`canny_edges`, OpenCV's Canny(gray, 100, 200) in TensorFlow ops), the input
    of guided (sketch) models.

Every step is a TensorFlow op inside `tf.data` (no Python per element), decoded
in parallel with deterministic order, and every random draw is stateless.
"""

import dataclasses
import math
import os
import re
import sys

import tensorflow as tf

from inpainting import imageio
from inpainting.config import PREPROCESSING
from inpainting.data import masks
from inpainting.errors import DataError

DATA_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
SPEC_FORMS = "flist:PATH, folder:DIR, tfds:NAME[/CONFIG][:SPLIT] or samples"

# The real photographs among the files shipped in scikit-image's data folder (the
# others are charts, text, binary shapes or synthetic images).
SAMPLES_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png",
    "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
    "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg",
)
SAMPLES_HELD_OUT = ("chelsea.png", "coffee.png")

# TFDS training reads blocks of this many shards interleaved, and permutes the records
# in windows of this many; both bound what a resume has to re-read.
TFDS_BLOCK_SHARDS = 16
TFDS_WINDOW = 256

# Parts folded into the user seed so that the streams drawn from one seed are independent.
FILE_ORDER = 1
AUGMENT = 2
BATCH = 3
RECORD_WINDOW = 4
# Folded into seed 0 for the fixed stroke mask of validation (the same for every run).
VALIDATION_STROKES = 5

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ENDLESS = tf.int64.max


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where images come from; see `parse_dataset` for the text forms.

    Attributes:
        kind: "flist", "folder", "tfds" or "samples".
        path: the file list or folder (flist, folder).
        name: TFDS name, optionally NAME/CONFIG (tfds).
        split: TFDS split, "" for the default (tfds).
    """

    kind: str
    path: str = ""
    name: str = ""
    split: str = ""

    def __str__(self):
        if self.kind in ("flist", "folder"):
            return f"{self.kind}:{self.path}"
        if self.kind == "tfds":
            return f"tfds:{self.name}" + (f":{self.split}" if self.split else "")
        return self.kind


def parse_dataset(spec):
    """Parses a dataset description (a `DataSource` is returned unchanged).

    Args:
        spec: "flist:PATH", "folder:DIR", "tfds:NAME[/CONFIG][:SPLIT]" or "samples".

    Returns:
        A `DataSource`. Only the form is checked here; files are looked at when a
        stream is made.

    Raises:
        DataError: any other text.
    """
    if isinstance(spec, DataSource):
        return spec
    text = str(spec)
    kind, _, rest = text.partition(":")
    if text == "samples":
        return DataSource("samples")
    if kind in ("flist", "folder") and rest:
        return DataSource(kind, path=rest)
    if kind == "tfds":
        name, _, split = rest.partition(":")
        if re.fullmatch(r"[a-z0-9_]+(/[A-Za-z0-9_.+-]+)?", name):
            return DataSource("tfds", name=name, split=split)
        raise DataError(f"dataset {text!r}: expected tfds:NAME[/CONFIG][:SPLIT] with a "
                        f"lower-case TFDS name, e.g. tfds:dtd or tfds:celeb_a_hq/256:train")
    raise DataError(f"dataset {text!r}: unknown form; use one of {SPEC_FORMS}")


# ------------------------------------------------------------------------- file lists

def list_image_files(directory, what="image"):
    """Lists the image files below a folder (recursive, hidden names skipped).

    Args:
        directory: the folder.
        what: the word used in error messages ("image", "mask").

    Returns:
        Sorted list of paths (joined with `directory`) whose lower-case extension is
        in `DATA_EXTENSIONS`. Symbolic links to folders are followed once.

    Raises:
        DataError: the folder is missing or holds no such file.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        problem = "not a directory" if os.path.exists(directory) else "no such directory"
        raise DataError(f"{directory}: {problem}; expected a folder of {what} files")
    found = imageio.image_files(directory, DATA_EXTENSIONS, follow_links=True)
    if not found:
        raise DataError(f"{directory}: no {what} files ({', '.join(DATA_EXTENSIONS)}) in this "
                        f"folder or below; check the path")
    return [os.path.join(directory, rel) for rel in found]


def read_file_list(path):
    """The image paths of a DeepFill file list (one path per line, blank lines ignored).

    Relative paths are taken relative to the list's folder. The files themselves
    are not checked here: unreadable ones are skipped when the stream reads them.

    Raises:
        DataError: the list is missing, unreadable or holds no path.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file list; expected a text file with one image path "
                        f"per line (flist:PATH)")
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the file list ({err}); expected a UTF-8 text "
                        f"file with one image path per line") from None
    folder = os.path.dirname(os.path.abspath(path))
    paths = [os.path.join(folder, line.strip()) for line in lines if line.strip()]
    if not paths:
        raise DataError(f"{path}: the file list is empty; expected one image path per line")
    return paths


def _samples_folder():
    import skimage.data

    return os.path.dirname(skimage.data.__file__)


def sample_paths(held_out=False):
    """Paths of the scikit-image photos used by the `samples` source.

    Args:
        held_out: False for the training photos, True for `SAMPLES_HELD_OUT`.

    Returns:
        Sorted paths of the files that exist in the installed scikit-image.

    Raises:
        DataError: scikit-image is missing or ships none of these photos.
    """
    try:
        folder = _samples_folder()
    except ImportError:
        raise DataError("samples: scikit-image is not installed; pip install scikit-image, "
                        "or use another dataset") from None
    names = [name for name in SAMPLES_PHOTOS if (name in SAMPLES_HELD_OUT) == held_out]
    paths = [os.path.join(folder, name) for name in sorted(names)
             if os.path.isfile(os.path.join(folder, name))]
    if not paths:
        raise DataError(f"samples: none of {', '.join(names)} is in {folder}; reinstall "
                        f"scikit-image or use another dataset")
    return paths


def held_out_sample_paths():
    """Paths of the held-out `samples` photos, for validation and demos."""
    return sample_paths(held_out=True)


# ------------------------------------------------------------------------------ TFDS

@dataclasses.dataclass(frozen=True)
class _Records:
    """The TFRecord shards of one TFDS split and the key of its encoded image."""

    files: tuple
    skips: tuple
    takes: tuple
    key: str
    label: str

    @property
    def size(self):
        return sum(self.takes)


def _one_line(text):
    return " ".join(str(text).split())


def _tfds_records(source, training, data_dir, download):
    """Looks up a TFDS split; prepares it only when `download`."""
    label = str(source)
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DataError(f"{label}: tensorflow-datasets cannot be imported ({err}); "
                        f"pip install tensorflow-datasets importlib_resources") from None
    try:
        builder = tfds.builder(source.name, data_dir=data_dir)
    except (ValueError, KeyError, AttributeError) as err:
        first = _one_line(str(err).strip().splitlines()[0] if str(err).strip() else err)
        raise DataError(f"{label}: unknown TFDS dataset or config ({first}); see the TFDS "
                        f"catalog for names") from None
    root = os.fspath(builder.data_dir_root)
    if not builder.is_prepared():
        manual = builder.MANUAL_DOWNLOAD_INSTRUCTIONS
        manual_dir = os.path.join(root, "downloads", "manual")
        how = (f"it must be downloaded by hand: {_one_line(manual)} Put the files in "
               f"{manual_dir}, then run `tfds build {source.name} --data_dir={root} "
               f"--manual_dir={manual_dir}`" if manual else
               f"run `tfds build {source.name} --data_dir={root}` (downloads it) or allow "
               f"this program to download it")
        if not download:
            raise DataError(f"{label}: not prepared in {root}; {how}")
        if manual and not os.path.isdir(manual_dir):
            raise DataError(f"{label}: cannot be downloaded automatically; {how}")
        try:
            builder.download_and_prepare()
        except Exception as err:  # noqa: BLE001 - TFDS raises many kinds; each becomes one line
            raise DataError(f"{label}: preparing it in {root} failed ({_one_line(err)[:300]}); "
                            f"{how}") from None
    info = builder.info
    splits = sorted(info.splits.keys())
    split = source.split
    if not split:
        choices = ["train"] if training else ["validation", "test"]
        split = next((name for name in choices if name in splits), None)
        if split is None:
            raise DataError(f"{label}: has no {' or '.join(choices)} split (splits: "
                            f"{', '.join(splits)}); name one, e.g. tfds:{source.name}:"
                            f"{splits[0] if splits else 'train'}")
    try:
        instructions = info.splits[split].file_instructions
    except (KeyError, ValueError, AssertionError) as err:
        raise DataError(f"{label}: bad split {split!r} ({_one_line(err)[:200]}); splits: "
                        f"{', '.join(splits)}") from None
    file_format = getattr(info.file_format, "value", str(info.file_format))
    if file_format != "tfrecord":
        raise DataError(f"{label}: prepared as {file_format}; only tfrecord is read here, "
                        f"prepare it again with `tfds build --file_format=tfrecord`")
    images = [key for key, feature in info.features.items()
              if isinstance(feature, tfds.features.Image)]
    serialized = info.features.get_serialized_info()
    images = sorted(images, key=lambda key: key != "image")
    encoded = images and serialized[images[0]]
    if not encoded or tf.as_dtype(encoded.np_dtype) != tf.string or encoded.shape:
        raise DataError(f"{label}: has no top-level encoded Image feature (features: "
                        f"{', '.join(info.features.keys())}); use a dataset of images")
    instructions = [inst for inst in instructions if inst.take > 0]
    if not instructions:
        raise DataError(f"{label}: split {split!r} holds no examples; choose another split")
    return _Records(files=tuple(os.fspath(inst.filename) for inst in instructions),
                    skips=tuple(int(inst.skip) for inst in instructions),
                    takes=tuple(int(inst.take) for inst in instructions),
                    key=images[0], label=f"tfds:{source.name}:{split}")


def _resolve(source, training, data_dir=None, download=False):
    """The files (a list of paths) or TFDS records (`_Records`) a source stands for."""
    source = parse_dataset(source)
    if source.kind == "flist":
        return read_file_list(source.path)
    if source.kind == "folder":
        return list_image_files(source.path)
    if source.kind == "samples":
        return sample_paths(held_out=not training)
    return _tfds_records(source, training, data_dir, download)


def num_examples(source, *, training=True, data_dir=None, download=False):
    """Number of files (or TFDS records) in one epoch of a source, unreadable ones included.

    Raises:
        DataError: the source cannot be found or used (see `image_dataset`).
    """
    resolved = _resolve(source, training, data_dir, download)
    return resolved.size if isinstance(resolved, _Records) else len(resolved)


# ------------------------------------------------------------------------------ decoding

def _decode_by_format(encoded, channels, other):
    """PNG (rounded from 16 bits) and JPEG (accurate DCT) with `channels`; `other()` otherwise."""

    def png():
        wide = tf.cast(tf.io.decode_png(encoded, channels=channels, dtype=tf.uint16), tf.int32)
        return tf.cast((wide + 128) // 257, tf.uint8)

    def jpeg():
        # The accurate integer DCT, as OpenCV (and so `inpainting.imageio`) decodes.
        return tf.io.decode_jpeg(encoded, channels=channels, dct_method="INTEGER_ACCURATE")

    is_png = tf.equal(tf.strings.substr(encoded, 0, 8), _PNG_SIGNATURE)
    return tf.cond(is_png, png, lambda: tf.cond(tf.io.is_jpeg(encoded), jpeg, other))


def decode_8bit(encoded):
    """Decodes png, jpeg, bmp, webp (and gif, first frame) bytes to 8-bit pixels.

    16-bit PNGs are scaled with round(v / 257) (TensorFlow's own uint8 decoding
    truncates instead); JPEGs use the accurate integer DCT, like OpenCV.

    Returns:
        uint8 [h, w, c] with the stored channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)

    def other():
        return tf.io.decode_image(encoded, channels=0, dtype=tf.uint8, expand_animations=False)

    pixels = _decode_by_format(encoded, 0, other)
    pixels = tf.ensure_shape(pixels, [None, None, None])
    with tf.control_dependencies([tf.debugging.assert_positive(tf.size(pixels))]):
        return tf.identity(pixels)


def decode_rgb(encoded):
    """Decodes image bytes to uint8 [h, w, 3] RGB: gray is replicated, alpha dropped.

    Pixel values are those of `decode_8bit`; PNG and JPEG are converted to RGB by
    their decoders, the other formats after decoding.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)

    def other():
        pixels = decode_8bit(encoded)
        return tf.cond(tf.shape(pixels)[2] < 3, lambda: tf.tile(pixels[:, :, :1], [1, 1, 3]),
                       lambda: pixels[:, :, :3])

    rgb = tf.ensure_shape(_decode_by_format(encoded, 3, other), [None, None, 3])
    with tf.control_dependencies([tf.debugging.assert_positive(tf.size(rgb))]):
        return tf.identity(rgb)


def _resize(image, size):
    """Bilinear, antialiased resize of uint8 pixels, rounded back to uint8."""
    resized = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


def _cover(image, size):
    """Scales an image smaller than `size` on a side up to cover it, keeping the aspect ratio."""
    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    target = tf.constant(size, tf.float64)
    scale = tf.reduce_max(target / shape)

    def scale_up():
        new = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), tf.constant(size))
        return _resize(image, new)

    return tf.cond(scale > 1.0, scale_up, lambda: image)


def preprocess_image(image, image_size, *, preprocess="crop", key=None, flip=False):
    """Crops or resizes a decoded image to `image_size`, with optional random choices.

    Args:
        image: uint8 [h, w, 3].
        image_size: (H, W).
        preprocess: "crop" (after scaling up an image that is smaller on a side) or
            "resize" (bilinear, antialiased, aspect ratio not kept).
        key: stateless RNG key for a random crop offset (uniform) and flip; None for
            the centre crop and no flip.
        flip: whether to flip horizontally with probability 1/2 (needs `key`).

    Returns:
        uint8 [H, W, 3].
    """
    height, width = image_size
    if preprocess == "resize":
        image = _resize(image, [height, width])
    else:
        image = _cover(image, (height, width))
        spare = tf.shape(image)[:2] - tf.constant([height, width])
        if key is None:
            offset = spare // 2
        else:
            offset = tf.stack([
                tf.random.stateless_uniform([], masks.stream_seed(key, 0, axis), minval=0,
                                            maxval=spare[axis] + 1, dtype=tf.int32)
                for axis in (0, 1)])
        image = tf.slice(image, tf.concat([offset, [0]], 0), [height, width, 3])
    if key is not None and flip:
        mirror = tf.random.stateless_uniform([], masks.stream_seed(key, 1)) < 0.5
        image = tf.cond(mirror, lambda: tf.reverse(image, [1]), lambda: image)
    return tf.ensure_shape(image, [height, width, 3])


# ------------------------------------------------------------------------------ edges

# OpenCV's fixed-point BT.601 weights (R, G, B) for 8-bit RGB -> gray, scaled by 2 ** 15.
_GRAY_WEIGHTS = (9798, 19235, 3735)
# tan(22.5 degrees) scaled by 2 ** 15, rounded: OpenCV's sector test in the non-maximum step.
_TAN_22 = 13573


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


# ------------------------------------------------------------------------------ streams

def _permutation(size, key):
    """A stateless random permutation of range(size) (int32)."""
    values = tf.random.stateless_uniform([size], key, minval=None, maxval=None, dtype=tf.int64)
    return tf.argsort(values, stable=True)


def _item(position, source, sentinel=False):
    return {"position": tf.cast(position, tf.int64), "source": source,
            "sentinel": tf.constant(sentinel)}


def _end_marker(position):
    """A one-item dataset marking the end of an epoch (or of a finite stream)."""
    return tf.data.Dataset.from_tensors(_item(position, tf.constant(""), sentinel=True))


def file_items(paths, *, seed, start=0, training=True):
    """The stream of file positions and paths, before anything is read.

    Training: endless; epoch e holds positions e * n .. e * n + n - 1 with the files
    in a permutation drawn from (seed, e), followed by one end-of-epoch marker (an
    item with `sentinel` True at position (e + 1) * n). Otherwise: positions
    0 .. n - 1 in the given order and an end marker at position n. Positions before
    `start` are dropped without reading anything.

    Returns:
        `tf.data.Dataset` of {"position": int64, "source": path string, "sentinel": bool}.
    """
    size = len(paths)
    table = tf.constant(list(paths), tf.string)
    if not training:
        files = tf.data.Dataset.range(start, size).map(
            lambda position: _item(position, tf.gather(table, position)))
        return files.concatenate(_end_marker(size))
    first_epoch, offset = divmod(int(start), size)

    def epoch_items(epoch):
        order = _permutation(size, masks.stream_seed(seed, FILE_ORDER, epoch))
        base = epoch * size
        files = tf.data.Dataset.from_tensor_slices(order).enumerate()
        files = files.skip(tf.where(epoch == first_epoch, tf.constant(offset, tf.int64), 0))
        files = files.map(lambda index, file: _item(base + index, tf.gather(table, file)))
        return files.concatenate(_end_marker(base + size))

    return tf.data.Dataset.range(first_epoch, _ENDLESS).flat_map(epoch_items)


def _record_items(records, *, seed, start=0, training=True):
    """Like `file_items` for TFDS records; `source` is the serialized record.

    Training epoch e: the shards in a permutation drawn from (seed, e), read in
    blocks of `TFDS_BLOCK_SHARDS` interleaved record by record, then permuted in
    windows of `TFDS_WINDOW` records drawn from (seed, e, block, window). Resuming
    skips whole blocks without reading them and re-reads (not decodes) at most one
    block.
    """
    files = tf.constant(records.files, tf.string)
    skips = tf.constant(records.skips, tf.int64)
    takes = tf.constant(records.takes, tf.int64)
    size, shards = records.size, len(records.files)

    def read(file, skip, take):
        return tf.data.TFRecordDataset(file).skip(skip).take(take)

    if not training:
        shard_table = tf.data.Dataset.from_tensor_slices((files, skips, takes))
        stream = shard_table.flat_map(read).skip(start).enumerate(start)
        stream = stream.map(lambda position, record: _item(position, record))
        return stream.concatenate(_end_marker(size))
    first_epoch, offset = divmod(int(start), size)
    blocks = math.ceil(shards / TFDS_BLOCK_SHARDS)

    def epoch_items(epoch):
        order = _permutation(shards, masks.stream_seed(seed, FILE_ORDER, epoch))
        counts = tf.pad(tf.gather(takes, order), [[0, blocks * TFDS_BLOCK_SHARDS - shards]])
        ends = tf.cumsum(tf.reduce_sum(tf.reshape(counts, [blocks, TFDS_BLOCK_SHARDS]), 1))
        skip = tf.where(epoch == first_epoch, tf.constant(offset, tf.int64), 0)
        first_block = tf.reduce_sum(tf.cast(ends <= skip, tf.int64))
        within = skip - tf.concat([tf.zeros([1], tf.int64), ends], 0)[first_block]

        def block_records(block):
            chosen = order[block * TFDS_BLOCK_SHARDS:(block + 1) * TFDS_BLOCK_SHARDS]
            shard_table = tf.data.Dataset.from_tensor_slices(
                (tf.gather(files, chosen), tf.gather(skips, chosen), tf.gather(takes, chosen)))
            stream = shard_table.interleave(read, cycle_length=TFDS_BLOCK_SHARDS, block_length=1,
                                            num_parallel_calls=tf.data.AUTOTUNE,
                                            deterministic=True)

            def mix(window, batch):
                key = masks.stream_seed(seed, RECORD_WINDOW, epoch, block, window)
                return tf.gather(batch, _permutation(tf.shape(batch)[0], key))

            stream = stream.batch(TFDS_WINDOW).enumerate().map(mix).unbatch()
            return stream.skip(tf.where(block == first_block, within, 0))

        stream = tf.data.Dataset.range(first_block, blocks).flat_map(block_records)
        stream = stream.enumerate(epoch * size + skip)
        stream = stream.map(lambda position, record: _item(position, record))
        return stream.concatenate(_end_marker((epoch + 1) * size))

    return tf.data.Dataset.range(first_epoch, _ENDLESS).flat_map(epoch_items)


def read_items(items, load, *, empty, label, num_items, start=0, skipped_before=0,
               describe=None, remembered=16):
    """Loads every item of a position stream, skipping and counting the ones that fail.

    Items are loaded with `load(source, position)` by a parallel map in
    deterministic order; an item whose loading raises a TensorFlow error is dropped
    (`ignore_errors`, which also logs the error). Every item carries its serial
    number and the names (`describe(item)`, by default its source) of the items just
    before it, so the next element that gets through knows how many were dropped
    before it, adds them to the cumulative count and prints a warning naming them to
    stderr (up to `remembered` names per gap). At an end-of-epoch marker, when no
    item of the whole epoch (one that started at or after `start`) loaded, an error
    is printed and the stream ends.

    Args:
        items: dataset of {"position", "source", "sentinel"} (see `file_items`).
        load: function (source, position) -> a tensor of the shape and dtype of `empty`.
        empty: a tensor like the ones `load` returns, used for the markers.
        label: what the stream reads, for messages.
        num_items: items per epoch.
        start: position of the first item.
        skipped_before: the count the cumulative skipped count starts from.
        describe: function item -> string tensor naming it in messages.
        remembered: how many names of preceding items each item carries.

    Returns:
        `tf.data.Dataset` of {"image": like `empty`, "position": int64, "skipped": int64}.
    """
    describe = describe or (lambda item: item["source"])
    empty = tf.convert_to_tensor(empty)

    def number(state, item):
        serial, names = state
        item = dict(item, serial=serial, before=names)
        return (serial + 1, tf.concat([names[1:], [describe(item)]], 0)), item

    def attempt(item):
        image = tf.cond(item["sentinel"], lambda: empty,
                        lambda: load(item["source"], item["position"]))
        return {key: item[key] for key in ("position", "sentinel", "serial", "before")} | {
            "image": image}

    def count(state, element):
        skipped, previous, last_loaded = state
        dropped = element["serial"] - previous - 1
        skipped += dropped
        loaded = tf.logical_not(element["sentinel"])
        last_loaded = tf.where(loaded, element["position"], last_loaded)
        # A marker at position (e + 1) * n closes epoch e; stop when nothing of it loaded.
        stop = element["sentinel"] & (last_loaded < element["position"] - num_items)
        warn = tf.cond(dropped > 0, lambda: _warn_dropped(label, element["before"], dropped),
                       lambda: tf.constant(False))
        halt = tf.cond(stop, lambda: _print(f"error: {label}: no image of a whole epoch "
                                            f"({num_items} files) could be read; the stream "
                                            f"ends"), lambda: tf.constant(False))
        with tf.control_dependencies([warn, halt]):
            out = {"image": element["image"], "position": element["position"],
                   "skipped": tf.identity(skipped), "keep": loaded, "stop": stop}
        return (skipped, element["serial"], last_loaded), out

    stream = items.scan((tf.constant(0, tf.int64), tf.fill([remembered], "")), number)
    stream = stream.map(attempt, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    stream = stream.ignore_errors(log_warning=True)
    initial = (tf.constant(skipped_before, tf.int64), tf.constant(-1, tf.int64),
               tf.constant(start - 1, tf.int64))
    stream = stream.scan(initial, count)
    stream = stream.take_while(lambda element: tf.logical_not(element["stop"]))
    stream = stream.filter(lambda element: element["keep"])
    return stream.map(lambda element: {"image": element["image"],
                                       "position": element["position"],
                                       "skipped": element["skipped"]})


def _warn_dropped(label, before, dropped):
    """Prints the names of the `dropped` items at the end of `before`."""
    shown = tf.minimum(dropped, tf.cast(tf.size(before), tf.int64))
    names = before[tf.size(before) - tf.cast(shown, tf.int32):]
    lines = tf.strings.join([f"warning: {label}: skipped an unreadable image: ", names])
    text = tf.strings.reduce_join(lines, separator="\n")
    more = dropped - shown
    text = tf.cond(more > 0, lambda: tf.strings.join(
        [text, f"\nwarning: {label}: and ", tf.strings.as_string(more), " more before them"]),
        lambda: text)
    return _print(text)


def _print(*parts):
    tf.print(*parts, output_stream=sys.stderr)
    return tf.constant(True)


def _check_size(image_size):
    height, width = masks.size_pair(image_size, "image_size")
    if min(height, width) < 1:
        raise DataError(f"image_size must be positive, got {(height, width)}")
    return height, width


def image_dataset(source, *, image_size, preprocess="crop", flip=True, seed=0, training=True,
                  data_dir=None, download=False, start_example=0, skipped_before=0):
    """A stream of images from a source, cropped or resized to one size.

    Training: endless; each epoch visits every file once in an order drawn from
    (seed, epoch); position p is randomly cropped ("crop": uniform offset, after
    scaling up an image smaller than `image_size` on a side so it covers it,
    aspect ratio kept) or resized ("resize": bilinear, antialiased), then flipped
    horizontally with probability 1/2 when `flip`, both drawn from (seed, p).
    Otherwise: one pass in the source's order, centre crop (after the same
    scaling up) or resize, no flip.

    Decoding: png (8 and 16 bit), jpeg, bmp, webp; gray is replicated to RGB and
    alpha dropped. Unreadable files are skipped and counted (see the module
    docstring); positions count them, elements do not.

    Args:
        source: a `DataSource` or its text form (see `parse_dataset`).
        image_size: (H, W) of every image.
        preprocess: "crop" or "resize".
        flip: random horizontal flips (training only).
        seed: user seed (int).
        training: endless and random, or one deterministic pass.
        data_dir: TFDS data folder (None: TFDS's default).
        download: let TFDS download and prepare a missing dataset.
        start_example: first position of the stream; the stream from there is
            exactly what the uninterrupted stream yields from that position.
            Positions count unreadable files too, so with skipped files they run
            ahead of element indices (see `skipped_before`).
        skipped_before: the value the cumulative `skipped` count starts from.

    Returns:
        `tf.data.Dataset` of {"image": uint8 [H, W, 3] RGB, "position": int64 scalar,
        "skipped": int64 scalar, the files skipped so far in this stream}.

    Raises:
        DataError: the source is malformed, missing, empty, not prepared (TFDS), or
            an argument is invalid.
    """
    height, width = _check_size(image_size)
    if preprocess not in PREPROCESSING:
        raise DataError(f"preprocess must be one of {', '.join(PREPROCESSING)}, got {preprocess!r}")
    if start_example < 0 or skipped_before < 0:
        raise DataError(f"start_example and skipped_before must be >= 0, got {start_example} "
                        f"and {skipped_before}")
    resolved = _resolve(source, training, data_dir, download)
    if isinstance(resolved, _Records):
        items = _record_items(resolved, seed=seed, start=start_example, training=training)
        label, size, key = resolved.label, resolved.size, resolved.key

        def encoded(record):
            feature = {key: tf.io.FixedLenFeature([], tf.string)}
            return tf.io.parse_single_example(record, feature)[key]

        def describe(item):
            return tf.strings.format("record at position {}", item["position"])
    else:
        items = file_items(resolved, seed=seed, start=start_example, training=training)
        label, size = str(parse_dataset(source)), len(resolved)
        encoded, describe = tf.io.read_file, None

    def load(source_value, position):
        image = decode_rgb(encoded(source_value))
        key = masks.stream_seed(seed, AUGMENT, position) if training else None
        return preprocess_image(image, (height, width), preprocess=preprocess, key=key,
                                flip=flip and training)

    return read_items(items, load, empty=tf.zeros([height, width, 3], tf.uint8), label=label,
                      num_items=size, start=start_example, skipped_before=skipped_before,
                      describe=describe).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------ batches

def _stream(images, consumed=0, skipped_before=0):
    """The image stream of `images` after `consumed` images, `skipped_before` files skipped.

    `images` is a dataset of images (skipped by reading them) or a function of
    (start_example, skipped_before) returning one (started at the right position).
    """
    if isinstance(images, tf.data.Dataset):
        return images.skip(consumed) if consumed else images
    return images(start_example=consumed + skipped_before, skipped_before=skipped_before)


def _hole_options(mask_dir, free_form, strokes):
    """The stroke configuration to use (None without free_form); refuses mask_dir with it."""
    if not free_form:
        return None
    if mask_dir is not None:
        raise DataError(f"free_form brush strokes cannot be combined with mask_dir {mask_dir}: "
                        f"the holes come either from the mask folder or from boxes and strokes; "
                        f"drop one of the two")
    return masks.StrokeConfig.of(strokes)


def training_batches(images, *, batch_size, image_size, box_size, max_delta=(32, 32),
                     margins=(0, 0), seed=0, start_batch=0, skipped_before=0, mask_dir=None,
                     free_form=False, strokes=None, edges=False):
    """Training batches: images, one hole per batch, its box and gradient-penalty weights.

    As in DeepFill v1, every batch has one box and one mask repeated along the batch
    axis, so a distribution strategy can split every component along axis 0. The box
    comes from `masks.random_bbox` and the hole from `masks.bbox_to_mask` with a
    random trim; with `free_form` (DeepFill v2) the hole is the union of that
    trimmed box and a `masks.brush_stroke_mask`, while `bbox` stays the box. With
    `mask_dir`, batch k takes element k of `masks.mask_folder_dataset` and the box
    from `masks.mask_bbox`. Batch k's box, trim, strokes and alphas depend only on
    (seed, k), and the box, trim and alphas are the same with or without
    `free_form`.

    Args:
        images: the image stream: a function called as
            images(start_example=..., skipped_before=...), e.g.
            functools.partial(image_dataset, source, image_size=..., seed=...), or a
            dataset of {"image", "skipped", ...} (resuming it reads and drops the
            start_batch * B images before; `skipped_before` is then not needed).
        batch_size: B; the last incomplete batch is dropped.
        image_size: (H, W) of the images.
        box_size: (h, w) of the local critic's box.
        max_delta: maximum total trim of the box (see `masks.bbox_to_mask`).
        margins: distance of the box from the image edges.
        seed: user seed (int).
        start_batch: index of the first batch, to resume: a function's image
            stream starts at position start_batch * B + skipped_before.
        skipped_before: the largest `skipped` of the last batch consumed before
            stopping (0 if no file was skipped): with it the resumed stream is
            exactly the uninterrupted one even when files were skipped.
        mask_dir: folder of mask images used instead of boxes.
        free_form: add DeepFill v2 brush strokes to the box hole (not with `mask_dir`).
        strokes: the strokes' `masks.StrokeConfig` (or a dict of its fields; None for
            the defaults); used only with `free_form`.
        edges: add "edge", the `canny_edges` of the images (unmasked), the input of
            guided (sketch) models.

    Returns:
        `tf.data.Dataset` of {"image": uint8 [B, H, W, 3], "mask": float32 [B, H, W, 1]
        (1 = hole), "bbox": int32 [B, 4] (top, left, height, width), "alpha_local":
        float32 [B, 1], "alpha_global": float32 [B, 1] (uniform in [0, 1)),
        "skipped": int64 [B], each example's cumulative count of skipped files}, plus
        "edge": float32 [B, H, W, 1] in {0, 1} with `edges`.

    Raises:
        DataError: a bad size or count, the box does not fit, a bad stroke
            configuration, or `free_form` together with `mask_dir`.
    """
    image_size, box_size, margins = masks.check_box(image_size, box_size, margins)
    if batch_size < 1 or start_batch < 0 or skipped_before < 0:
        raise DataError(f"batch_size must be >= 1 and start_batch, skipped_before >= 0, got "
                        f"{batch_size}, {start_batch}, {skipped_before}")
    strokes = _hole_options(mask_dir, free_form, strokes)
    stream = _stream(images, start_batch * batch_size, skipped_before)
    parts = [stream.batch(batch_size, drop_remainder=True),
             tf.data.Dataset.range(start_batch, _ENDLESS)]
    if mask_dir is not None:
        parts.append(masks.mask_folder_dataset(mask_dir, image_size, seed, start=start_batch))

    def assemble(batch, index, mask=None):
        key = masks.stream_seed(seed, BATCH, index)
        if mask is None:
            bbox = masks.random_bbox(masks.stream_seed(key, 0), image_size, box_size, margins)
            mask = masks.bbox_to_mask(bbox, image_size, max_delta, seed=masks.stream_seed(key, 1))
            if strokes is not None:
                mask = tf.maximum(mask, masks.brush_stroke_mask(
                    image_size, masks.stream_seed(key, 4), strokes))
        else:
            bbox = masks.mask_bbox(mask, box_size, image_size)
        out = {
            "image": batch["image"],
            "mask": tf.tile(mask[None], [batch_size, 1, 1, 1]),
            "bbox": tf.tile(bbox[None], [batch_size, 1]),
            "alpha_local": tf.random.stateless_uniform([batch_size, 1],
                                                       masks.stream_seed(key, 2)),
            "alpha_global": tf.random.stateless_uniform([batch_size, 1],
                                                        masks.stream_seed(key, 3)),
            "skipped": batch["skipped"],
        }
        if edges:
            out["edge"] = canny_edges(batch["image"])
        return out

    batches = tf.data.Dataset.zip(tuple(parts)).map(
        assemble, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)


def validation_batches(images, *, count, image_size, box_size, mask_dir=None, free_form=False,
                       strokes=None, edges=False):
    """One validation batch: the first `count` images with the centre box (or fixed masks).

    Args:
        images: a finite image stream (e.g. `image_dataset(..., training=False)`), or
            a function returning it when called without arguments.
        count: number of images, the batch size (fewer when the stream is shorter).
        image_size: (H, W) of the images.
        box_size: (h, w) of the box.
        mask_dir: folder of mask images: example i gets the i-th mask of
            `masks.fixed_masks` and the box from `masks.mask_bbox`.
        free_form: add one fixed stroke mask (`masks.brush_stroke_mask` with the
            key stream_seed(0, VALIDATION_STROKES), the same in every run) to the
            centre box hole of every example (not with `mask_dir`).
        strokes: the strokes' `masks.StrokeConfig` (None for the defaults).
        edges: add "edge", the `canny_edges` of the images.

    Returns:
        `tf.data.Dataset` of one batch with the layout of `training_batches`;
        without `mask_dir` every example has the untrimmed centre box as hole
        (joined with the fixed strokes with `free_form`); both alphas are 0.5.

    Raises:
        DataError: a bad size or count, a bad stroke configuration, or
            `free_form` together with `mask_dir`.
    """
    image_size = _check_size(image_size)
    if count < 1:
        raise DataError(f"validation count must be >= 1, got {count}")
    strokes = _hole_options(mask_dir, free_form, strokes)
    if mask_dir is None:
        bbox = masks.center_bbox(image_size, box_size)
        hole = masks.bbox_to_mask(bbox, image_size)
        if strokes is not None:
            hole = tf.maximum(hole, masks.brush_stroke_mask(
                image_size, masks.stream_seed(0, VALIDATION_STROKES), strokes))
        holes, boxes = hole[None], bbox[None]
    else:
        holes = masks.fixed_masks(mask_dir, image_size, count)
        boxes = tf.stack([masks.mask_bbox(hole, box_size, image_size) for hole in holes])

    def assemble(batch):
        size = tf.shape(batch["image"])[0]
        if mask_dir is None:
            mask, bbox = tf.tile(holes, [size, 1, 1, 1]), tf.tile(boxes, [size, 1])
        else:
            mask, bbox = holes[:size], boxes[:size]
        half = tf.fill([size, 1], 0.5)
        out = {"image": batch["image"], "mask": mask, "bbox": bbox, "alpha_local": half,
               "alpha_global": half, "skipped": batch["skipped"]}
        if edges:
            out["edge"] = canny_edges(batch["image"])
        return out

    stream = images if isinstance(images, tf.data.Dataset) else images()
    return stream.take(count).batch(count).map(assemble).prefetch(tf.data.AUTOTUNE)
