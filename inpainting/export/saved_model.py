"""Write a generator as a versioned SavedModel that TF Serving loads as it is.

    export_saved_model(generator, "exported/places2")   # -> exported/places2/1/

The version folder holds the SavedModel (tag `serve`) of a `signatures.ServingModule`, with its
`serving_default` and `inpaint` signatures, and TF Serving's warm-up requests in `assets.extra/`.

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

from inpainting import extras, files, locks
from inpainting.config import DEFAULT_MAX_PIXELS
from inpainting.errors import ExportError
from inpainting.export.signatures import ServingModule

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def check_limits(max_pixels=DEFAULT_MAX_PIXELS, attention_memory_mb=None):
    """Raises ExportError for limits of the signatures that `ServingModule` cannot take.

    Args:
        max_pixels: the largest height x width the signatures accept: a positive number.
        attention_memory_mb: contextual attention's memory budget: positive, or None.
    """
    if max_pixels < 1:
        raise ExportError(f"{{parameter}} must be positive, got {max_pixels}", parameter="max_pixels")
    if attention_memory_mb is not None and not attention_memory_mb > 0:
        raise ExportError(f"{{parameter}} must be positive (or left out to compute attention in one "
                          f"piece), got {attention_memory_mb}", parameter="attention_memory_mb")


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
    """Whether `path` is a SavedModel folder (it holds `saved_model.pb`)."""
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def warmup_requests(generator, model_name):
    """PredictionLog protos replaying both signatures once at the generator's training size."""
    extras.require("tensorflow_serving", "export", "writing TF Serving's warm-up requests")
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
            (`ServingModule`), or None: in one piece.

    Returns:
        The version folder written.

    Raises:
        ExportError: the version exists already (also when another export took it while this one
            was written), `version` is not a positive integer, `export_dir` cannot be a folder or
            cannot be written (read-only), its disk is full (no temporary folder is left), or a
            limit is out of range (`check_limits`).
    """
    export_dir = os.fspath(export_dir)
    locks.refuse_file(export_dir, "export_dir", ExportError)
    check_limits(max_pixels, attention_memory_mb)
    automatic = version is None
    if automatic:
        version = (versions(export_dir) or [0])[-1] + 1
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ExportError(f"{{parameter}} must be a positive integer, got {version!r}", parameter="version")
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final):
        raise _exists(final)
    locks.make_directory(export_dir, "export_dir", ExportError)
    check_writable(export_dir)
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
    except (OSError, tf.errors.OpError) as err:
        error = _write_error(err, export_dir, version, temp)
        if error is None:
            raise
        raise error from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def check_writable(export_dir):
    """ExportError if the existing folder `export_dir` cannot receive a new version (a read-only
    file system, or no write permission); a missing one is created by the export."""
    if os.path.isdir(export_dir) and not os.access(export_dir, os.W_OK | os.X_OK):
        read_only = os.statvfs(export_dir).f_flag & os.ST_RDONLY
        raise _unwritable(export_dir, os.strerror(errno.EROFS if read_only else errno.EACCES))


def _write_error(err, export_dir, version, temp):
    """The ExportError of a version that could not be written into `temp` (a full disk, a folder
    that cannot be written), or None for other errors."""
    if files.disk_full(err):
        free = files.describe_size(files.free_space(export_dir) or 0)
        return ExportError(f"{{parameter}}={export_dir}: the disk is full ({free} free); version {version} "
                           f"needs more than the {files.describe_size(files.folder_size(temp))} it had "
                           f"written; free some space there or choose another {{parameter}} "
                           f"({_unchanged(export_dir)})", parameter="export_dir")
    if isinstance(err, (PermissionError, tf.errors.PermissionDeniedError)) \
            or getattr(err, "errno", None) == errno.EROFS:
        text = getattr(err, "message", None) or getattr(err, "strerror", None) or str(err)
        return _unwritable(export_dir, text.splitlines()[0])
    return None


def _unwritable(export_dir, reason):
    return ExportError(f"{{parameter}}={export_dir} cannot be written ({reason}); make it writable or "
                       f"choose another {{parameter}} ({_unchanged(export_dir)})", parameter="export_dir")


def _unchanged(export_dir):
    held = versions(export_dir)
    return f"its versions {', '.join(map(str, held))} are unchanged" if held else "nothing was added to it"


def _exists(final):
    return ExportError(f"{final} exists already; choose another {{parameter}} (or leave it out to take "
                       "the next free one)", parameter="version")
