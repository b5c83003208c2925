"""A picture of a model's fills beside the classical ones: one row per photo and hole,
columns masked | OpenCV Telea | the model | the original.

    .venv/bin/python bench/grid.py --checkpoint=runs/cpu_1h --images=samples --output=grid.png \\
        [--count=4] [--size=128] [--masks=center,free_form] [--scale=2]

--images: a folder (its photos in sorted order, as train.py's folder:DIR), a file list (one path
per line, e.g. the held_out.flist of a bench/learn.py run), or `samples` (the scikit-image
photos the `samples` dataset holds out, then the colour ones it trains on: astronaut, chelsea,
coffee, motorcycle_left, ...). The first --count photos that are read as 8-bit RGB are used.
Each photo is prepared as bench/learn.py evaluates: its largest centred square resized to
--size, with the centre hole (a quarter of the area) and its own free-form hole of 10-50 %.
The hole is shown white in the first column; the model's and Telea's fills keep the photo
outside the hole. --scale enlarges the picture (nearest neighbour) for display.

Exit status: 0 done, 2 a usage error (one `error: ...` line).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import chart  # noqa: E402
import learn  # noqa: E402

SAMPLE_PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "motorcycle_left.png", "rocket.jpg",
                 "motorcycle_right.png")  # the colour photos of `samples`, held-out ones first


def photo_paths(images):
    """Paths of the photos `images` names (a folder, a file list or "samples")."""
    from inpainting.data import sources

    if images == "samples":
        folder = os.path.dirname(sources.held_out_sample_paths()[0])
        return [os.path.join(folder, name) for name in SAMPLE_PHOTOS
                if os.path.isfile(os.path.join(folder, name))]
    if os.path.isdir(images):
        return sources.list_image_files(images)
    if os.path.isfile(images):
        return sources.read_file_list(images)
    raise learn.UsageError(f"--images={images}: no such folder or file list (or give samples)")


def prepared(paths, count, size, kinds):
    """[(name, rgb, {kind: mask})] of the first `count` photos of `paths` that can be read."""
    from inpainting import imageio
    from inpainting.errors import InpaintingError
    from inpainting.evaluate import center_mask

    chosen = []
    for path in paths:
        if len(chosen) == count:
            break
        try:
            rgb = learn.square(imageio.read_image(path).rgb, size)
        except InpaintingError as err:
            print(f"grid: skipped {err}", file=sys.stderr)
            continue
        name = os.path.basename(path)
        chosen.append((name, rgb, {kind: center_mask((size, size)) if kind == "center"
                                   else learn.free_form_mask(name, size) for kind in kinds}))
    return chosen


def parse_args(argv):
    parser = learn.Parser(description=__doc__.split("\n\n")[0],
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a model directory or checkpoint prefix")
    parser.add_argument("--images", required=True, help="folder, file list or samples")
    parser.add_argument("--output", required=True, help="the PNG to write")
    parser.add_argument("--count", type=int, default=4, help="photos")
    parser.add_argument("--size", type=int, default=128, help="side of each square photo")
    parser.add_argument("--masks", default=",".join(learn.MASK_KINDS), help="center, free_form or both")
    parser.add_argument("--scale", type=int, default=1, help="enlargement for display")
    args = parser.parse_args(argv)
    kinds = tuple(kind for kind in args.masks.split(",") if kind)
    if not kinds or any(kind not in learn.MASK_KINDS for kind in kinds):
        parser.error(f"--masks={args.masks}: give {' or '.join(learn.MASK_KINDS)}, comma-separated")
    for name in ("count", "size", "scale"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.size % 8:
        parser.error(f"--size must be a multiple of 8, got {args.size}")
    return args, kinds


def main(argv):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args, kinds = parse_args(argv)
        photos = prepared(photo_paths(args.images), args.count, args.size, kinds)
        if not photos:
            raise learn.UsageError(f"--images={args.images}: no photo could be read")
        from inpainting.errors import InpaintingError
        from inpainting.inference import runners

        try:
            runner = runners.load(args.checkpoint)
        except InpaintingError as err:
            raise learn.UsageError(f"--checkpoint: {err}") from None
        chart.write_png(args.output, chart.fills_grid(runner, photos, kinds, args.scale))
        print(f"grid: {len(photos)} photos x {len(kinds)} holes in {args.output}", file=sys.stderr)
        return 0
    except learn.UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
