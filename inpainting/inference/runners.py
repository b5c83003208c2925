"""One way to run any model this project makes: a checkpoint, a SavedModel, a TFLite or an ONNX file.

    fill = runners.load("runs/places2")            # checkpoint directory (or TF1 checkpoint)
    fill = runners.load("exported/places2")         # SavedModel export folder (latest version)
    fill = runners.load("exported/places2/1/model_fp32.tflite")
    fill = runners.load("exported/places2/1/model.onnx")
    result = fill.run(rgb, mask)                    # a `Result`: result.filled, result.flow
    result = fill.run(rgb, mask, name="photo.png", sketch=lines)
    filled = fill(rgb, mask)                        # fill.run(rgb, mask).filled

Every runner (`CheckpointRunner`, `SavedModelRunner`, `TFLiteRunner`, `ONNXRunner`) keeps one contract:

`run(rgb, mask, name="image", sketch=None)` inpaints one image of any size and returns a
`Result(filled, flow)`:
    rgb: uint8 [H, W, 3] RGB. mask: [H, W] in {0, 1}, 1 = hole. name: how errors call the image.
    sketch: guided models: [H, W] in {0, 1}, the lines the fill should follow; None draws no
    lines. A sketch given to a model that is not guided is an ImageError.
    `filled`: float32 [H, W, 3] RGB 0..255, the network's fill inside the hole and the input
    outside it (`imageio.compose` rounds it into the original's format).
    `flow`: uint8 [H, W, 3] RGB, the colour-coded attention offsets (`inpainting.model.flow`).
    The three forms of one model agree up to float rounding (TFLite colours the flow in float32,
    so a flow pixel may differ by a level); a quantized TFLite model's fill differs more.
`runner(rgb, mask, name="image")` is `run(...).filled`: the evaluation tool and the deployment
    benchmark call runners so, and measure the forms of a model on the same inputs in the same way.
`kind` ("checkpoint", "saved_model", "tflite", "onnx"), `path`, `guided` (whether it takes a sketch) and
    `version` ("v1", "v2", or None where an export does not say) describe the model.

Errors: ImageError for an image the model cannot take (too large for this machine, or for the
SavedModel's `max_pixels`); ExportError for an image of another size than a fixed-size TFLite
model's.
"""

import os
import re
from typing import NamedTuple

import numpy as np

from inpainting import extras
from inpainting.config import CONFIG_FILE, ModelConfig
from inpainting.errors import CheckpointError, ExportError, ImageError


class Result(NamedTuple):
    """What every runner's `run` returns for one image (see the module docstring)."""

    filled: np.ndarray  # float32 [H, W, 3] RGB 0..255: the fill in the hole, the input outside
    flow: np.ndarray  # uint8 [H, W, 3] RGB: the colour-coded attention offsets


class Runner:
    """The part of the contract (see the module docstring) that every runner shares."""

    kind = None

    def run(self, rgb, mask, name="image", sketch=None):
        """Inpaints one image; returns a `Result` (see the module docstring)."""
        raise NotImplementedError

    def __call__(self, rgb, mask, name="image"):
        """The fill of one image: `run(rgb, mask, name).filled`."""
        return self.run(rgb, mask, name).filled


def _paste(rgb, filled, mask):
    """float32 [H, W, 3]: `filled` inside the hole (mask > 0.5), `rgb` outside it."""
    return np.where(np.asarray(mask)[..., None] > 0.5, filled, rgb).astype(np.float32)


def _signature_inputs(rgb, mask, sketch, guided):
    """The `inpaint` signature's inputs for one image: float32 [1, H, W, C] arrays of the image, the
    mask and, for a guided model, the sketch (blank when none is given)."""
    inputs = {"image": np.asarray(rgb, np.float32)[None],
              "mask": np.asarray(mask, np.float32)[None, :, :, None]}
    if guided:
        lines = np.zeros_like(mask) if sketch is None else sketch
        inputs["sketch"] = np.asarray(lines, np.float32)[None, :, :, None]
    return inputs


def _flow_levels(flow):
    """An exported model's flow (float levels 0..255) as uint8."""
    return np.clip(np.rint(flow), 0, 255).astype(np.uint8)


def _export_version(directory):
    """The network family from the model config that export.py writes into `directory/assets.extra/`;
    None for an export without it."""
    directory = os.path.join(directory, "assets.extra")
    if not os.path.isfile(os.path.join(directory, CONFIG_FILE)):
        return None
    return ModelConfig.load(directory).version


