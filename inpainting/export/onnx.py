"""Convert a generator to an ONNX model that ONNX Runtime's default CPU execution provider runs.

    write_model(generator, "exported/places2/1")  # -> exported/places2/1/model.onnx

The model has the SavedModel's `inpaint` signature: inputs `image` float32 [B, H, W, 3] RGB
0..255, `mask` float32 [B, H, W, 1] (1 = hole) and, for a guided model, `sketch` float32
[B, H, W, 1]; outputs `inpainted` float32 [B, H, W, 3] 0..255 (the fill inside the hole, the
input outside) and `flow` float32 [B, H, W, 3], the colour-coded attention in levels 0..255.
Batch, height and width are dynamic. The flow is coloured in float64 as in the SavedModel, with
the colour wheel's arctangent written as a series (`flow.atan2_series`): ONNX Runtime's CPU
provider has no float64 Atan kernel. The graph uses the default ONNX domain only (no custom or
contrib ops) and opset `OPSET`. Contextual attention runs in one piece or, with a memory budget as
the SavedModel's, in row blocks (an ONNX `Loop`) for images whose score matrix exceeds it.
`inpainting.inference.runners.ONNXRunner` runs it.

The conversion goes through tf2onnx and needs `inpainting[onnx]`.
"""

import os

import tensorflow as tf

from inpainting import extras, files
from inpainting.errors import ExportError
from inpainting.export.signatures import GeneratorModule, inpaint_graph
from inpainting.model import flow as flow_lib

MODEL_FILE = "model.onnx"
OPSET = 17
PURPOSE = "exporting an ONNX model"


class _ONNXModule(GeneratorModule):
    def __init__(self, generator, attention_memory_mb=None):
        super().__init__(generator, "inpainting_onnx", attention_memory_mb)
        maps = ["mask", "sketch"] if generator.config.guided else ["mask"]
        self.signature = [tf.TensorSpec([None, None, None, 3], tf.float32, name="image")] + [
            tf.TensorSpec([None, None, None, 1], tf.float32, name=name) for name in maps]
        self.inpaint = tf.function(self._inpaint, input_signature=self.signature)

    def _inpaint(self, image, mask, sketch=None):
        out = inpaint_graph(self.generator, image, mask, sketch=sketch, atan2=flow_lib.atan2_series)
        # Named outputs: tf2onnx names graph outputs after the tensors that feed them.
        return {key: tf.identity(value, name=key) for key, value in out.items()}


def convert(generator, attention_memory_mb=None):
    """Converts a generator to an ONNX model (see the module docstring).

    Args:
        generator: a built `Generator`.
        attention_memory_mb: contextual attention's memory budget (as `ServingModule`'s), or
            None for one piece.

    Returns:
        The model as bytes.

    Raises:
        ImportError: tf2onnx or onnx is not installed (the message names `inpainting[onnx]`).
        ExportError: the converted graph has ops outside the default ONNX domain.
    """
    extras.require("tf2onnx", "onnx", PURPOSE)
    extras.require("onnx", "onnx", PURPOSE)
    import tf2onnx

    module = _ONNXModule(generator, attention_memory_mb)
    outputs = ["inpainted", "flow"]
    model, _ = tf2onnx.convert.from_function(module.inpaint, input_signature=module.signature,
                                             opset=OPSET, output_path=None)
    _explicit_dilated_padding(model)
    renamed = {output.name: output.name.split(":")[0].rsplit("/", 1)[-1] for output in model.graph.output}
    _rename_outputs(model, renamed)
    names = [output.name for output in model.graph.output]
    if sorted(names) != sorted(outputs):
        raise ExportError(f"the converted ONNX model has outputs {names}, expected {outputs}")
    domains = sorted({node.domain for node in model.graph.node if node.domain not in ("", "ai.onnx")})
    if domains:
        raise ExportError(f"the converted ONNX model uses ops outside the default ONNX domain: "
                          f"{', '.join(domains)}")
    return model.SerializeToString()


def _explicit_dilated_padding(model):
    """Gives dilated convolutions explicit pads instead of `auto_pad` SAME.

    ONNX Runtime's CPU convolutions refuse dilation with `auto_pad` SAME_UPPER/SAME_LOWER. With
    stride 1 (every dilated convolution of the generators), SAME pads `dilation * (kernel - 1)`
    per axis, the odd one at the end for SAME_UPPER (TensorFlow's rule) or at the start for
    SAME_LOWER: the same numbers.
    """
    import onnx

    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        attributes = {attribute.name: attribute for attribute in node.attribute}
        auto_pad = attributes.get("auto_pad")
        dilations = list(attributes["dilations"].ints) if "dilations" in attributes else []
        same = auto_pad is not None and auto_pad.s in (b"SAME_UPPER", b"SAME_LOWER")
        if not same or max(dilations, default=1) == 1:
            continue
        strides = list(attributes["strides"].ints) if "strides" in attributes else []
        if max(strides, default=1) != 1:
            raise ExportError(f"ONNX node {node.name}: a dilated convolution with stride {strides} and SAME "
                              "padding has no ONNX Runtime kernel")
        totals = [d * (k - 1) for d, k in zip(dilations, attributes["kernel_shape"].ints)]
        small = [total // 2 if auto_pad.s == b"SAME_UPPER" else total - total // 2 for total in totals]
        pads = small + [total - first for total, first in zip(totals, small)]
        node.attribute.remove(auto_pad)
        node.attribute.append(onnx.helper.make_attribute("pads", pads))


def _rename_outputs(model, names):
    """Renames graph outputs (and every use of them) by the mapping `names`."""
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name in names:
                node.output[i] = names[name]
        for i, name in enumerate(node.input):
            if name in names:
                node.input[i] = names[name]
    for output in model.graph.output:
        output.name = names.get(output.name, output.name)


def write_model(generator, directory, attention_memory_mb=None):
    """Writes `directory/model.onnx` (see `convert`); returns its path."""
    path = os.path.join(directory, MODEL_FILE)
    files.write_bytes(path, convert(generator, attention_memory_mb))
    return path
