"""The signatures of an exported generator, as TensorFlow functions of a `tf.Module`.

    module = ServingModule(generator)    # what `saved_model.export_saved_model` saves
    module.inpaint(image=..., mask=...)  # {"inpainted": ..., "flow": ...}

A SavedModel (tag `serve`) of a `ServingModule` has two signatures:

`serving_default`
    `image_bytes` and `mask_bytes`, string [B] (PNG, JPEG, BMP or GIF; any size, each pair its
    own) -> `output_bytes`, string [B] of PNG. TF Serving's REST API takes them as
    `{"b64": ...}` and answers in base64. Images and masks are read as the command-line tools
    read them (`sources.decode_rgb`, `masks.holes_from_bytes`): 8-bit RGB (gray replicated, alpha
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

The generator a module traces is built for the export (`generator_for_export`): contextual
attention computes as the export asks (in row blocks within a memory budget, or in one piece),
whatever the generator it was given was built with; the weights are the same.
"""

import tensorflow as tf

from inpainting.config import DEFAULT_MAX_PIXELS
from inpainting.data import masks, sources
from inpainting.model import flow as flow_lib
from inpainting.model.generator import GRID, Generator
from inpainting.model.layers import fold_indices, upsample_nearest

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


def inpaint_graph(generator, image, mask, flow_dtype=tf.float64, sketch=None, atan2=tf.atan2):
    """The `inpaint` signature's computation, without checks (TFLite runs it as it is).

    Args:
        generator: a built `Generator`.
        image: float32 [B, H, W, 3], RGB 0..255.
        mask: float32 [B, H, W, 1], hole where > 0.5.
        flow_dtype: float type of the flow colouring (float32 for TFLite).
        sketch: guided models: float32 [B, H, W, 1], lines where > 0.5 (the hole part counts).
        atan2: the flow colouring's arctangent (`flow_lib.flow_to_color`).

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
    colours = flow_lib.flow_to_color(out["offsets"], dtype=flow_dtype, per_image=True, atan2=atan2)
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


def generator_for_export(generator, attention_memory_mb=None):
    """The generator an export traces: `generator`'s network and weights, with contextual attention
    computed as the export asks.

    Args:
        generator: a built `Generator`.
        attention_memory_mb: a memory budget of contextual attention (`ContextualAttention`'s
            `memory_mb`): larger images compute it in row blocks, with the same result up to
            rounding and memory linear in the area. None: in one piece.

    Returns:
        `generator` itself when its attention computes that way already, else a new `Generator`
        of the same configuration holding a copy of its weights (`generator` is left as it is).

    Raises:
        ValueError: a budget for a generator whose attention cannot compute in blocks (the
            "patches" implementation).
    """
    attention = generator.contextual_attention
    if attention.memory_mb == attention_memory_mb and attention.block_rows is None:
        return generator
    exported = Generator.from_config(dict(generator.get_config(), attention_memory_mb=attention_memory_mb))
    exported.build()
    exported.set_weights(generator.get_weights())
    return exported


class GeneratorModule(tf.Module):
    """A `tf.Module` that exports a generator's weights so that every loader finds them.

    Keras 3 variables reached only through the model are saved, but TensorFlow's graph loader
    (TF Serving's) cannot find them: the module also tracks the underlying `tf.Variable`s.

    Args:
        generator: a built `Generator`.
        name: the module's name.
        attention_memory_mb: contextual attention's memory budget in the module's functions (see
            `generator_for_export`); None: in one piece.

    Attributes:
        generator: the generator the functions run, built for the export by `generator_for_export`.
    """

    def __init__(self, generator, name, attention_memory_mb=None):
        super().__init__(name=name)
        self.generator = generator_for_export(generator, attention_memory_mb)
        self.tf_variables = [v.value for v in self.generator.weights]


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
            and memory linear in the area. None: in one piece, whatever `generator` was built with.
    """

    def __init__(self, generator, max_pixels=DEFAULT_MAX_PIXELS, attention_memory_mb=None):
        super().__init__(generator, "inpainting", attention_memory_mb)
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
        with tf.control_dependencies(checks):
            return inpaint_graph(self.generator, tf.identity(image), mask, sketch=sketch)

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
                rgb = sources.decode_rgb(items[0])
                maps = [masks.holes_from_bytes(value) for value in items[1:]]  # the hole, the sketch's lines
            checks = _check_size(tf.shape(rgb)[0], tf.shape(rgb)[1], self.max_pixels, "serving_default")
            checks += [_check_mask(tf.shape(rgb)[:2], tf.shape(m), "serving_default") for m in maps]
            with tf.control_dependencies(checks):
                image = tf.cast(rgb, tf.float32)[None]
                inputs = [tf.cast(m, tf.float32)[None, :, :, None] for m in maps]
            result = inpaint_graph(self.generator, image, inputs[0],
                                   sketch=inputs[1] if len(inputs) > 1 else None)["inpainted"][0]
            filled = tf.cast(tf.clip_by_value(tf.round(result), 0.0, 255.0), tf.uint8)
            return tf.io.encode_png(tf.where(maps[0][..., None], filled, rgb))

        output = tf.map_fn(one, tuple([image_bytes] + others), fn_output_signature=tf.string)
        return {"output_bytes": output}