class CheckpointRunner(Runner):
    """Runs a generator loaded from a checkpoint directory of this project or an original one.

    Args:
        path: the checkpoint (see `store.load_generator`).
        attention: contextual-attention implementation, "matmul" or "patches".
    """

    kind = "checkpoint"

    def __init__(self, path, attention="matmul"):
        from inpainting.checkpoints import store
        from inpainting.inference import inpainter

        self.path = os.fspath(path)
        self.inpainter = inpainter.Inpainter(store.load_generator(path, attention))

    @property
    def guided(self):
        """Whether the model takes a sketch (a guided v2 model)."""
        return self.inpainter.guided

    @property
    def version(self):
        """The network family, "v1" or "v2"."""
        return self.inpainter.generator.config.version

    def run(self, rgb, mask, name="image", sketch=None):
        """Inpaints one image with `inpainter.Inpainter`; returns a `Result` (see the module docstring).

        Raises:
            ImageError: the image is too large for this machine, or a sketch for a model that is
                not guided.
        """
        result = self.inpainter(rgb, np.asarray(mask, np.float32), name, sketch)
        return Result(_paste(rgb, result["filled"], mask), result["flow"])


class SavedModelRunner(Runner):
    """Runs the `inpaint` signature of an exported SavedModel (a version folder)."""

    kind = "saved_model"

    def __init__(self, path):
        import tensorflow as tf

        self.path = os.fspath(path)
        self._signature = tf.saved_model.load(self.path).signatures.get("inpaint")
        if self._signature is None:
            raise CheckpointError(f"{self.path}: this SavedModel has no 'inpaint' signature; export "
                                  "it with export.py")

    @property
    def guided(self):
        """Whether the model takes a sketch: its `inpaint` signature has a `sketch` input."""
        return "sketch" in self._signature.structured_input_signature[1]

    @property
    def version(self):
        """The network family, "v1" or "v2", from the model config that export.py writes into
        `assets.extra/`; None for a SavedModel exported without it."""
        return _export_version(self.path)

    def run(self, rgb, mask, name="image", sketch=None):
        """Inpaints one image with the `inpaint` signature; returns a `Result` (see the module
        docstring).

        Raises:
            ImageError: the signature refuses the image (more pixels than its `max_pixels`, ...),
                or a sketch for a model that is not guided.
        """
        import tensorflow as tf

        from inpainting import imageio

        imageio.check_sketch(sketch, self.guided, name)
        inputs = _signature_inputs(rgb, mask, sketch, self.guided)
        inputs = {key: tf.constant(value) for key, value in inputs.items()}
        try:
            out = self._signature(**inputs)
        except tf.errors.InvalidArgumentError as err:  # the signature's own checks (size, mask)
            found = re.search(r"assertion failed: \[(.*?)\]", err.message)
            if found is None:
                raise
            raise ImageError(f"{name}: {found.group(1)}".replace("\\'", "'")) from None
        return Result(out["inpainted"].numpy()[0], _flow_levels(out["flow"].numpy()[0]))


class TFLiteRunner(Runner):
    """Runs a TFLite model of this project (`inpainting.export.tflite`) in the LiteRT interpreter.

    Args:
        path: the .tflite file.
        threads: CPU threads of the interpreter (None: the runtime's default).

    Attributes:
        fixed_size: (height, width) of a fixed-size model, None for dynamic height and width.
    """

    kind = "tflite"

    def __init__(self, path, threads=None):
        extras.require("ai_edge_litert", "export", "running a TFLite model")
        from ai_edge_litert.interpreter import Interpreter

        from inpainting.export.tflite import SIGNATURE

        self.path = os.fspath(path)
        self.interpreter = Interpreter(model_path=self.path, num_threads=threads)
        signatures = self.interpreter.get_signature_list()
        if SIGNATURE not in signatures:
            raise ExportError(f"{self.path}: no '{SIGNATURE}' signature (it has "
                              f"{', '.join(signatures) or 'none'}); export it with export.py --tflite")
        self._runner = self.interpreter.get_signature_runner(SIGNATURE)
        inputs = self._runner.get_input_details()
        self.guided = "sketch" in inputs
        self.fixed_size = None
        shape = inputs["image"]["shape_signature"]
        if shape[1] > 0 and shape[2] > 0:
            self.fixed_size = (int(shape[1]), int(shape[2]))

    @property
    def version(self):
        """The network family, "v1" or "v2", from the model config of the version folder holding
        the file (export.py writes it); None for a file outside one."""
        return _export_version(os.path.dirname(os.path.abspath(self.path)))

    def run(self, rgb, mask, name="image", sketch=None):
        """Inpaints one image with the model's `inpaint` signature; returns a `Result` (see the
        module docstring).

        Raises:
            ExportError: the model has a fixed size and the image another one.
            ImageError: the image is too large for this machine, or a sketch for a model that is
                not guided.
        """
        from inpainting import imageio
        from inpainting.inference import inpainter

        height, width = np.shape(mask)
        if self.fixed_size is not None and (height, width) != self.fixed_size:
            fixed_height, fixed_width = self.fixed_size
            raise ExportError(f"{self.path} takes {fixed_width}x{fixed_height} images only (exported with "
                              f"{{parameter}}); got {width}x{height}", parameter="tflite_size")
        inpainter.check_size(height, width, name)
        imageio.check_sketch(sketch, self.guided, name)
        out = self._runner(**_signature_inputs(rgb, mask, sketch, self.guided))
        return Result(out["inpainted"][0], _flow_levels(out["flow"][0]))


