"""The export job: a checkpoint becomes a SavedModel version folder, with TFLite and ONNX models beside it.

    export("runs/places2", "exported/places2", tflite=True)   # -> exported/places2/1/

The version folder holds the SavedModel (`saved_model.export_saved_model`), TF Serving's warm-up
requests, the model config in `assets.extra/`, with `tflite` the three TFLite models
(`tflite.write_models`) and with `onnx` `model.onnx` (`onnx.write_model`), all written before the
folder is renamed into place. `export.py` runs it from the command line.
"""

import os

from inpainting import extras, locks
from inpainting.checkpoints import store
from inpainting.config import DEFAULT_MAX_PIXELS
from inpainting.errors import ExportError
from inpainting.export import onnx as onnx_lib
from inpainting.export import saved_model
from inpainting.export import tflite as tflite_lib


def export(checkpoint, export_dir, version=None, tflite=False, tflite_size=None, warmup=True,
           max_pixels=DEFAULT_MAX_PIXELS, attention_memory_mb=None, onnx=False):
    """Exports a checkpoint: the SavedModel, with `tflite` the three TFLite models and with `onnx` the
    ONNX model beside it.

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
        attention_memory_mb: contextual attention's memory budget in the SavedModel (`ServingModule`)
            and the ONNX model, or None. The TFLite models compute it in one piece.
        onnx: also write `model.onnx` (`inpainting.export.onnx`) into the version folder.

    Returns:
        The version folder written.

    Raises:
        ExportError: an argument is out of range (checked before the checkpoint is loaded), or the
            version cannot be written (see `saved_model.export_saved_model`).
        CheckpointError, ConfigError: nothing loadable at `checkpoint`.
    """
    locks.refuse_file(export_dir, "export_dir", ExportError)
    saved_model.check_writable(export_dir)  # before the slow load of the checkpoint
    if tflite_size is not None and not tflite:
        raise ExportError("{parameter} needs tflite=True (it sets the size of the TFLite models)",
                          parameter="tflite_size")
    tflite_lib.check_size(tflite_size, "tflite_size")
    saved_model.check_limits(max_pixels, attention_memory_mb)
    if onnx:  # before the checkpoint is loaded: a missing extra fails fast
        extras.require("tf2onnx", "onnx", onnx_lib.PURPOSE)
    generator = store.load_generator(checkpoint)

    def extra(directory):
        generator.config.save(os.path.join(directory, "assets.extra"))
        if tflite:
            tflite_lib.write_models(generator, directory, tflite_size)
        if onnx:
            onnx_lib.write_model(generator, directory, attention_memory_mb)

    return saved_model.export_saved_model(generator, export_dir, version, max_pixels, warmup, extra,
                                          attention_memory_mb)
