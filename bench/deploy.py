"""Latency and size of the exported forms of the v1 generator, as JSON lines.

    .venv/bin/python bench/deploy.py [--sizes=256x256,512x680] [--threads=2] [--checkpoint=PATH]

Exports one model (SavedModel plus the fp32, fp16 and int8 dynamic-range TFLite models, dynamic
height and width, as `export.py --tflite` writes them, and with `inpainting[onnx]` installed
`model.onnx`, as `export.py --onnx` writes it) and times one image through each: the SavedModel's
`inpaint` signature in TensorFlow, each TFLite model in the LiteRT interpreter (ai-edge-litert,
XNNPACK, --threads threads) and the ONNX model in ONNX Runtime (CPU execution provider, --threads
intra-op threads). Lines:

- `deploy_file_size`: bytes of the SavedModel (graph and variables) and of each TFLite and ONNX file.
- `deploy_latency`: per format and size, seconds per image (median over runs, warm-up excluded),
  the ratio to the SavedModel, for int8 the speed-up over TFLite fp32, and the mean and max
  absolute difference from the SavedModel's output in the hole (0..255 scale).
- `deploy_targets`: TFLite fp32 latency / SavedModel latency (target <= 1.5) and TFLite fp32 /
  int8 dynamic latency (target >= 1.5), per size.

The weights are those of `--checkpoint`; by default the reference v1 checkpoint
(../shared/reference/deepfill/v1) if present, else random weights (latency does not depend on
them, the differences do). The hole is a centred rectangle over 13.4% of the image.
"""

import argparse
import importlib.util
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

FORMATS = ("saved_model", "tflite_fp32", "tflite_fp16", "tflite_int8_dynamic", "onnx")


def _bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256x256,512x680", help="HxW list, comma-separated")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT interpreter and ONNX Runtime threads")
    parser.add_argument("--checkpoint", default=None, help="model to export (default: see above)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per size (halved above 256x256)")
    parser.add_argument("--no_wait", action="store_true", help="do not wait for a quiet machine")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from inpainting.export import onnx, saved_model, tflite
    from inpainting.inference.runners import ONNXRunner, TFLiteRunner

    formats = FORMATS
    if not all(importlib.util.find_spec(name) for name in ("tf2onnx", "onnxruntime")):
        formats = FORMATS[:-1]
        print("deploy.py: no ONNX Runtime line: pip install 'inpainting[onnx]' to add it", file=sys.stderr)

    def extra(path):
        tflite.write_models(generator, path)
        if "onnx" in formats:
            onnx.write_model(generator, path)

    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as temp:
        generator, weights = common.v1_generator(args.checkpoint, temp)
        directory = saved_model.export_saved_model(generator, os.path.join(temp, "export"), warmup=False,
                                                   extra=extra)
        sizes = {"saved_model": _bytes(os.path.join(directory, "saved_model.pb"))
                 + _bytes(os.path.join(directory, "variables"))}
        sizes.update({f"tflite_{q}": _bytes(os.path.join(directory, tflite.model_file(q)))
                      for q in tflite.QUANTIZATIONS})
        if "onnx" in formats:
            sizes["onnx"] = _bytes(os.path.join(directory, onnx.MODEL_FILE))
        common.emit({"bench": "deploy_file_size", "weights": weights, "bytes": sizes})

        inpaint = tf.saved_model.load(directory).signatures["inpaint"]
        interpreters = {f"tflite_{q}": TFLiteRunner(os.path.join(directory, tflite.model_file(q)), args.threads)
                        for q in tflite.QUANTIZATIONS}
        if "onnx" in formats:
            interpreters["onnx"] = ONNXRunner(os.path.join(directory, onnx.MODEL_FILE), args.threads)
        targets = {}
        for size in args.sizes.split(","):
            height, width = (int(v) for v in size.lower().split("x"))
            rng = np.random.default_rng(0)
            image = rng.integers(0, 256, (1, height, width, 3)).astype(np.float32)
            mask = np.zeros((1, height, width, 1), np.float32)
            h, w = round(height * 101 / 256), round(width * 87 / 256)
            mask[:, (height - h) // 2:(height + h) // 2, (width - w) // 2:(width + w) // 2] = 1
            hole = mask[0, :, :, 0] > 0
            rgb = image[0].astype(np.uint8)  # the runners' inputs: one image and its [H, W] mask
            runs = args.runs if height * width <= 256 * 256 else max(3, args.runs // 2)
            tensors = {"image": tf.constant(image), "mask": tf.constant(mask)}
            functions = {"saved_model": lambda: inpaint(**tensors)["inpainted"].numpy()}
            functions.update({name: (lambda r=runner: r.run(rgb, mask[0, :, :, 0]).filled[None])
                              for name, runner in interpreters.items()})
            reference = functions["saved_model"]()
            medians = {}
            for name in formats:
                output = functions[name]()
                diff = np.abs(output - reference)[0][hole]
                timing = common.time_runs(functions[name], runs, warmup=2, wait=not args.no_wait)
                medians[name] = timing["median"]
                record = {"bench": "deploy_latency", "format": name, "size": size, "weights": weights,
                          "threads": "tensorflow default" if name == "saved_model" else args.threads,
                          "seconds": round(timing["median"], 4),
                          "ratio_to_saved_model": round(timing["median"] / medians["saved_model"], 3),
                          "hole_mean_abs_diff": round(float(diff.mean()), 4),
                          "hole_max_abs_diff": round(float(diff.max()), 4), **timing}
                if name == "tflite_int8_dynamic":
                    record["speedup_over_tflite_fp32"] = round(medians["tflite_fp32"] / timing["median"], 3)
                common.emit(record)
            targets[size] = {
                "tflite_fp32_over_saved_model": round(medians["tflite_fp32"] / medians["saved_model"], 3),
                "tflite_fp32_over_int8_dynamic": round(medians["tflite_fp32"] / medians["tflite_int8_dynamic"], 3)}
        met = all(t["tflite_fp32_over_saved_model"] <= 1.5 and t["tflite_fp32_over_int8_dynamic"] >= 1.5
                  for t in targets.values())
        common.emit({"bench": "deploy_targets", "targets": "fp32/saved_model <= 1.5, fp32/int8 >= 1.5",
                     "by_size": targets, "met": met})


if __name__ == "__main__":
    main()
