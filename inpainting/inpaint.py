"""Inpaint one image or a folder of images with a trained or imported DeepFill model.

    python -m inpainting.inpaint --checkpoint=DIR --image=IN --mask=MASK --output=OUT [--flow=FLOW]
        [--sketch=LINES] [--hr=native|resize|crop [--hr_size=N] [--hr_margin=N]]
        [--mask_grow=N] [--mask_feather=N]
    python -m inpainting.inpaint --checkpoint=DIR --image_dir=DIR (--mask_dir=DIR | --mask=MASK)
        --output_dir=DIR [--flow_dir=DIR] [--sketch_dir=DIR] [--hr=...]

Images of any size work: they are padded to the network's grid of 8 and cropped back. Gray,
colour and colour+alpha images, 8 or 16 bits, are read; the output keeps the input's layout and
bit depth, and its pixels outside the hole are identical to the input's (write PNG or TIFF to
keep that exact: JPEG and WebP re-compress); animated images and multi-page TIFFs are refused
(save the frame to inpaint as a PNG). Existing files are never replaced without
--overwrite, and no two outputs (or flows) may be the same file: a.png and a.jpg in one folder
are refused before anything is written. In folder mode each image's mask is the file in
--mask_dir with the same relative path and name (any image extension), and outputs are written as
PNG with the same relative path; --output_dir and --flow_dir inside --image_dir are not searched
for images. An image that cannot be read or inpainted is named on stderr and the others are still
written; the run then ends with `error: N of M images failed` and exit status 1.
--mask_grow grows each hole by a disc of that many pixels before it is filled (so an outline or
shadow the mask missed goes too); --mask_feather blends the fill into the image over a band of
that width around the (grown) hole instead of pasting it with a hard edge: those pixels change,
and pixels farther out stay identical to the input (`inpainting.inference.masktools`).
Guided (sketch) v2 models take the lines the fill should follow as an image like a mask (white
lines on black, only the part in the hole counts); without one they fill without lines.

Large images (`inpainting.inference.highres`): --hr=native (default) inpaints the whole image at full
resolution; above about 1.5 megapixels it runs layer by layer in strips and tiles
(`inpainting.inference.streaming`, memory linear in the area, progress on stderr), takes minutes from
about 2048x2048 on (much less with --attention=hole_only) and is refused where it would not fit
in memory. --hr=resize inpaints it at a working size (long side --hr_size,
default 512) and enlarges the fill into the holes: for large holes, but the fill has the
working size's detail only. --hr=crop inpaints crops around the holes at full resolution
(--hr_margin pixels of context, at least each hole's own width; crops larger than --hr_size are
downscaled): for small holes in large images. With several crops each is reported on stderr.
"""

import os
import sys
import time

from absl import app, flags

