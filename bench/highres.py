"""Large-image inference: wall time and peak memory of the v1 model, as JSON lines.

    .venv/bin/python bench/highres.py [--sizes=512x680,1024x1024,2048x2048,4096x4096]
        [--attention=exact|hole_only] [--attention_memory_mb=256] [--checkpoint=PATH]

Each size runs in a child process that loads the model and inpaints one image (random pixels, a
centred hole over 10% of it) at full size, as `inpaint --hr=native` does: through
`inpainting.inference.inpainter.Inpainter` with the attention memory budget, which streams images over
`inpainter.STREAM_PIXELS` (convolutions in strips, attention in tiles; `inpainting.inference.streaming`).
The line gives the wall time of that call (tracing included), the child's peak RSS, whether the
image was streamed, and the peak the unchunked attention would need (`attention_memory_bytes`).
The weights are those of `--checkpoint`, by default the reference v1 checkpoint
(../shared/reference/deepfill/v1) if present, else random (time and memory do not depend on them).

Contextual attention compares every position with every other, so with `--attention=exact` its
time grows with the square of the area even when its memory does not: about 20 s at 1024x1024
on a 2-core CPU, 16 times that at 2048x2048 and 256 times at 4096x4096 (over an hour).
`--attention=hole_only` matches only the positions near the hole.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

CHILD = """
import json, resource, sys, tempfile, time
import numpy as np
sys.path.insert(0, sys.argv[2])
import common
from inpainting.inference.inpainter import Inpainter

size, budget, checkpoint, attention = json.loads(sys.argv[1])
with tempfile.TemporaryDirectory() as temp:
    generator, weights = common.v1_generator(checkpoint, temp, attention_memory_mb=budget)
    height, width = size
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.float32)
    h, w = round(height * 0.316), round(width * 0.316)  # 10% of the area
    mask[(height - h) // 2:(height + h) // 2, (width - w) // 2:(width + w) // 2] = 1
    inpainter = Inpainter(generator, attention)
    start = time.perf_counter()
    inpainter(rgb, mask)
    seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "hole_fraction": float(mask.mean()), "weights": weights,
                  "streamed": inpainter.streams(height, width),
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512x680,1024x1024,2048x2048,4096x4096",
                        help="HxW list, comma-separated")
    parser.add_argument("--attention_memory_mb", type=float, default=256,
                        help="attention memory budget (0: one piece)")
    parser.add_argument("--attention", default="exact", choices=["exact", "hole_only"],
                        help="contextual attention mode (see inpainting.inference.streaming)")
    parser.add_argument("--checkpoint", default=None, help="model (default: see above)")
    args = parser.parse_args()

    from inpainting.inference.inpainter import attention_memory_bytes

    for size in args.sizes.split(","):
        height, width = (int(v) for v in size.lower().split("x"))
        budget = args.attention_memory_mb or None
        child = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps([[height, width], budget, args.checkpoint, args.attention]),
             os.path.dirname(os.path.abspath(__file__))],
            capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        record = {"bench": "highres", "model": "v1", "size": size, "attention": args.attention,
                  "attention_memory_mb": budget,
                  "unchunked_attention_bytes": attention_memory_bytes(height, width)}
        if child.returncode == 0:
            record.update(json.loads(child.stdout.strip().splitlines()[-1]))
            record["seconds"] = round(record["seconds"], 2)
        else:
            record["error"] = (child.stderr.strip().splitlines() or [f"exit {child.returncode}"])[-1]
        common.emit(record)


if __name__ == "__main__":
    main()
