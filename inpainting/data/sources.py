"""Where training images come from, and how they are read: pure `tf.data` streams of files or records.

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

Shards (many workers)
    A `Shard` (index k of N workers) is one worker's part of a training stream; it
    is cut before anything is read. Files: every worker lists the same files and
    draws the same epoch orders from the seed; worker k takes the positions p with
    p % N == k (so a file is read by one worker per epoch, and with fewer files
    than workers each file still goes to one worker at a time). Its own items are
    numbered 0, 1, ... (`start` counts them) while the elements keep the global
    position, from which the crop and flip are drawn. TFDS: worker k takes
    the record files (TFRecord shards) k, k + N, ... of the split, as TFDS's own
    `InputContext` sharding does, or, with fewer files than workers, its even
    subsplit of the records (`tfds.even_splits`); it reads them as one process
    reads a split, with its own positions and a seed that folds in (N, k). N = 1
    is the unsharded stream. Validation streams are never sharded.

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

Every step is a TensorFlow op inside `tf.data` (no Python per element), decoded in parallel
with deterministic order, and every random draw is stateless.
"""

import dataclasses
import math
import os
import re
import sys

import tensorflow as tf

from inpainting import imageio
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
RECORD_WINDOW = 4
SHARD = 6
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The last position of an endless stream.
ENDLESS = tf.int64.max


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


@dataclasses.dataclass(frozen=True)
class Shard:
    """One worker's part of a training stream: worker `index` of `count` (see the module docstring).

    Attributes:
        index: this worker, 0 <= index < count.
        count: the number of workers; 1 is the whole stream.
    """

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if not 0 <= self.index < self.count:
            raise DataError(f"shard {self.index} of {self.count}: expected 0 <= index < count")

    @property
    def whole(self):
        return self.count == 1

    def key(self, seed):
        """The seed of this shard's own draws: `seed` itself for the whole stream."""
        return seed if self.whole else stream_seed(seed, SHARD, self.count, self.index)


WHOLE = Shard()


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


def _tfds_records(source, training, data_dir, download, shard=WHOLE):
    """Looks up a TFDS split (`shard`'s part of it); prepares it only when `download`."""
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
    if not shard.whole:
        # By file, as TFDS shards for an `InputContext`; by record where there are fewer files.
        if len(instructions) >= shard.count:
            instructions = instructions[shard.index::shard.count]
        else:
            part = tfds.even_splits(split, shard.count)[shard.index]
            instructions = [inst for inst in info.splits[part].file_instructions if inst.take > 0]
            if not instructions:
                raise DataError(f"{label}: split {split!r} has fewer examples than the "
                                f"{shard.count} workers; choose a larger split")
    return _Records(files=tuple(os.fspath(inst.filename) for inst in instructions),
                    skips=tuple(int(inst.skip) for inst in instructions),
                    takes=tuple(int(inst.take) for inst in instructions),
                    key=images[0], label=f"tfds:{source.name}:{split}")


def _resolve(source, training, data_dir=None, download=False, shard=WHOLE):
    """The files (a list of paths) or TFDS records (`_Records`, `shard`'s) a source stands for."""
    source = parse_dataset(source)
    if source.kind == "flist":
        return read_file_list(source.path)
    if source.kind == "folder":
        return list_image_files(source.path)
    if source.kind == "samples":
        return sample_paths(held_out=not training)
    return _tfds_records(source, training, data_dir, download, shard)


@dataclasses.dataclass(frozen=True)
class SourceItems:
    """The stream of a source's items, and how to read one.

    Attributes:
        items: `file_items` or the records' items from position `start` on.
        label: the source as the user gave it, for messages.
        size: the number of files or records.
        encoded: item value -> the encoded image (bytes).
        describe: item -> a description for messages (None: the value is a file path).
        key: the seed the random draws of a position (crop, flip) are taken from.
        first: the position of the first item.
        span: positions without a readable image that end a training stream (one epoch's
            worth of this stream's own items).
    """

    items: tf.data.Dataset
    label: str
    size: int
    encoded: object
    describe: object
    key: object = 0
    first: int = 0
    span: int = 0


def source_items(source, *, seed, start=0, training=True, data_dir=None, download=False,
                 shard=WHOLE):
    """The items of `source` (a `parse_dataset` spec or a `DataSource`) from item `start` on:
    `shard`'s part of a training stream (validation: the whole)."""
    shard = shard if training else WHOLE
    resolved = _resolve(source, training, data_dir, download, shard)
    if isinstance(resolved, _Records):
        key = resolved.key

        def encoded(record):
            feature = {key: tf.io.FixedLenFeature([], tf.string)}
            return tf.io.parse_single_example(record, feature)[key]

        def describe(item):
            return tf.strings.format("record at position {}", item["position"])

        own_seed = shard.key(seed)
        return SourceItems(_record_items(resolved, seed=own_seed, start=start, training=training),
                           resolved.label, resolved.size, encoded, describe, key=own_seed, first=start,
                           span=resolved.size)
    size = len(resolved)
    return SourceItems(file_items(resolved, seed=seed, start=start, training=training, shard=shard),
                       str(parse_dataset(source)), size, tf.io.read_file, None, key=seed,
                       first=start * shard.count + shard.index, span=size * shard.count)