from inpainting import imageio
from inpainting.config import ATTENTIONS
from inpainting.errors import ImageError, InpaintingError
from inpainting.inference import highres, masktools

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("checkpoint", None,
                        "Checkpoint directory of this project (from training or inpainting.checkpoints.convert), a "
                        "checkpoint prefix inside one, an original DeepFill TF1 checkpoint folder, or a model.onnx "
                        "from export.py --onnx.")
    flags.DEFINE_string("image", None, "Image to inpaint (png, jpg, webp, bmp, tif).")
    flags.DEFINE_string("mask", None, "Mask of --image, or one mask for every image of --image_dir. "
                        + imageio.MASK_HELP[0].upper() + imageio.MASK_HELP[1:] + ".")
    flags.DEFINE_string("output", None, "Where to write the inpainted --image; the format follows "
                        "the extension.")
    flags.DEFINE_string("flow", None, "Optional: where to write the colour-coded attention flow of "
                        "--image (PNG, same size as the image; hue = direction, saturation = "
                        "distance each region was copied from).")
    flags.DEFINE_string("image_dir", None, "Folder of images to inpaint (searched recursively, "
                        "except --output_dir and --flow_dir if they are inside it); an image that "
                        "fails is reported and the others are still inpainted.")
    flags.DEFINE_string("mask_dir", None, "Folder of masks for --image_dir, matched by relative path "
                        "and file name without extension.")
    flags.DEFINE_string("output_dir", None, "Folder for the inpainted images of --image_dir (PNG).")
    flags.DEFINE_string("flow_dir", None, "Optional folder for the attention flow PNGs of --image_dir.")
    flags.DEFINE_string("sketch", None, "Guided v2 models: lines the fill of --image should follow, an "
                        "image of its size with white lines on black (only the part in the hole counts).")
    flags.DEFINE_string("sketch_dir", None, "Guided v2 models: folder of sketches for --image_dir, "
                        "matched like --mask_dir; images without one are filled without lines.")
    flags.DEFINE_bool("overwrite", False, "Replace output files that already exist.")
    flags.DEFINE_enum("attention", "matmul", [*ATTENTIONS, "hole_only"],
                      "Contextual attention: matmul (fast), patches (the reference formulation), or "
                      "hole_only (approximate: only the part of the image within about 16 pixels "
                      "of the holes is matched, the rest copies itself; much faster on large "
                      "images with small holes, see inpainting.inference.streaming).")
    flags.DEFINE_integer("attention_memory_mb", 1024, "Memory budget of contextual attention (matmul): "
                         "larger images compute its score matrix in blocks that fit, with the same "
                         "result, so memory grows linearly with the image area instead of with its "
                         "square. 0: no budget (one piece).")
    flags.DEFINE_string("hr", "native", "How to inpaint large images: native (the whole image at "
                        "full resolution, streamed above 1.5 megapixels; slow from about 2048x2048 "
                        "on, and refused where it would not fit in memory), resize (the whole image at "
                        "--hr_size, the fill enlarged into the holes: for large holes, with the "
                        "working size's detail) or crop (crops around the holes at full "
                        "resolution with --hr_margin of context: for small holes in large images).")
    flags.DEFINE_integer("hr_size", highres.DEFAULT_WORK_SIZE, "--hr=resize: long side of the "
                         "working image (smaller images run at full size); --hr=crop: crops with "
                         f"a longer side are downscaled to it. At least {highres.MIN_WORK_SIZE}.")
    flags.DEFINE_integer("hr_margin", highres.DEFAULT_MARGIN, "--hr=crop: context in pixels around "
                         "each hole's bounding box, at least the hole's own width; holes whose "
                         "boxes with context overlap share a crop. 0 or more.")
    flags.DEFINE_string("mask_grow", "0", "Pixels to grow each hole by (a disc) before it is filled, "
                        "so an outline or shadow the mask missed is filled too. 0 (default) fills the "
                        "mask as it is; at most the image's long side.")
    flags.DEFINE_string("mask_feather", "0", "Width in pixels of the band around the (grown) hole over "
                        "which the fill is blended into the image with a smooth weight, so it has no "
                        "hard edge; those pixels change, pixels farther out stay identical. 0 "
                        "(default) pastes the fill with a hard edge; at most the image's long side.")


def _jobs():
    """[(image, mask, output, flow)] from the flags; raises UsageError for inconsistent flags."""
    single = FLAGS.image is not None
    folder = FLAGS.image_dir is not None
    if single == folder:
        raise app.UsageError("give either --image (with --mask and --output) or --image_dir (with "
                             "--mask_dir or --mask, and --output_dir)")
    if single:
        for name in ("mask", "output"):
            if getattr(FLAGS, name) is None:
                raise app.UsageError(f"--image needs --{name}")
        for name in ("mask_dir", "output_dir", "flow_dir", "sketch_dir"):
            if getattr(FLAGS, name) is not None:
                raise app.UsageError(f"--{name} goes with --image_dir, not --image")
        return [(FLAGS.image, FLAGS.mask, FLAGS.output, FLAGS.flow, FLAGS.sketch)]
    if FLAGS.output_dir is None:
        raise app.UsageError("--image_dir needs --output_dir")
    if (FLAGS.mask_dir is None) == (FLAGS.mask is None):
        raise app.UsageError("--image_dir needs exactly one of --mask_dir or --mask")
    for name in ("output", "flow", "sketch"):
        if getattr(FLAGS, name) is not None:
            raise app.UsageError(f"--{name} goes with --image, not --image_dir (use --{name}_dir)")
    for name in ("mask_dir", "sketch_dir"):
        folder = getattr(FLAGS, name)
        if folder is not None and not os.path.isdir(folder):
            problem = "not a folder" if os.path.exists(folder) else "no such folder"
            raise imageio.ImageError(f"--{name}={folder}: {problem}; give the folder that holds the "
                                     f"{name[:-4]}s of --image_dir")
    jobs = []
    for rel in _inputs(FLAGS.image_dir, FLAGS.output_dir, FLAGS.flow_dir):
        stem = os.path.splitext(rel)[0] + ".png"
        mask = FLAGS.mask or imageio.find_mask_for(rel, FLAGS.mask_dir)
        flow = os.path.join(FLAGS.flow_dir, stem) if FLAGS.flow_dir else None
        sketch = (imageio.find_mask_for(rel, FLAGS.sketch_dir, required=False, what="sketch")
                  if FLAGS.sketch_dir else None)
        jobs.append((os.path.join(FLAGS.image_dir, rel), mask, os.path.join(FLAGS.output_dir, stem), flow,
                     sketch))
    if not jobs:
        raise imageio.ImageError(f"{FLAGS.image_dir}: no images found "
                                 f"({', '.join(imageio.IMAGE_EXTENSIONS)})")
    return jobs


