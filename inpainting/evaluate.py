"""Measure how well a model fills holes in complete images, optionally next to OpenCV's inpainting.

    python -m inpainting.evaluate --checkpoint=PATH --images=DIR (--masks=DIR | --mask=center |
        --mask=FILE) --output_dir=DIR [--baseline=telea,ns] [--baseline_radius=3] [--overwrite]
        [--limit=N]

Every image's hole is hidden (its pixels are set to 0 before any method sees the image), filled
by each method and compared with the original pixels. The evaluated result is the 8-bit RGB
image a user gets: the method's fill rounded and clipped to 0..255 inside the hole (mask > 0.5),
the input's pixels outside it; the metrics are those of `inpainting.metrics`. Images are
evaluated in their 8-bit RGB form (`imageio.LoadedImage.rgb`: 16-bit values scaled to 8 bits,
gray replicated to three channels, alpha dropped) and must be at least 11x11 pixels (SSIM's
window). An image whose mask has no hole is its own result and has no hole metrics.

The methods are `model` (the network at --checkpoint) and the --baseline methods: `telea` and
`ns` run cv2.inpaint with INPAINT_TELEA or INPAINT_NS on the same image and mask.

Outputs in --output_dir (existing files are replaced only with --overwrite; each is written to
a temporary file that is then renamed into place):
    per_image.csv  one row per image and method: image (path relative to --images), method,
                   hole_fraction (share of the image's pixels in the hole), then the metrics of
                   `metrics.METRIC_NAMES`. Hole metrics are empty where the mask has no hole;
                   a PSNR reads inf where the result equals the original exactly.
    summary.json   {"settings": {...}, "methods": {method: {"images", "images_with_hole",
                   "mean"}}}. The settings are checkpoint, runner (how the model was loaded, e.g.
                   "checkpoint"), images, mask_mode ("folder", "center" or "file"), mask_path
                   (the --masks folder or --mask file), baseline_radius (null without
                   --baseline) and limit. "mean" holds the mean hole_fraction and the mean of
                   every metric, the `*_hole` ones over the images with a hole only. A mean
                   that is not a finite number is written as null: hole metrics when no image
                   has a hole (images_with_hole is 0), or a PSNR mean that is +inf because
                   some image's region was reproduced exactly (per_image.csv shows which).
"""

import collections
import csv
import io
import itertools
import math
import os
import sys
import time

import numpy as np
from absl import app, flags

from inpainting import classical, imageio, metrics
from inpainting.errors import InpaintingError
from inpainting.files import write_json, write_text

FLAGS = flags.FLAGS

MODEL = "model"
BASELINES = classical.METHODS
CENTER = "center"
CSV_FILE = "per_image.csv"
SUMMARY_FILE = "summary.json"
COLUMNS = ("image", "method", "hole_fraction") + metrics.METRIC_NAMES

Sample = collections.namedtuple("Sample", "name rgb mask")
Sample.__doc__ = """One image to evaluate: `name` for the report, `rgb` the complete uint8 [H, W, 3]
RGB image (the ground truth), `mask` [H, W] with the hole > 0.5."""


def define_flags():
    """Defines the command-line flags (only when run as a program)."""
    flags.DEFINE_string("checkpoint", None, "The model to evaluate: checkpoint directory, "
                        "SavedModel export folder or .tflite file.")
    flags.DEFINE_string("images", None, "Folder of complete images (searched recursively); their "
                        "holes are filled and compared with the original pixels.")
    flags.DEFINE_string("masks", None, "Folder of masks, matched to the images by relative path "
                        "and file name without extension (any image extension). Each "
                        + imageio.MASK_HELP + ".")
    flags.DEFINE_string("mask", None, "'center': a box of half the image's height and width in "
                        "its centre (H//2 x W//2 pixels starting (H - H//2)//2 rows from the top "
                        "and (W - W//2)//2 columns from the left: rows and columns 64..191 of a "
                        "256x256 image); or a mask file used for every image (all images must have "
                        "its size; write ./center for a file named center).")
    flags.DEFINE_string("output_dir", None, f"Folder for {CSV_FILE} and {SUMMARY_FILE}.")
    flags.DEFINE_list("baseline", [], "Comma-separated OpenCV methods to evaluate next to the "
                      "model: telea (cv2.INPAINT_TELEA, fast marching) and ns (cv2.INPAINT_NS, "
                      "Navier-Stokes).")
    flags.DEFINE_integer("baseline_radius", 3, "Neighbourhood radius in pixels of the --baseline "
                         "methods (cv2.inpaint's inpaintRadius).")
    flags.DEFINE_bool("overwrite", False, f"Replace {CSV_FILE} and {SUMMARY_FILE} if they exist.")
    flags.DEFINE_integer("limit", None, "Evaluate only the first N images (sorted by path).")