def num_examples(source, *, training=True, data_dir=None, download=False):
    """Number of files (or TFDS records) in one epoch of a source, unreadable ones included.

    Raises:
        DataError: the source cannot be found or used (see `image_dataset`).
    """
    resolved = _resolve(source, training, data_dir, download)
    return resolved.size if isinstance(resolved, _Records) else len(resolved)


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


def file_items(paths, *, seed, start=0, training=True, shard=WHOLE):
    """The stream of file positions and paths, before anything is read.

    Training: endless; epoch e holds positions e * n .. e * n + n - 1 with the files
    in a permutation drawn from (seed, e), followed by one end-of-epoch marker (an
    item with `sentinel` True at position (e + 1) * n); of them `shard` k of N keeps
    the positions p with p % N == k, its item i at position i * N + k. Otherwise:
    positions 0 .. n - 1 in the given order and an end marker at position n. Items
    before item `start` are dropped without reading anything.

    Returns:
        `tf.data.Dataset` of {"position": int64, "source": path string, "sentinel": bool}.
    """
    size = len(paths)
    # As bytes: a file name need not be valid UTF-8 (os.listdir gives such names as str with
    # surrogate escapes, which a string tensor cannot take).
    table = tf.constant([os.fsencode(path) for path in paths], tf.string)
    if not training:
        files = tf.data.Dataset.range(start, size).map(
            lambda position: _item(position, tf.gather(table, position)))
        return files.concatenate(_end_marker(size))
    stride = shard.count
    first_epoch, offset = divmod(int(start) * stride + shard.index, size)

    def epoch_items(epoch):
        order = _permutation(size, stream_seed(seed, FILE_ORDER, epoch))
        base = epoch * size
        # This shard's first index in the epoch, and its items before `offset` in the first one.
        first = (shard.index - base) % stride
        before = tf.maximum((offset - first + stride - 1) // stride, 0)
        files = tf.data.Dataset.from_tensor_slices(order[first::stride]).enumerate()
        files = files.skip(tf.where(epoch == first_epoch, before, 0))
        files = files.map(lambda index, file: _item(base + first + index * stride,
                                                    tf.gather(table, file)))
        return files.concatenate(_end_marker(base + size))

    return tf.data.Dataset.range(first_epoch, ENDLESS).flat_map(epoch_items)


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
        order = _permutation(shards, stream_seed(seed, FILE_ORDER, epoch))
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
                key = stream_seed(seed, RECORD_WINDOW, epoch, block, window)
                return tf.gather(batch, _permutation(tf.shape(batch)[0], key))

            stream = stream.batch(TFDS_WINDOW).enumerate().map(mix).unbatch()
            return stream.skip(tf.where(block == first_block, within, 0))

        stream = tf.data.Dataset.range(first_block, blocks).flat_map(block_records)
        stream = stream.enumerate(epoch * size + skip)
        stream = stream.map(lambda position, record: _item(position, record))
        return stream.concatenate(_end_marker((epoch + 1) * size))

    return tf.data.Dataset.range(first_epoch, ENDLESS).flat_map(epoch_items)


def read_items(items, load, *, empty, label, num_items, start=0, skipped_before=0,
               describe=None, remembered=16, span=None):
    """Loads every item of a position stream, skipping and counting the ones that fail.

    Items are loaded with `load(source, position)` by a parallel map in
    deterministic order; an item whose loading raises a TensorFlow error is dropped
    (`ignore_errors`, which also logs the error). Every item carries its serial
    number and the names (`describe(item)`, by default its source) of the items just
    before it, so the next element that gets through knows how many were dropped
    before it, adds them to the cumulative count and prints a warning naming them to
    stderr (up to `remembered` names per gap). At an end-of-epoch marker, when no
    item of the whole epoch (one that started at or after `start`) loaded, an error
    is printed and the stream ends; a shard's stream ends when none of the last
    `span` positions (one epoch's worth of its own items) loaded.

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
        span: positions without a loaded item that end the stream (default `num_items`).

    Returns:
        `tf.data.Dataset` of {"image": like `empty`, "position": int64, "skipped": int64}.
    """
    describe = describe or (lambda item: item["source"])
    empty = tf.convert_to_tensor(empty)
    span = span or num_items
    what = (f"a whole epoch ({num_items} files)" if span == num_items else
            f"{span // num_items} epochs (this worker's share of {num_items} files each)")

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
        stop = element["sentinel"] & (last_loaded < element["position"] - span)
        warn = tf.cond(dropped > 0, lambda: _warn_dropped(label, element["before"], dropped),
                       lambda: tf.constant(False))
        halt = tf.cond(stop, lambda: _print(f"error: {label}: no image of {what} could be "
                                            f"read; the stream ends"), lambda: tf.constant(False))
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


def stream_seed(seed, *parts):
    """A stateless RNG key derived from a seed and integer indices.

    Args:
        seed: a Python int or int scalar tensor (a user seed), or an int [2] tensor
            that already is a key.
        *parts: integer scalars (Python ints or tensors) folded in one after the
            other, e.g. a stream tag then an element index.

    Returns:
        int64 [2] tensor for the `seed` argument of `tf.random.stateless_*` ops.
    """
    key = tf.convert_to_tensor(seed)
    if key.shape.rank == 0:
        key = tf.stack([tf.constant(0, tf.int64), tf.cast(key, tf.int64)])
    key = tf.cast(key, tf.int64)
    for part in parts:
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(part, tf.int64))
    return key
