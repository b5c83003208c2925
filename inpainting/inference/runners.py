"""One way to run any model this project makes: a checkpoint, an exported SavedModel or a TFLite file.

    fill = runners.load("runs/places2")            # checkpoint directory (or TF1 checkpoint)
    fill = runners.load("exported/places2")         # SavedModel export folder (latest version)
    fill = runners.load("exported/places2/1/model_fp32.tflite")
    filled = fill(rgb, mask)                        # uint8 [H, W, 3], {0, 1} [H, W] -> float 0..255
    filled = fill(rgb, mask, name="photo.png")      # name: how errors call the image
    filled, flow = fill.run(rgb, mask, sketch=lines)  # checkpoints and SavedModels: also the flow

Every runner takes one image of any size and returns float32 [H, W, 3] whose hole pixels are the
network's fill (`imageio.compose` pastes it into the original; exported models return the input
outside the hole, checkpoints the raw network output). The evaluation tool and the deployment benchmark
use them, so the three forms of a model are measured on the same inputs in the same way.
"""

import os
import re

import numpy as np

from inpainting.config import CONFIG_FILE, ModelConfig
from inpainting.errors import CheckpointError, ImageError


class CheckpointRunner:
    """Runs a generator loaded from a checkpoint directory of this project or an original one."""

    kind = "checkpoint"

    def __init__(self, path, attention="matmul"):
        from inpainting.checkpoints import store
        from inpainting.inference import inpainter

        self.path = os.fspath(path)
        self.inpainter = inpainter.Inpainter(store.load_generator(path, attention))

    def __call__(self, rgb, mask, name="image"):
        return self.inpainter(rgb, mask, name)["filled"]

    @property
    def guided(self):
        """Whether the model takes a sketch (a guided v2 model)."""
        return self.inpainter.guided

    @property
    def version(self):
        """The network family, "v1" or "v2"."""
        return self.inpainter.generator.config.version

    def run(self, rgb, mask, name="image", sketch=None):
        """The fill and the attention flow of one image.

        Args:
            rgb: uint8 [H, W, 3] RGB.
            mask: [H, W] in {0, 1}, 1 = hole.
            name: how errors call the image.
            sketch: guided models: [H, W] in {0, 1}, the lines the fill should follow; None draws
                no lines. Other models take none.

        Returns:
            (filled float32 [H, W, 3] RGB 0..255, flow uint8 [H, W, 3] RGB, the colour-coded
            attention offsets).

        Raises:
            ImageError: the image is too large for this machine, or a sketch for a model that is
                not guided.
        """
        result = self.inpainter(rgb, np.asarray(mask, np.float32), name, sketch)
        return result["filled"], result["flow"]


class SavedModelRunner:
    """Runs the `inpaint` signature of an exported SavedModel (a version folder)."""

    kind = "saved_model"

    def __init__(self, path):
        import tensorflow as tf

        self.path = os.fspath(path)
        self._signature = tf.saved_model.load(self.path).signatures.get("inpaint")
        if self._signature is None:
            raise CheckpointError(f"{self.path}: this SavedModel has no 'inpaint' signature; export "
                                  "it with export.py")

    def __call__(self, rgb, mask, name="image"):
        return self._outputs(rgb, mask, name)["inpainted"].numpy()[0]

    @property
    def guided(self):
        """Whether the model takes a sketch: its `inpaint` signature has a `sketch` input."""
        return "sketch" in self._signature.structured_input_signature[1]

    @property
    def version(self):
        """The network family, "v1" or "v2", from the model config that export.py writes into
        `assets.extra/`; None for a SavedModel exported without it."""
        directory = os.path.join(self.path, "assets.extra")
        if not os.path.isfile(os.path.join(directory, CONFIG_FILE)):
            return None
        return ModelConfig.load(directory).version

    def run(self, rgb, mask, name="image", sketch=None):
        """The fill and the attention flow of one image (see `CheckpointRunner.run`).

        The fill is the input outside the hole, the network's output inside it.
        """
        from inpainting import imageio

        imageio.check_sketch(sketch, self.guided, name)
        out = self._outputs(rgb, mask, name, sketch)
        flow = np.clip(np.rint(out["flow"].numpy()[0]), 0, 255).astype(np.uint8)
        return out["inpainted"].numpy()[0], flow

    def _outputs(self, rgb, mask, name, sketch=None):
        """The `inpaint` signature's outputs for one image; a guided model without a sketch
        draws no lines."""
        import tensorflow as tf

        inputs = {"image": tf.constant(rgb[None].astype(np.float32)),
                  "mask": tf.constant(mask[None, :, :, None].astype(np.float32))}
        if self.guided:
            lines = np.zeros_like(mask) if sketch is None else sketch
            inputs["sketch"] = tf.constant(lines[None, :, :, None].astype(np.float32))
        try:
            return self._signature(**inputs)
        except tf.errors.InvalidArgumentError as err:  # the signature's own checks (size, mask)
            found = re.search(r"assertion failed: \[(.*?)\]", err.message)
            if found is None:
                raise
            raise ImageError(f"{name}: {found.group(1)}".replace("\\'", "'")) from None


def load(path, attention="matmul", threads=None):
    """A runner for the model at `path` (see the module docstring for what `path` may be).

    Args:
        path: a checkpoint directory or prefix (ours or an original TF1 one), a SavedModel
            version folder, an export folder holding version folders (the largest is used), or
            a .tflite file.
        attention: contextual-attention implementation of checkpoints ("matmul" or "patches").
        threads: CPU threads of a TFLite interpreter (None: the runtime's default).

    Raises:
        CheckpointError: nothing loadable at `path`.
    """
    from inpainting import serving

    path = os.fspath(path)
    if path.endswith(".tflite"):
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: no such TFLite file")
        from inpainting.tflite import TFLiteRunner

        return TFLiteRunner(path, threads)
    if not os.path.exists(path) and not os.path.exists(path + ".index"):
        raise CheckpointError(f"{path}: no such file or directory")
    if os.path.isdir(path) and not serving.is_saved_model(path) and serving.versions(path):
        path = serving.latest_version_dir(path)
    if serving.is_saved_model(path):
        return SavedModelRunner(path)
    return CheckpointRunner(path, attention)
