"""Forward-pass speed of the v1 and v2 generators at batch 1, as JSON lines.

    .venv/bin/python bench/infer.py [--versions=v1,v2] [--sizes=256x256,512x680]
        [--implementations=matmul,patches] [--onednn=on,off] [--dilated_conv=auto,space_to_batch]

One line per (version, implementation, size) with seconds per image, the FLOPs of the network as the
original computes it and the effective GFLOP/s, and one line with this machine's float32
matmul GFLOP/s measured in the same run. `patches` is the reference formulation of contextual
attention, the same operations as the original code (extract_patches, convolution, fuse by
convolution, transposed convolution), so its time is the original's computation on this machine;
`original_seconds` is the original code's time on this machine class (reference
`timing-project-machine.txt`) scaled by the matmul rate measured in this run (`original` says so). Weights are random (timing does not depend on their values). The
hole is a centred rectangle covering 13.4% of the image, like the reference 256x256 case.

Each oneDNN mode (`TF_ENABLE_ONEDNN_OPTS`) runs in a child process of its own, in which the
formulations of the dilated convolutions (`INPAINTING_DILATED_CONV`) are timed in turns; every
line says which (`onednn`, `dilated_conv`), and `infer_backends` lines give each one's seconds
over oneDNN on with the default formulation.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

RELEASED_CNUM = {"v1": 32, "v2": 48}


STAGE_INPUT_SCALE = {"stage1": 1, "conv_branch": 1, "attention_in": 1, "attention_out": 4, "merge": 4}


def generator_gflop(generator, height, width):
    """FLOPs (multiply and add counted apart) of the generator as the original computes it."""
    total = 0
    for stage, layers in generator.stages.items():
        scale = STAGE_INPUT_SCALE[stage]
        for layer in layers:
            conv = getattr(layer, "conv", layer)
            scale = scale // 2 if conv is not layer else scale * conv.strides
            kh, kw, cin, cout = conv.kernel.shape
            total += 2 * kh * kw * cin * cout * (height // scale) * (width // scale)
    positions = (height // 8) * (width // 8)
    channels = generator.pmconv6.kernel.shape[-1] // (2 if generator.config.version == "v2" else 1)
    # Matching (3x3 patches) and pasting (4x4 patches) against every background patch.
    total += 2 * positions * positions * (9 + 16) * channels
    return total / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", default="v1,v2", help="DeepFill versions, comma-separated")
    parser.add_argument("--sizes", default="256x256,512x680", help="HxW list, comma-separated")
    parser.add_argument("--implementations", default="matmul,patches",
                        help="contextual-attention implementations to time")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per size (halved above 256x256)")
    parser.add_argument("--no_wait", action="store_true", help="do not wait for a quiet machine")
    common.add_backend_flags(parser)
    args = parser.parse_args()
    formulations = common.dilated_conv_formulations(args)
    records = common.run_onednn_modes(args)
    if records is not None:
        common.emit_backend_ratios(records, "infer", ("model", "implementation", "height", "width"))
        return

    import numpy as np
    import tensorflow as tf

    from inpainting.config import ModelConfig
    from inpainting.model.generator import Generator

    gflops, matmul_timing = common.matmul_gflops(wait=not args.no_wait)
    onednn = common.onednn()
    common.emit({"bench": "matmul_float32", "n": 2048, "gflops": round(gflops, 1), **matmul_timing,
                 "onednn": onednn})
    for version, implementation in ((v, i) for v in args.versions.split(",")
                                    for i in args.implementations.split(",")):
        tf.keras.utils.set_random_seed(0)
        generator = Generator(ModelConfig(version=version, cnum=RELEASED_CNUM[version]),
                              attention=implementation)
        generator.build()
        # One function per formulation of the dilated convolutions, each traced with it.
        forwards = {f: tf.function(lambda image, mask: generator([image, mask])["refined"])
                    for f in formulations}
        for size in args.sizes.split(","):
            height, width = (int(v) for v in size.lower().split("x"))
            image = tf.random.stateless_uniform([1, height, width, 3], seed=[0, 1], minval=-1, maxval=1)
            mask = np.zeros([1, height, width, 1], np.float32)
            h, w = round(height * 101 / 256), round(width * 87 / 256)
            mask[:, (height - h) // 2:(height + h) // 2, (width - w) // 2:(width + w) // 2] = 1
            mask = tf.constant(mask)
            for formulation, forward in forwards.items():
                with common.dilated_conv(formulation):
                    forward(image, mask)
            runs = args.runs if height * width <= 256 * 256 else max(3, args.runs // 2)
            timings = common.time_interleaved(
                {f: lambda forward=forward: forward(image, mask).numpy() for f, forward in forwards.items()},
                runs, warmup=2, wait=not args.no_wait)
            flop = generator_gflop(generator, height, width)
            for formulation, timing in timings.items():
                common.emit({
                    "bench": "infer", "model": version, "implementation": implementation, "batch": 1,
                    "height": height, "width": width, "hole_fraction": round(float(np.mean(mask)), 4),
                    "seconds": round(timing["median"], 4), "gflop": round(flop, 2),
                    "effective_gflops": round(flop / timing["median"], 1),
                    **common.original_comparison(("infer", version, height, width), timing["median"],
                                                 gflops),
                    **{f"timing_{k}": v for k, v in timing.items()},
                    "onednn": onednn, "dilated_conv": formulation,
                })

if __name__ == "__main__":
    main()