def _inputs(image_dir, *output_dirs):
    """The images of `image_dir` (relative paths), without those inside an output folder below it,
    so that a second run does not take the first one's results for inputs."""
    root = os.path.realpath(image_dir)
    skip = [os.path.realpath(folder) for folder in output_dirs if folder]
    skip = [folder for folder in skip if folder != root and os.path.commonpath([root, folder]) == root]
    kept = []
    for rel in imageio.list_images(image_dir):
        parent = os.path.realpath(os.path.dirname(os.path.join(image_dir, rel)))
        if not any(os.path.commonpath([folder, parent]) == folder for folder in skip):
            kept.append(rel)
    return kept


def _check_outputs(jobs):
    """Fails before any work if an output would replace an input, another output or, without
    --overwrite, a file."""
    inputs = {os.path.normcase(os.path.realpath(p)) for job in jobs for p in (job[0], job[1], job[4]) if p}
    planned = {}
    for job in jobs:
        for kind, path in (("output", job[2]), ("flow", job[3])):
            if path is None:
                continue
            real = os.path.normcase(os.path.realpath(path))
            if real in inputs:
                raise imageio.ImageError(f"{path}: output would replace an input file; choose another path")
            if real in planned:
                raise imageio.ImageError(
                    f"{path}: would be written twice, as the {planned[real][0]} of {planned[real][1]} "
                    f"and as the {kind} of {job[0]}; rename one of the images or write outputs and "
                    "flows to different paths")
            planned[real] = (kind, job[0])
            if os.path.exists(path) and not FLAGS.overwrite:
                raise imageio.ImageError(f"{path}: exists; pass --overwrite to replace it")


def _check_flags():
    """Raises InpaintingError for --hr, --hr_size, --hr_margin, --mask_grow or --mask_feather values
    that cannot work (the last two are checked against each image when it is read)."""
    if FLAGS.hr not in highres.MODES:
        raise InpaintingError(f"--hr must be one of {', '.join(highres.MODES)}, got {FLAGS.hr!r}")
    if FLAGS["hr_size"].present and FLAGS.hr == "native":
        raise InpaintingError("--hr_size goes with --hr=resize or --hr=crop")
    if FLAGS["hr_margin"].present and FLAGS.hr != "crop":
        raise InpaintingError("--hr_margin goes with --hr=crop")
    if FLAGS.hr_size < highres.MIN_WORK_SIZE:
        raise InpaintingError(f"--hr_size must be at least {highres.MIN_WORK_SIZE}, got {FLAGS.hr_size}")
    if FLAGS.hr_margin < 0:
        raise InpaintingError(f"--hr_margin must be 0 or more, got {FLAGS.hr_margin}")
    for name in masktools.PARAMETERS:
        masktools.parse_pixels(getattr(FLAGS, name), name)


def _report_crop(done, total, what):
    """Progress of --hr=crop: one line per crop when an image has several."""
    if total > 1:
        print(f"  crop {done}/{total}: {what}", file=sys.stderr)


