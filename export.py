"""Export a checkpoint for TF Serving (SavedModel), with --tflite for LiteRT, --onnx for ONNX Runtime.

    python export.py --checkpoint=runs/places2 --export_dir=exported/places2 [--version=N] [--tflite] [--onnx]

Writes `export_dir/<version>/`: the SavedModel (signatures `serving_default`, bytes in and PNG
out, and `inpaint`, float tensors), TF Serving warm-up requests in `assets.extra/`, the model
config, and with --tflite `model_fp32.tflite`, `model_fp16.tflite` and
`model_int8_dynamic.tflite`, and with --onnx `model.onnx`. See `inpainting/export/` (`job.py` is
what this command runs).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's and the converter's notices off the console

from absl import app, flags, logging  # noqa: E402

from inpainting import cli  # noqa: E402
from inpainting.config import DEFAULT_MAX_PIXELS, parse_size  # noqa: E402
from inpainting.errors import ExportError  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("checkpoint", None, "Checkpoint directory of this project (from training or "
                        "inpainting.checkpoints.convert), a checkpoint prefix inside one, or an original DeepFill TF1 "
                        "checkpoint folder.")
    flags.DEFINE_string("export_dir", None, "Base folder of the exported model (TF Serving's "
                        "--model_base_path); the version folder <N>/ is created inside it.")
    flags.DEFINE_integer("version", None, "Version number of the export; default: one more than the "
                         "largest version in --export_dir (1 for a new folder). An existing version is "
                         "never replaced; exports running at the same time each take their own version.")
    flags.DEFINE_bool("tflite", False, "Also write model_fp32.tflite, model_fp16.tflite and "
                      "model_int8_dynamic.tflite (built-in ops only) into the version folder.")
    flags.DEFINE_bool("onnx", False, "Also write model.onnx (ONNX Runtime, default ONNX ops only; needs "
                      "inpainting[onnx]) into the version folder.")
    flags.DEFINE_string("tflite_size", None, "HxW (e.g. 256x256, or 512 for 512x512): fixed input size "
                        "of the TFLite models. Default: dynamic height and width.")
    flags.DEFINE_bool("warmup", True, "Write TF Serving warm-up requests (assets.extra/"
                      "tf_serving_warmup_requests), one per signature at the training image size.")
    flags.DEFINE_integer("max_pixels", DEFAULT_MAX_PIXELS, "Largest height x width the SavedModel "
                         "accepts; larger requests fail with an error instead of exhausting the "
                         "server's memory (contextual attention grows with the square of the area).")
    flags.DEFINE_float("attention_memory_mb", 0, "Memory budget of contextual attention in the SavedModel and model.onnx: "
                       "larger images compute its score matrix in row blocks that fit, with the same "
                       "result up to rounding and memory linear in the image area, so --max_pixels can be raised. "
                       "0: in one piece. The TFLite models always compute it in one piece.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; every setting is a --flag")
    for name in ("checkpoint", "export_dir"):
        if FLAGS[name].value is None:
            raise app.UsageError(f"--{name} is required")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    # job.export's parameters are named like these flags: its errors need no flag_names.
    with cli.user_errors():
        if FLAGS.tflite_size and not FLAGS.tflite:
            raise ExportError("--tflite_size needs --tflite")
        size = parse_size(FLAGS.tflite_size, "tflite_size") if FLAGS.tflite_size else None
        from inpainting.export import job

        directory = job.export(FLAGS.checkpoint, FLAGS.export_dir, FLAGS.version, FLAGS.tflite,
                               size, FLAGS.warmup, FLAGS.max_pixels, FLAGS.attention_memory_mb or None,
                               FLAGS.onnx)
        for name in sorted(os.listdir(directory)):
            print(os.path.join(directory, name))


if __name__ == "__main__":
    define_flags()
    app.run(main)
