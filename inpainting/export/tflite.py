"""Convert a generator to TFLite (LiteRT) models that use built-in ops only.

    write_models(generator, "exported/places2/1")  # model_fp32.tflite, model_fp16.tflite,
                                                    # model_int8_dynamic.tflite

Each model has one signature, `inpaint`: `image` float32 [1, H, W, 3] RGB 0..255 and `mask`
float32 [1, H, W, 1] (1 = hole) -> `inpainted` float32 [1, H, W, 3] 0..255 (the fill inside the
hole, the input outside) and `flow` float32 [1, H, W, 3], the colour-coded attention in levels
0..255. That is the SavedModel's `inpaint` signature for one image, with the flow coloured in
float32 (LiteRT has no float64 kernels for it). Height and width are dynamic (any size; resize the
inputs before allocating tensors) unless a fixed `size` is given, which lets the runtime plan
memory once.

The three variants: `fp32`; `fp16`, whose weights are stored in float16 (half the file) and
computed in float32; and `int8_dynamic`, dynamic-range quantization: int8 weights, and
convolutions that quantize their inputs on the fly. Conversion allows TFLite built-in ops only,
so the models run on any LiteRT runtime without the Flex delegate; an op that would need it
stops the conversion with an error naming it. Contextual attention runs in one piece in these
models (their converter has no TensorArrays for its row blocks), whatever the generator was built
with. `inpainting.inference.runners.TFLiteRunner` runs them.
"""

import contextlib
import os
import re
import tempfile

import tensorflow as tf

from inpainting import extras, files
from inpainting.errors import ExportError
from inpainting.export.signatures import GeneratorModule, inpaint_graph

QUANTIZATIONS = ("fp32", "fp16", "int8_dynamic")
SIGNATURE = "inpaint"


def model_file(quantization):
    """The file name of the model of one quantization in a version folder."""
    return f"model_{quantization}.tflite"


class _TFLiteModule(GeneratorModule):
    def __init__(self, generator, size):
        super().__init__(generator, "inpainting_tflite", attention_memory_mb=None)  # no TensorArrays
        height, width = size or (None, None)
        maps = ["mask", "sketch"] if generator.config.guided else ["mask"]
        self.inpaint = tf.function(self._inpaint, input_signature=[
            tf.TensorSpec([1, height, width, 3], tf.float32, name="image")] + [
            tf.TensorSpec([1, height, width, 1], tf.float32, name=name) for name in maps])

    def _inpaint(self, image, mask, sketch=None):
        return inpaint_graph(self.generator, image, mask, flow_dtype=tf.float32, sketch=sketch)


def check_size(size, parameter="size"):
    """Raises ExportError naming `parameter` unless `size` is None or (height, width) > 0."""
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ExportError(f"{{parameter}} must be HxW with positive sides, got {size!r}", parameter=parameter)


def _flex_ops(message):
    """The TensorFlow op names that a converter error says are not TFLite built-ins."""
    ops = set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message))
    for listed in re.findall(r"TF Select ops: ([\w, ]+)", message):
        ops.update(name.strip() for name in listed.split(",") if name.strip())
    return sorted(ops)


def convert(generator, quantization="fp32", size=None):
    """Converts a generator to a TFLite flatbuffer with built-in ops only.

    Args:
        generator: a built `Generator`.
        quantization: one of `QUANTIZATIONS`.
        size: (height, width) for a fixed-shape model (any positive sides); None for dynamic
            height and width.

    Returns:
        The model as bytes.

    Raises:
        ExportError: an op is not a TFLite built-in (the message names it), or bad arguments.
    """
    with _saved_module(generator, size) as directory:
        return convert_saved_model(directory, quantization)


@contextlib.contextmanager
def _saved_module(generator, size):
    """A temporary SavedModel of the TFLite signature, the converter's input; yields its folder."""
    check_size(size)
    module = _TFLiteModule(generator, size)
    with tempfile.TemporaryDirectory(prefix="inpainting-tflite-") as temp:
        tf.saved_model.save(module, temp, signatures={SIGNATURE: module.inpaint})
        yield temp


def convert_saved_model(directory, quantization="fp32"):
    """Converts the `inpaint` signature of a SavedModel with TFLite built-in ops only.

    Args:
        directory: a SavedModel folder with an `inpaint` signature.
        quantization: one of `QUANTIZATIONS`.

    Returns:
        The model as bytes.

    Raises:
        ExportError: an op is not a TFLite built-in (the message names it), or an unknown
            quantization.
    """
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"{{parameter}} must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}",
                          parameter="quantization")
    converter = tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        return converter.convert()
    except Exception as err:  # ConverterError, or a plain Exception from the MLIR pipeline
        ops = _flex_ops(str(err))
        if not ops:
            raise
    raise ExportError(f"the model needs TensorFlow ops that are not TFLite built-ins: {', '.join(ops)}; "
                      "they would need the Flex delegate, which this export does not allow")


def op_names(model):
    """The sorted set of op names in a TFLite model (bytes or path), e.g. CONV_2D, FlexXyz."""
    extras.require("ai_edge_litert", "export", "reading a TFLite model")
    from ai_edge_litert.interpreter import Interpreter

    kwargs = {"model_content": model} if isinstance(model, bytes) else {"model_path": os.fspath(model)}
    interpreter = Interpreter(**kwargs)
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def write_models(generator, directory, size=None, quantizations=QUANTIZATIONS):
    """Writes `model_<quantization>.tflite` for each quantization into `directory`.

    Returns:
        {quantization: path}.
    """
    paths = {}
    with _saved_module(generator, size) as saved:  # one SavedModel serves every quantization
        for quantization in quantizations:
            model = convert_saved_model(saved, quantization)
            path = os.path.join(directory, model_file(quantization))
            files.write_bytes(path, model)
            paths[quantization] = path
    return paths