class ONNXRunner(Runner):
    """Runs an ONNX model of this project (`inpainting.export.onnx`) with ONNX Runtime's CPU provider.

    Args:
        path: the .onnx file.
        threads: intra-op CPU threads of the session (None: the runtime's default).

    Raises:
        ExportError: the file is not an ONNX model (truncated, or another format), or not one of
            this project (no `image` and `mask` inputs, no `inpainted` and `flow` outputs).
    """

    kind = "onnx"

    def __init__(self, path, threads=None):
        ort = extras.require("onnxruntime", "onnx", "running an ONNX model")

        self.path = os.fspath(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # the runtime's warnings are not the user's business
        try:
            self._session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types, or a RuntimeError
            reason = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            reason = re.sub(r"^\[ONNXRuntimeError\] : \d+ : |Load model from .* failed: ?", "", reason)
            raise ExportError(f"{self.path}: not a readable ONNX model ({reason[:200]}); export one with "
                              "export.py --onnx") from None
        inputs = {tensor.name for tensor in self._session.get_inputs()}
        outputs = {tensor.name for tensor in self._session.get_outputs()}
        if not {"image", "mask"} <= inputs or not {"inpainted", "flow"} <= outputs:
            raise ExportError(f"{self.path}: not an inpainting model (inputs {', '.join(sorted(inputs))}, "
                              f"outputs {', '.join(sorted(outputs))}); export one with export.py --onnx")
        self.guided = "sketch" in inputs

    @property
    def version(self):
        """The network family, "v1" or "v2", from the model config of the version folder holding
        the file (export.py writes it); None for a file outside one."""
        return _export_version(os.path.dirname(os.path.abspath(self.path)))

    def run(self, rgb, mask, name="image", sketch=None):
        """Inpaints one image with the model; returns a `Result` (see the module docstring).

        Raises:
            ImageError: the image is too large for this machine, or a sketch for a model that is
                not guided.
        """
        from inpainting import imageio
        from inpainting.inference import inpainter

        inpainter.check_size(*np.shape(mask), name)
        imageio.check_sketch(sketch, self.guided, name)
        inpainted, flow = self._session.run(["inpainted", "flow"],
                                            _signature_inputs(rgb, mask, sketch, self.guided))
        return Result(inpainted[0], _flow_levels(flow[0]))


def load(path, attention="matmul", threads=None):
    """A runner for the model at `path` (see the module docstring for what `path` may be).

    Args:
        path: a checkpoint directory or prefix (ours or an original TF1 one), a SavedModel
            version folder, an export folder holding version folders (the largest is used), or
            a .tflite or .onnx file.
        attention: contextual-attention implementation of checkpoints ("matmul" or "patches").
        threads: CPU threads of a TFLite interpreter or an ONNX Runtime session (None: the
            runtime's default).

    Raises:
        CheckpointError: nothing loadable at `path`.
    """
    from inpainting.export import saved_model

    path = os.fspath(path)
    if path.endswith(".tflite"):
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: no such TFLite file")
        return TFLiteRunner(path, threads)
    if path.endswith(".onnx"):
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: no such ONNX file")
        return ONNXRunner(path, threads)
    if not os.path.exists(path) and not os.path.exists(path + ".index"):
        raise CheckpointError(f"{path}: no such file or directory")
    if os.path.isdir(path) and not saved_model.is_saved_model(path) and saved_model.versions(path):
        path = saved_model.latest_version_dir(path)
    if saved_model.is_saved_model(path):
        return SavedModelRunner(path)
    return CheckpointRunner(path, attention)
