"""Export a generator as a SavedModel that TF Serving loads as it is.

    export_saved_model(generator, "exported/places2")   # -> exported/places2/1/

The SavedModel (tag `serve`) has two signatures:

`serving_default`
    `image_bytes` and `mask_bytes`, string [B] (PNG, JPEG, BMP or GIF; any size, each pair its
    own) -> `output_bytes`, string [B] of PNG. TF Serving's REST API takes them as
    `{"b64": ...}` and answers in base64. Images and masks are read as the command-line tools
    read them (`pipeline.decode_rgb`, `masks.holes_from_bytes`): 8-bit RGB (gray replicated, alpha
    dropped, 16-bit scaled to 8), and a mask pixel is a hole where it is white-ish: gray (or the
    luma of colour) above 127, or the alpha channel above 127 when the mask has a transparent
    part. The output PNG is RGB and equals the input outside the hole.
`inpaint`
    `image` float32 [B, H, W, 3], RGB 0..255, and `mask` float32 [B, H, W, 1], 1 = hole (values
    above 0.5) -> `inpainted` float32 [B, H, W, 3] 0..255 (the network's fill inside the hole,
    the input outside it) and `flow` float32 [B, H, W, 3], the colour-coded attention offsets
    in integer levels 0..255, each image coloured on its own.

Any height and width work: images are mirror-padded at the bottom and right to the network's grid
of 8 and cropped back inside the graph, as `inpainting.inference.inpainter` does. Both signatures refuse
images of more than `max_pixels` pixels, whose contextual attention would need too much memory,
and masks whose size differs from their image's, with an error naming the problem.

`serving_default` reads the size each file declares in its header before decoding it
(`declared_size`), so an image (or mask, or sketch) declaring more than `max_pixels` is refused
without the cost of decoding it (a 746 KB PNG can declare 16000x16000, 4 GB of pixels): PNG from
IHDR; JPEG from the first SOF0..SOF15 frame header before the scan (markers and fill bytes
walked in a loop inside the graph); GIF from the logical screen (TensorFlow decodes every
frame at that size); BMP from the info header (signed width and height, as TensorFlow reads
them); WebP from its VP8X, VP8 or VP8L header. A file of one of these formats whose header is
truncated or holds no size is refused before decoding; JPEG XL, which TensorFlow also decodes, is
refused (its size is not checked); other bytes reach the decoder, which refuses them.

Each version is written into a temporary folder next to the final one and renamed into place
when complete, so a model server watching `export_dir` never sees a half-written version; an
existing version is never replaced. Exports running at the same time into one `export_dir` each
get their own version: when another one took the chosen number first, the rename fails (it never
replaces a folder holding files) and the next free number is taken; an explicit version that
another export took first is an error.
"""

import errno
import os
import shutil
import uuid

import numpy as np
import tensorflow as tf

from inpainting import locks
from inpainting.config import DEFAULT_MAX_PIXELS
from inpainting.data import masks, pipeline
from inpainting.errors import ExportError
from inpainting.model import flow as flow_lib
from inpainting.model.generator import GRID
from inpainting.model.layers import fold_indices, upsample_nearest

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
SIGNATURES = ("serving_default", "inpaint")
# Offsets are per 8x8 block of the image (attention runs at 1/4 size with rate 2).
_FLOW_SCALE = 8