class _StreamProgress:
    """Progress of a streamed (large) image: a line on stderr at most every `every` seconds."""

    def __init__(self, every=10.0):
        self.every = every
        self.start = self.last = time.perf_counter()

    def __call__(self, done, total, what):
        now = time.perf_counter()
        if done == 1 and what == "stage1":
            self.start = self.last = now
        if now - self.last >= self.every:
            self.last = now
            unit = "tiles" if what == "attention" else "layers"
            print(f"  {what}: {done}/{total} {unit}, {now - self.start:.0f}s", file=sys.stderr)


def main(argv):
    from inpainting import cli

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.checkpoint is None:
        raise app.UsageError("--checkpoint is required")
    if FLAGS.attention_memory_mb < 0:
        raise app.UsageError("--attention_memory_mb must be 0 (no budget) or positive")
    with cli.user_errors():
        _check_flags()
        jobs = _jobs()
        _check_outputs(jobs)
        inpainter = None
        failed = 0
        for i, (image_path, mask_path, output, flow, sketch_path) in enumerate(jobs, 1):
            start = time.perf_counter()
            try:
                image = imageio.read_image(image_path)
                mask = imageio.read_mask(mask_path, size=image.size)
                sketch = imageio.read_mask(sketch_path, size=image.size) if sketch_path else None
                masktools.check(FLAGS.mask_grow, FLAGS.mask_feather, image.size, image_path)
                if inpainter is None:  # inputs are checked before TensorFlow and the model load
                    inpainter = _load_inpainter()
                from inpainting.inference.inpainter import inpaint_image

                inpaint_image(inpainter, image, mask, output, flow, FLAGS.overwrite, sketch)
            except ImageError as err:
                if FLAGS.image is not None:
                    raise
                failed += 1  # a folder goes on with its other images
                print(f"[{i}/{len(jobs)}] failed: {cli.message(err)}", file=sys.stderr)
                continue
            note = "  (the mask has no hole: output equals input)" if not mask.any() else ""
            print(f"[{i}/{len(jobs)}] {output}  hole {100 * mask.mean():.1f}%  "
                  f"{time.perf_counter() - start:.2f}s{note}", file=sys.stderr)
        if failed:
            raise InpaintingError(f"{failed} of {len(jobs)} images failed (each is named above); the "
                                  f"other {len(jobs) - failed} were written")


class _RunnerInpainter:
    """An ONNX model's runner, called like `inpainter.Inpainter` so `HighResInpainter` takes it."""

    def __init__(self, runner):
        self.runner = runner

    def check_size(self, height, width, path="image"):
        from inpainting.inference import inpainter

        inpainter.check_size(height, width, path)

    def __call__(self, rgb, mask, path="image", sketch=None):
        return self.runner.run(rgb, mask, path, sketch)._asdict()


def _load_inpainter():
    """The `HighResInpainter` of the flags' checkpoint (or .onnx model) and settings."""
    from inpainting.checkpoints import store
    from inpainting.inference.inpainter import Inpainter

    if FLAGS.checkpoint.endswith(".onnx"):
        from inpainting.inference import runners

        for name in ("attention", "attention_memory_mb"):
            if FLAGS[name].present:
                raise InpaintingError(f"--{name} does not apply to an .onnx model (its attention is "
                                      "fixed at export); leave it out")
        return highres.HighResInpainter(_RunnerInpainter(runners.load(FLAGS.checkpoint)), FLAGS.hr,
                                        FLAGS.hr_size, FLAGS.hr_margin, _report_crop)

    implementation = "patches" if FLAGS.attention == "patches" else "matmul"
    budget = FLAGS.attention_memory_mb if implementation == "matmul" else 0
    generator = store.load_generator(FLAGS.checkpoint, implementation,
                                     attention_memory_mb=budget or None)
    mode = "hole_only" if FLAGS.attention == "hole_only" else "exact"
    return highres.HighResInpainter(Inpainter(generator, mode, _StreamProgress()), FLAGS.hr,
                                    FLAGS.hr_size, FLAGS.hr_margin, _report_crop,
                                    *(masktools.parse_pixels(getattr(FLAGS, name), name)
                                      for name in masktools.PARAMETERS))

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up notices off the console
    define_flags()
    app.run(main)