def center_mask(size):
    """The --mask=center hole of an image.

    Args:
        size: (height, width) of the image.

    Returns:
        float32 [H, W]: 1 in a box of H//2 x W//2 pixels whose top-left corner is at row
        (H - H//2)//2 and column (W - W//2)//2 (rows and columns 64..191 for 256x256), 0
        elsewhere.
    """
    height, width = size
    mask = np.zeros((height, width), np.float32)
    top, left = (height - height // 2) // 2, (width - width // 2) // 2
    mask[top:top + height // 2, left:left + width // 2] = 1
    return mask


def baseline(name, radius=classical.DEFAULT_RADIUS):
    """A fill function running OpenCV's inpainting (`inpainting.classical`), called like a model
    runner.

    Args:
        name: "telea" (cv2.INPAINT_TELEA) or "ns" (cv2.INPAINT_NS).
        radius: the neighbourhood radius in pixels (cv2.inpaint's inpaintRadius).

    Returns:
        fill(rgb, mask) -> float32 [H, W, 3] RGB in 0..255, for uint8 [H, W, 3] RGB and an
        [H, W] mask whose pixels above 0.5 are filled.

    Raises:
        ValueError: an unknown `name`.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")

    def fill(rgb, mask):
        return classical.inpaint(rgb, mask, name, radius)

    return fill


def _summarize(rows, methods):
    """Per method: images, images_with_hole and the means of hole_fraction and the metrics."""
    summary = {}
    for name in methods:
        mine = [row for row in rows if row["method"] == name]
        means = {column: metrics.mean_of(row[column] for row in mine) for column in COLUMNS[2:]}
        summary[name] = {"images": len(mine),
                         "images_with_hole": sum(row["hole_fraction"] > 0 for row in mine),
                         "mean": means}
    return summary


def _progress_line(index, total, sample_rows, seconds):
    """`[i/n] image  hole x%  L1 in the hole per method  time` for the progress output."""
    head = sample_rows[0]
    count = f"{index}/{total}" if total else str(index)
    text = f"[{count}] {head['image']}  hole {100 * head['hole_fraction']:.1f}%  "
    if head["hole_fraction"] > 0:
        text += "L1 hole " + "  ".join(f"{row['method']} {row['l1_hole']:.2f}%"
                                       for row in sample_rows)
    else:
        text += "no hole: the image is its own result"
    return text + f"  {seconds:.2f}s"


def _fill(method, fill, image, hidden, mask):
    """Runs one method on copies of the inputs; errors it raises name the image and the method."""
    try:
        return fill(hidden.copy(), mask.copy())
    except InpaintingError as err:  # keeps the parameter it names, which the command line shows as a flag
        raise type(err)(f"{image} ({method}): {err.template}", parameter=err.parameter) from None


def evaluate(methods, samples, total=None, progress=None):
    """Fills every sample's hole with every method and measures the results.

    Args:
        methods: {name: fill}, each fill(rgb, mask) -> float [H, W, 3] RGB in 0..255 taking
            uint8 [H, W, 3] RGB with the hole's pixels set to 0 and a float32 {0, 1} [H, W]
            mask; e.g. a runner from `runners.load` or a `baseline`.
        samples: iterable of `Sample`s (read lazily if it is a generator).
        total: the number of samples, shown in the progress lines; None if unknown.
        progress: a text stream for one progress line per sample (e.g. sys.stderr), or None.

    A sample whose mask has no hole is its own result: the methods are not run on it.

    Returns:
        (rows, summary): rows is a list of dicts with the keys of `COLUMNS`, one per sample and
        method, in sample then `methods` order (hole metrics NaN where the mask has no hole);
        summary maps each method to {"images": n, "images_with_hole": k, "mean": {column: mean}}
        for the numeric columns, the `*_hole` means over the samples with a hole only, NaN
        where no sample contributes and math.inf where a PSNR is infinite.

    Raises:
        ValueError: a sample's shapes are wrong, an image is smaller than 11x11, or a method
            returned a fill of the wrong shape or with non-finite values.
    """
    rows = []
    for index, sample in enumerate(samples, 1):
        start = time.perf_counter()
        rgb = np.asarray(sample.rgb)
        hole = np.asarray(sample.mask) > 0.5
        if rgb.dtype != np.uint8 or rgb.shape[2:] != (3,) or hole.shape != rgb.shape[:2]:
            raise ValueError(f"{sample.name}: expected uint8 [H, W, 3] RGB and an [H, W] mask, "
                             f"got {rgb.dtype} {rgb.shape} and {hole.shape}")
        hidden = np.where(hole[:, :, None], np.uint8(0), rgb)
        binary = hole.astype(np.float32)
        fraction = float(hole.mean())
        sample_rows = []
        for name, fill in methods.items():
            result = rgb
            if hole.any():
                result = metrics.compose(rgb, _fill(name, fill, sample.name, hidden, binary), hole)
            values = metrics.image_metrics(result, rgb, hole)
            sample_rows.append({"image": sample.name, "method": name, "hole_fraction": fraction,
                                **values})
        rows += sample_rows
        if progress is not None:
            print(_progress_line(index, total, sample_rows, time.perf_counter() - start),
                  file=progress, flush=True)
    return rows, _summarize(rows, methods)


def _cell(value):
    """A CSV cell: full-precision floats, empty for NaN, inf for infinity."""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return value


def write_csv(path, rows):
    """Writes evaluation rows as CSV with the columns of `COLUMNS` (see the module docstring)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([_cell(row[column]) for column in COLUMNS] for row in rows)
    write_text(path, buffer.getvalue())


def _json_number(value):
    """A float for JSON: None unless finite."""
    return value if math.isfinite(value) else None


def write_summary(path, summary, settings):
    """Writes summary.json: the settings and, per method, the counts and the means (null where
    a mean is not finite)."""
    methods = {}
    for name, entry in summary.items():
        means = {key: _json_number(value) for key, value in entry["mean"].items()}
        methods[name] = {**entry, "mean": means}
    write_json(path, {"settings": settings, "methods": methods})


def format_table(summary):
    """The summary as a text table: one row per measure, one column per method."""
    names = list(summary)
    first = max(len(column) for column in COLUMNS)
    widths = [max(len(name), 9) for name in names]

    def line(label, cells):
        padded = (f"  {cell:>{width}}" for cell, width in zip(cells, widths))
        return f"{label:<{first}}" + "".join(padded)

    def number(value):
        return "-" if math.isnan(value) else f"{value:.4f}"

    lines = [line("", names), line("images", [str(summary[name]["images"]) for name in names])]
    lines += [line(column, [number(summary[name]["mean"][column]) for name in names])
              for column in COLUMNS[2:]]
    return "\n".join(lines)


def _jobs():
    """[(name, image path, mask path or None for the centre box)] from the flags."""
    images = imageio.list_images(FLAGS.images)
    if not images:
        raise imageio.ImageError(f"{FLAGS.images}: no images found "
                                 f"({', '.join(imageio.IMAGE_EXTENSIONS)})")
    images = images[:FLAGS.limit]
    if FLAGS.masks is not None and not os.path.isdir(FLAGS.masks):
        problem = "not a folder" if os.path.exists(FLAGS.masks) else "no such folder"
        raise imageio.ImageError(f"--masks={FLAGS.masks}: {problem}; give the folder of masks that "
                                 "mirrors --images (or --mask=FILE for one mask file)")
    jobs = []
    for rel in images:
        if FLAGS.masks is not None:
            mask = imageio.find_mask_for(rel, FLAGS.masks)
        else:
            mask = None if FLAGS.mask == CENTER else FLAGS.mask
        jobs.append((rel, os.path.join(FLAGS.images, rel), mask))
    return jobs


def _read_sample(job, shared_mask):
    """Reads one job's image and mask; `shared_mask` is the --mask file's mask, if given."""
    name, image_path, mask_path = job
    image = imageio.read_image(image_path)
    height, width = image.size
    if min(height, width) < metrics.SSIM_WINDOW:
        raise imageio.ImageError(f"{image_path}: {width}x{height} is too small to evaluate; images "
                                 f"need at least {metrics.SSIM_WINDOW}x{metrics.SSIM_WINDOW} "
                                 f"pixels (SSIM's window)")
    if mask_path is None:
        mask = center_mask(image.size)
    elif shared_mask is not None:
        if shared_mask.shape != image.size:
            raise imageio.ImageError(
                f"{mask_path}: mask is {shared_mask.shape[1]}x{shared_mask.shape[0]} but "
                f"{image_path} is {width}x{height} (width x height); with --mask=FILE every "
                f"image must have the mask's size (use --masks=DIR for masks of other sizes)")
        mask = shared_mask
    else:
        mask = imageio.read_mask(mask_path, size=image.size)
    return Sample(name, image.rgb, mask)


def _check_outputs():
    """Fails before any work if an output exists and --overwrite is not given, or is a folder."""
    if os.path.exists(FLAGS.output_dir) and not os.path.isdir(FLAGS.output_dir):
        raise InpaintingError(f"{FLAGS.output_dir}: is a file; --output_dir must be a folder")
    for name in (CSV_FILE, SUMMARY_FILE):
        path = os.path.join(FLAGS.output_dir, name)
        if os.path.isdir(path):
            raise InpaintingError(f"{path}: is a folder; remove it or choose another --output_dir")
        if os.path.exists(path) and not FLAGS.overwrite:
            raise InpaintingError(f"{path}: exists; pass --overwrite to replace it")


def _check_flags(argv):
    """Raises UsageError for missing, conflicting or invalid flags."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in ("checkpoint", "images", "output_dir"):
        if getattr(FLAGS, name) is None:
            raise app.UsageError(f"--{name} is required")
    if (FLAGS.masks is None) == (FLAGS.mask is None):
        raise app.UsageError("give exactly one of --masks=DIR, --mask=center or --mask=FILE")
    unknown = [name for name in FLAGS.baseline if name not in BASELINES]
    if unknown:
        raise app.UsageError(f"--baseline: unknown method {', '.join(unknown)}; "
                             f"choose from {', '.join(BASELINES)}")
    if len(set(FLAGS.baseline)) != len(FLAGS.baseline):
        raise app.UsageError("--baseline: a method is listed twice")
    if FLAGS.baseline_radius < 1:
        raise app.UsageError("--baseline_radius must be at least 1")
    if FLAGS["baseline_radius"].present and not FLAGS.baseline:
        raise app.UsageError("--baseline_radius goes with --baseline")
    if FLAGS.limit is not None and FLAGS.limit < 1:
        raise app.UsageError("--limit must be at least 1")


def main(argv):
    """Checks the flags and inputs, loads the model, evaluates and writes the reports."""
    from inpainting import cli

    _check_flags(argv)
    with cli.user_errors():
        _check_outputs()
        jobs = _jobs()
        shared_mask = None
        if FLAGS.mask not in (None, CENTER):
            shared_mask = imageio.read_mask(FLAGS.mask)
        samples = (_read_sample(job, shared_mask) for job in jobs)
        first = next(samples)  # inputs are checked before TensorFlow and the model load
        from inpainting.inference import runners

        runner = runners.load(FLAGS.checkpoint)
        methods = {MODEL: runner}
        methods.update((name, baseline(name, FLAGS.baseline_radius)) for name in FLAGS.baseline)
        rows, summary = evaluate(methods, itertools.chain([first], samples), total=len(jobs),
                                 progress=sys.stderr)
        os.makedirs(FLAGS.output_dir, exist_ok=True)
        write_csv(os.path.join(FLAGS.output_dir, CSV_FILE), rows)
        mode = "folder" if FLAGS.masks is not None else CENTER if FLAGS.mask == CENTER else "file"
        settings = {"checkpoint": FLAGS.checkpoint, "runner": runner.kind, "images": FLAGS.images,
                    "mask_mode": mode,
                    "mask_path": {"folder": FLAGS.masks, "file": FLAGS.mask}.get(mode),
                    "baseline_radius": FLAGS.baseline_radius if FLAGS.baseline else None,
                    "limit": FLAGS.limit}
        write_summary(os.path.join(FLAGS.output_dir, SUMMARY_FILE), summary, settings)
        print(f"wrote {CSV_FILE} and {SUMMARY_FILE} to {FLAGS.output_dir}", file=sys.stderr)
        print(format_table(summary))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up notices off the console
    define_flags()
    app.run(main)