def _pad_bottom_right(x, multiple, zeros=False):
    """Pads [B, H, W, C] at the bottom and right to multiples of `multiple`.

    The padding mirrors the image (numpy's "symmetric", folding back and forth for pads larger
    than the image, as `imageio.pad_to_multiple`), or is zero with `zeros`. Gathers keep the
    channel count static, which TFLite's convolutions need.
    """
    shape = tf.shape(x)
    height, width = shape[1], shape[2]
    rows = tf.range((height + multiple - 1) // multiple * multiple)
    cols = tf.range((width + multiple - 1) // multiple * multiple)
    padded = tf.gather(tf.gather(x, fold_indices(rows, height, "symmetric"), axis=1),
                       fold_indices(cols, width, "symmetric"), axis=2)
    if zeros:
        inside = tf.logical_and(tf.expand_dims(rows < height, 1), tf.expand_dims(cols < width, 0))
        padded *= tf.expand_dims(tf.expand_dims(tf.cast(inside, x.dtype), 0), -1)
    return padded


def inpaint_graph(generator, image, mask, flow_dtype=tf.float64, sketch=None):
    """The `inpaint` signature's computation, without checks (TFLite runs it as it is).

    Args:
        generator: a built `Generator`.
        image: float32 [B, H, W, 3], RGB 0..255.
        mask: float32 [B, H, W, 1], hole where > 0.5.
        flow_dtype: float type of the flow colouring (float32 for TFLite).
        sketch: guided models: float32 [B, H, W, 1], lines where > 0.5 (the hole part counts).

    Returns:
        A dict: `inpainted` float32 [B, H, W, 3] 0..255 and `flow` float32 [B, H, W, 3] 0..255.
    """
    shape = tf.shape(image)
    height, width = shape[1], shape[2]
    hole = tf.cast(mask > 0.5, tf.float32)
    # Symmetric mirroring of the image, as `imageio.pad_to_multiple`; the padding is known content.
    padded = _pad_bottom_right(image, GRID) / 127.5 - 1.0
    inputs = [padded, _pad_bottom_right(hole, GRID, zeros=True)]
    if sketch is not None:
        lines = tf.cast(sketch > 0.5, tf.float32)
        inputs.append(_pad_bottom_right(lines, GRID, zeros=True))
    out = generator(inputs, training=False)
    filled = (out["refined"][:, :height, :width, :] + 1.0) * 127.5
    inpainted = filled * hole + image * (1.0 - hole)
    colours = flow_lib.flow_to_color(out["offsets"], dtype=flow_dtype, per_image=True)
    colours = tf.round((colours + 1.0) * 127.5)
    flow = upsample_nearest(colours, _FLOW_SCALE)[:, :height, :width, :]
    return {"inpainted": inpainted, "flow": flow}


def _check_size(height, width, max_pixels, what):
    """Assertions that the image is not empty and has at most `max_pixels` pixels."""
    pixels = tf.cast(height, tf.int64) * tf.cast(width, tf.int64)
    return [tf.debugging.assert_positive(pixels, message=f"{what}: the image is empty"),
            _check_max_pixels(pixels, max_pixels, what)]


def _check_max_pixels(pixels, max_pixels, what):
    return tf.debugging.assert_less_equal(
        pixels, tf.constant(max_pixels, tf.int64),
        message=f"{what}: the image has more pixels (height x width) than the {max_pixels} this "
                "model was exported for (export.py --max_pixels); downscale it or send a crop "
                "around the hole")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What `declared_size` found.
SIZE_READ, SIZE_UNKNOWN_FORMAT, SIZE_UNREADABLE, SIZE_REFUSED_FORMAT = 0, 1, 2, 3
# The header bytes read at fixed offsets (PNG, GIF, BMP, WebP); JPEG's frame header is searched for.
_HEAD = 32
# At most this many JPEG markers are walked before the frame header (real files have tens).
_MAX_JPEG_MARKERS = 4096
# Start Of Frame markers C0..CF, except DHT (C4), JPG (C8) and DAC (CC).
_SOF_CODES = [code for code in range(0xC0, 0xD0) if code not in (0xC4, 0xC8, 0xCC)]


def _unsigned(head, start, size, big_endian):
    """The unsigned integer of head[start:start + size] (int64 bytes)."""
    value = tf.constant(0, tf.int64)
    order = range(start, start + size) if big_endian else reversed(range(start, start + size))
    for i in order:
        value = value * 256 + head[i]
    return value


def _jpeg_frame_size(file_bytes, length):
    """(height, width, found) of the first SOF frame header of JPEG bytes, as libjpeg reads them.

    Args:
        file_bytes: int64 [length + _HEAD], the file's bytes followed by zeros.
        length: int64, the file's length.

    Walks the markers after SOI: bytes before a marker's 0xFF are skipped, as are fill 0xFF
    bytes; RSTn, TEM and SOI have no length; every other marker a 16-bit big-endian one.
    Reaching SOS, EOI, the end of the file or `_MAX_JPEG_MARKERS` markers first means no size.
    """
    end = tf.size(file_bytes, out_type=tf.int64)
    ff = tf.concat([tf.where(tf.equal(file_bytes, 0xFF))[:, 0], [end]], 0)
    other = tf.concat([tf.where(tf.not_equal(file_bytes, 0xFF))[:, 0], [end]], 0)

    def first(positions, at):  # the first position >= at, or `end`
        return positions[tf.searchsorted(positions, tf.reshape(tf.minimum(at, end), [1]))[0]]

    def byte(at):
        return tf.gather(file_bytes, tf.minimum(at, end - 1))

    def body(count, at, height, width, state):
        code_at = first(other, first(ff, at))
        code = byte(code_at)
        sof = tf.reduce_any(tf.equal(code, _SOF_CODES))
        no_length = tf.logical_or(tf.equal(code, 0x01), tf.logical_and(code >= 0xD0, code <= 0xD8))
        segment = byte(code_at + 1) * 256 + byte(code_at + 2)
        ends = tf.reduce_any(tf.equal(code, [0x00, 0xD9, 0xDA]))
        fits = code_at + 7 < length
        state = tf.where(sof & fits, 1, tf.where(
            (code_at >= length) | ends | (sof & ~fits) | (~no_length & ~sof & (segment < 2)), 2, 0))
        height = tf.where(state == 1, byte(code_at + 4) * 256 + byte(code_at + 5), height)
        width = tf.where(state == 1, byte(code_at + 6) * 256 + byte(code_at + 7), width)
        at = tf.where(no_length, code_at + 1, code_at + 1 + segment)
        return count + 1, at, height, width, state

    zero = tf.constant(0, tf.int64)
    _, _, height, width, state = tf.while_loop(
        lambda count, at, height, width, state: (state == 0) & (count < _MAX_JPEG_MARKERS), body,
        (tf.constant(0), tf.constant(2, tf.int64), zero, zero, tf.constant(0)))
    return height, width, tf.equal(state, 1)


def declared_size(encoded):
    """The height and width an image file declares in its header, read without decoding it.

    Args:
        encoded: string scalar, the bytes of a PNG, JPEG, GIF, BMP or WebP file (see the module
            docstring for what is read of each).

    Returns:
        (height, width, status): int64 scalars and int32 `status`: SIZE_READ; SIZE_UNKNOWN_FORMAT
        (none of these formats: the size is 0 x 0 and the decoder refuses the bytes);
        SIZE_UNREADABLE (a header of one of them that is truncated or holds no size); or
        SIZE_REFUSED_FORMAT (JPEG XL).
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    length = tf.cast(tf.strings.length(encoded), tf.int64)
    padded = tf.strings.join([encoded, tf.constant(b"\0" * _HEAD)])
    head = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, _HEAD), tf.uint8), tf.int64)

    def starts(offset, text):
        return tf.equal(tf.strings.substr(padded, offset, len(text)), text)

    def signed32(start):  # BMP's int32 little-endian fields, as magnitudes
        value = _unsigned(head, start, 4, big_endian=False)
        return tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value))

    vp8l_bits = _unsigned(head, 21, 4, big_endian=False)
    # (format found, header complete, height, width), in the order TensorFlow's decoders check.
    formats = [
        (starts(0, _PNG_SIGNATURE), (length >= 24) & starts(12, b"IHDR"),
         _unsigned(head, 20, 4, True), _unsigned(head, 16, 4, True)),
        (starts(0, b"GIF8"), length >= 10, _unsigned(head, 8, 2, False), _unsigned(head, 6, 2, False)),
        (starts(0, b"BM"), length >= 26, signed32(22), signed32(18)),
        (starts(0, b"RIFF") & starts(8, b"WEBPVP8X"), length >= 30,
         _unsigned(head, 27, 3, False) + 1, _unsigned(head, 24, 3, False) + 1),
        (starts(0, b"RIFF") & starts(8, b"WEBPVP8 "), (length >= 30) & starts(23, b"\x9d\x01\x2a"),
         _unsigned(head, 28, 2, False) % 16384, _unsigned(head, 26, 2, False) % 16384),
        (starts(0, b"RIFF") & starts(8, b"WEBPVP8L"), (length >= 25) & tf.equal(head[20], 0x2F),
         vp8l_bits // 16384 % 16384 + 1, vp8l_bits % 16384 + 1),
        (starts(0, b"RIFF") & starts(8, b"WEBP"), tf.constant(False), tf.constant(0, tf.int64),
         tf.constant(0, tf.int64)),  # another first chunk: no size
    ]
    height = width = tf.constant(0, tf.int64)
    status = tf.constant(SIZE_UNKNOWN_FORMAT)
    for found, complete, h, w in reversed(formats):
        height, width = (tf.where(found, tf.where(complete, value, 0), old) for value, old in ((h, height),
                                                                                                (w, width)))
        status = tf.where(found, tf.where(complete, SIZE_READ, SIZE_UNREADABLE), status)

    def jpeg():
        data_bytes = tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.int64)
        h, w, found = _jpeg_frame_size(data_bytes, length)
        return h, w, tf.where(found, SIZE_READ, SIZE_UNREADABLE)

    jxl = starts(0, b"\xff\x0a") | starts(0, b"\x00\x00\x00\x0cJXL \r\n\x87\n")
    return tf.cond(tf.io.is_jpeg(encoded), jpeg,
                   lambda: (height, width, tf.where(jxl, SIZE_REFUSED_FORMAT, status)))


def _check_declared_size(encoded, max_pixels, what, name):
    """Assertions on the header of `encoded` (see `declared_size`), to run before decoding it."""
    height, width, status = declared_size(encoded)
    return [
        tf.debugging.assert_none_equal(
            status, SIZE_UNREADABLE, message=f"{what}: {name}: the image header is truncated or holds no "
                                             "size; send a complete PNG, JPEG, BMP, GIF or WebP file"),
        tf.debugging.assert_none_equal(
            status, SIZE_REFUSED_FORMAT, message=f"{what}: {name}: JPEG XL is not accepted (its size "
                                                 "cannot be checked before decoding); send PNG, JPEG, "
                                                 "BMP, GIF or WebP"),
        # Sides of up to 2^32 - 1 (PNG) would overflow int64 when multiplied: 2^31 is over any limit.
        _check_max_pixels(tf.minimum(height, 2 ** 31) * tf.minimum(width, 2 ** 31), max_pixels, what),
    ]


def _check_mask(image_size, mask_size, what):
    return tf.debugging.assert_equal(
        image_size, mask_size,
        message=f"{what}: the mask size (second value) must equal the image size (first value)")


class GeneratorModule(tf.Module):
    """A `tf.Module` that exports a generator's weights so that every loader finds them.

    Keras 3 variables reached only through the model are saved, but TensorFlow's graph loader
    (TF Serving's) cannot find them: the module also tracks the underlying `tf.Variable`s.
    """

    def __init__(self, generator, name):
        super().__init__(name=name)
        self.generator = generator
        self.tf_variables = [v.value for v in generator.weights]


class ServingModule(GeneratorModule):
    """The generator with the two serving signatures (see the module docstring).

    A guided model's signatures have one more input: `sketch` float32 [B, H, W, 1] (lines where
    > 0.5) in `inpaint`, and `sketch_bytes` (images read like masks; all black draws no lines) in
    `serving_default`.

    Args:
        generator: a built `Generator`.
        max_pixels: the largest height x width either signature accepts.
        attention_memory_mb: a memory budget of contextual attention (`ContextualAttention`'s
            `memory_mb`): larger images compute it in row blocks, with the same result up to rounding
            and memory linear in the area. None: in one piece.
    """

    def __init__(self, generator, max_pixels=DEFAULT_MAX_PIXELS, attention_memory_mb=None):
        super().__init__(generator, name="inpainting")
        self.max_pixels = int(max_pixels)
        self.attention_memory_mb = attention_memory_mb
        guided = generator.config.guided
        maps = ["mask", "sketch"] if guided else ["mask"]
        self.inpaint = tf.function(self._inpaint, input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.float32, name="image")] + [
            tf.TensorSpec([None, None, None, 1], tf.float32, name=name) for name in maps])
        self.serve_bytes = tf.function(self._serve_bytes, input_signature=[
            tf.TensorSpec([None], tf.string, name=f"{name}_bytes") for name in ["image"] + maps])

    def _inpaint(self, image, mask, sketch=None):
        image_shape = tf.shape(image)
        checks = _check_size(image_shape[1], image_shape[2], self.max_pixels, "inpaint")
        checks += [_check_mask(image_shape[:3], tf.shape(m)[:3], "inpaint")
                   for m in (mask, sketch) if m is not None]
        with tf.control_dependencies(checks), self._budget():
            return inpaint_graph(self.generator, tf.identity(image), mask, sketch=sketch)

    def _budget(self):
        return self.generator.contextual_attention.budget(self.attention_memory_mb)

    def _serve_bytes(self, image_bytes, mask_bytes, sketch_bytes=None):
        others = [mask_bytes] + ([] if sketch_bytes is None else [sketch_bytes])
        for name, values in zip(("mask_bytes", "sketch_bytes"), others):
            tf.debugging.assert_equal(tf.size(image_bytes), tf.size(values),
                                      message=f"serving_default: send as many {name} as image_bytes")

        def one(items):
            # The sizes the files declare are checked before any of them is decoded.
            headers = [check for item, name in zip(items, ("image_bytes", "mask_bytes", "sketch_bytes"))
                       for check in _check_declared_size(item, self.max_pixels, "serving_default", name)]
            with tf.control_dependencies(headers):
                rgb = pipeline.decode_rgb(items[0])
                maps = [masks.holes_from_bytes(value) for value in items[1:]]  # the hole, the sketch's lines
            checks = _check_size(tf.shape(rgb)[0], tf.shape(rgb)[1], self.max_pixels, "serving_default")
            checks += [_check_mask(tf.shape(rgb)[:2], tf.shape(m), "serving_default") for m in maps]
            with tf.control_dependencies(checks):
                image = tf.cast(rgb, tf.float32)[None]
                inputs = [tf.cast(m, tf.float32)[None, :, :, None] for m in maps]
            with self._budget():
                result = inpaint_graph(self.generator, image, inputs[0],
                                       sketch=inputs[1] if len(inputs) > 1 else None)["inpainted"][0]
            filled = tf.cast(tf.clip_by_value(tf.round(result), 0.0, 255.0), tf.uint8)
            return tf.io.encode_png(tf.where(maps[0][..., None], filled, rgb))

        output = tf.map_fn(one, tuple([image_bytes] + others), fn_output_signature=tf.string)
        return {"output_bytes": output}


def versions(export_dir):
    """The integer versions already in `export_dir`, sorted."""
    if not os.path.isdir(export_dir):
        return []
    return sorted(int(name) for name in os.listdir(export_dir)
                  if name.isdigit() and os.path.isdir(os.path.join(export_dir, name)))


def latest_version_dir(export_dir):
    """`export_dir/<largest version>`; ExportError if there is none."""
    found = versions(export_dir)
    if not found:
        raise ExportError(f"{export_dir}: no SavedModel version folder (1/, 2/, ...) found; create one "
                          "with export.py")
    return os.path.join(export_dir, str(found[-1]))


def is_saved_model(path):
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def warmup_requests(generator, model_name):
    """PredictionLog protos replaying both signatures once at the generator's training size."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    height, width = generator.config.image_size
    rows, cols = np.mgrid[0:height, 0:width]
    rgb = np.stack([rows * 255 // max(height - 1, 1), cols * 255 // max(width - 1, 1),
                    (rows + cols) % 256], axis=-1).astype(np.uint8)
    hole = np.zeros((height, width), np.uint8)
    hole[height // 4:height * 3 // 4, width // 4:width * 3 // 4] = 255
    inputs = {
        "serving_default": {
            "image_bytes": [tf.io.encode_png(rgb).numpy()],
            "mask_bytes": [tf.io.encode_png(hole[..., None]).numpy()]},
        "inpaint": {
            "image": rgb[None].astype(np.float32),
            "mask": (hole[None, :, :, None] > 0).astype(np.float32)},
    }
    if generator.config.guided:  # a diagonal line through the hole
        lines = np.where(np.abs(rows - cols) < 2, hole, 0).astype(np.uint8)
        inputs["serving_default"]["sketch_bytes"] = [tf.io.encode_png(lines[..., None]).numpy()]
        inputs["inpaint"]["sketch"] = (lines[None, :, :, None] > 0).astype(np.float32)
    logs = []
    for signature, tensors in inputs.items():
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
        for key, value in tensors.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        logs.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup(saved_model_dir, logs):
    """Writes PredictionLog protos as TF Serving's warm-up TFRecord file of a SavedModel."""
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def export_saved_model(generator, export_dir, version=None, max_pixels=DEFAULT_MAX_PIXELS,
                       warmup=True, extra=None, attention_memory_mb=None):
    """Writes `export_dir/<version>/`, a SavedModel with the serving signatures.

    Args:
        generator: a built `Generator`.
        export_dir: the model's base folder, as TF Serving's `--model_base_path`.
        version: a positive integer; None takes one more than the largest existing version.
        max_pixels: the largest height x width the signatures accept.
        warmup: write TF Serving warm-up requests into `assets.extra/`.
        extra: optional function called with the temporary version folder before it is renamed
            into place, to add files (the TFLite models).
        attention_memory_mb: contextual attention's memory budget in the signatures
            (`ServingModule`), or None.

    Returns:
        The version folder written.

    Raises:
        ExportError: the version exists already (also when another export took it while this one
            was written), `version` is not a positive integer, or `export_dir` cannot be a folder.
    """
    export_dir = os.fspath(export_dir)
    locks.refuse_file(export_dir, "--export_dir", ExportError)
    automatic = version is None
    if automatic:
        version = (versions(export_dir) or [0])[-1] + 1
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ExportError(f"--version must be a positive integer, got {version!r}")
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final):
        raise _exists(final)
    locks.make_directory(export_dir, "--export_dir", ExportError)
    # A name of its own per export (also across hosts sharing the folder), created by the save with
    # the usual permissions.
    temp = os.path.join(export_dir, f".tmp-{version}-{os.getpid()}-{uuid.uuid4().hex[:12]}")
    try:
        module = ServingModule(generator, max_pixels, attention_memory_mb)
        tf.saved_model.save(module, temp, signatures={"serving_default": module.serve_bytes,
                                                      "inpaint": module.inpaint})
        if warmup:
            write_warmup(temp, warmup_requests(generator, os.path.basename(os.path.abspath(export_dir))))
        if extra is not None:
            extra(temp)
        while True:
            try:
                os.rename(temp, final)
                return final
            except OSError as err:
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                if not automatic:  # another export wrote this version meanwhile
                    raise _exists(final) from None
                version = max(version, (versions(export_dir) or [0])[-1]) + 1
                final = os.path.join(export_dir, str(version))
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _exists(final):
    return ExportError(f"{final} exists already; choose another --version (or leave it out to take the "
                       "next free one)")


def export(checkpoint, export_dir, version=None, tflite=False, tflite_size=None, warmup=True,
           max_pixels=DEFAULT_MAX_PIXELS, attention_memory_mb=None):
    """Exports a checkpoint: the SavedModel, and with `tflite` the three TFLite models beside it.

    Args:
        checkpoint: a checkpoint directory of this project, a prefix in one, or an original
            DeepFill TF1 checkpoint (see `store.load_generator`).
        export_dir: the model's base folder; the version folder is created inside it.
        version: the version number; None for one more than the largest existing one.
        tflite: also write `model_fp32.tflite`, `model_fp16.tflite` and
            `model_int8_dynamic.tflite` into the version folder.
        tflite_size: (height, width) for fixed-shape TFLite models; None for dynamic ones.
        warmup: write TF Serving warm-up requests.
        max_pixels: the largest height x width the SavedModel accepts.
        attention_memory_mb: contextual attention's memory budget in the SavedModel (`ServingModule`),
            or None. The TFLite models compute it in one piece.

    Returns:
        The version folder written.
    """
    from inpainting import tflite as tflite_lib
    from inpainting.checkpoints import store

    locks.refuse_file(export_dir, "--export_dir", ExportError)
    if tflite_size is not None and not tflite:
        raise ExportError("--tflite_size needs --tflite")
    if max_pixels < 1:
        raise ExportError(f"--max_pixels must be positive, got {max_pixels}")
    if attention_memory_mb is not None and attention_memory_mb <= 0:
        raise ExportError(f"--attention_memory_mb must be positive (or 0 for none), got {attention_memory_mb}")
    generator = store.load_generator(checkpoint)

    def extra(directory):
        generator.config.save(os.path.join(directory, "assets.extra"))
        if tflite:
            tflite_lib.write_models(generator, directory, tflite_size)

    return export_saved_model(generator, export_dir, version, max_pixels, warmup, extra, attention_memory_mb)
