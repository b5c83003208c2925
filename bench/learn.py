"""Whether a training recipe learns on real photos: a learning curve on held-out photos, as JSON lines.

    .venv/bin/python bench/learn.py --config=configs/demo.cfg --images=../shared/data/photos-1000 \\
        --held_out=100 --minutes=60 --eval_every_minutes=10 --output_dir=runs/learn-demo \\
        [--seed=0] [--eval_size=128] [--checkpoint_every=10] [-- more train.py flags]
    .venv/bin/python bench/learn.py ... --steps=2000 [--eval_every_steps=200] ...

Split. The images under --images (jpg, jpeg, png, webp, bmp, recursively, as train.py's
folder:DIR reads them) are sorted by their path relative to the folder. With n images and
h = --held_out, k = n // h: the held-out photos are those at positions k-1, 2k-1, ..., hk-1
(0-based), i.e. every k-th file starting with the k-th (the 10th, 20th, ..., 1000th of 1000 for
h = 100). The split depends on the file names only: the same for every run, config and seed.
No photo is copied: OUTPUT/train.flist and OUTPUT/held_out.flist list the absolute paths, and
train.py reads --dataset=flist:OUTPUT/train.flist. Before training, the two lists are checked
to share no file (by real path), and at the first evaluation that the trainer's recorded
dataset is that list.

Training. train.py runs as a child process with --flagfile=CONFIG, the flags after `--`, then
--dataset=flist:OUTPUT/train.flist --model_dir=OUTPUT/model --seed=SEED --max_minutes=0 and
--checkpoint_every=N (these are set here and may not be given after `--`). Its output goes to
OUTPUT/train.log. Training minutes are the trainer's wall-clock time since it was started
(its start-up included) minus the time it was paused for evaluations.
    --minutes=M: training stops (SIGTERM: the trainer saves after the current step) once M
        training minutes have passed, or earlier at the config's --max_steps. A checkpoint is
        saved every --checkpoint_every steps (default 10): at each multiple of
        --eval_every_minutes the first checkpoint saved at or after that training minute is
        evaluated, so a smaller value evaluates closer to the mark, a larger one saves less often.
    --steps=N: training runs to step N (--max_steps=N) with a checkpoint every
        --eval_every_steps steps (default N // 10), each of which is evaluated.
The last checkpoint is evaluated at the end. During an evaluation the trainer is paused
(SIGSTOP, then SIGCONT), so training and evaluation do not share the CPU.

Evaluation. Each held-out photo is read as 8-bit RGB, its largest centred square is cut out
(side min(H, W), starting at row (H - side) // 2 and column (W - side) // 2) and resized to
--eval_size x --eval_size (cv2.INTER_AREA when shrinking, cv2.INTER_CUBIC when enlarging).
Two kinds of holes, the same for every run:
    center     `inpainting.evaluate.center_mask`: a box of half the height and half the width
               in the middle, a quarter of the area.
    free_form  `inpainting.data.masks.brush_stroke_mask` (DeepFill v2's brush strokes) with
               the stroke widths of the default `StrokeConfig` scaled by eval_size / 256,
               rounded (the original draws them for 256x256 images); the key of attempt
               a = 0, 1, ... is stream_seed(FREE_FORM_SEED, crc32 of the photo's relative path
               with / separators, a), and the first attempt whose hole covers 10% to 50% of the
               image (inclusive) is the photo's mask.
`inpainting.evaluate.evaluate` fills the holes with the latest checkpoint ("model", through
`inpainting.inference.runners.load`) and, once per run, with OpenCV's Telea and Navier-Stokes
inpainting (radius 3); the means over the held-out photos are reported.

Output. One JSON line per evaluation and kind of hole on stdout, also appended to
OUTPUT/curve.jsonl: {"minutes": training minutes when the checkpoint was saved, "step",
"images_seen": step x batch size (the images of the generator updates; a v1 step also reads
critic_steps batches for its critics), "masks": "center" or "free_form", "model", "telea",
"ns": each {l1_hole, l1_image, psnr_hole, psnr_image, ssim_hole, ssim_image} (the names of
`inpainting.metrics`; null where not finite), "config", "seed", "checkpoint", "held_out",
"eval_size"}. After each evaluation OUTPUT/learning_curve.png (against training minutes) and
OUTPUT/learning_curve_images.png (against images seen) are redrawn with OpenCV: PSNR, SSIM and
L1 in the hole for both kinds of holes, the model's curve with Telea and NS as horizontal lines.
At the end OUTPUT/heldout_grid.png shows the last checkpoint's fills of the first 4 held-out
photos, both kinds of holes, as bench/grid.py draws them (`chart.fills_grid`: masked | Telea |
model | original).
OUTPUT/settings.json records the split, the schedule and the train.py command.

Exit status: 0 done; 2 a usage error (one `error: ...` line: a missing folder or config, too
few images for --held_out, an --output_dir holding an earlier run); 1 train.py failed (its
error line is repeated); 130 (Ctrl-C) or 143 (SIGTERM): training was stopped (it saves its
checkpoint) and the curve of the evaluations so far was written.
"""

import argparse
import gc
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import chart  # noqa: E402
import common  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(REPO, "train.py")
MASK_KINDS = ("center", "free_form")
METHODS = ("model", "telea", "ns")
METRICS = ("l1_hole", "l1_image", "psnr_hole", "psnr_image", "ssim_hole", "ssim_image")
FREE_FORM_SEED = 2017  # folded with each photo's name into the keys of its free-form mask
FREE_FORM_RANGE = (0.1, 0.5)  # accepted share of the image in the hole, inclusive
FREE_FORM_ATTEMPTS = 1000
STROKE_REFERENCE_SIZE = 256  # the image size the default stroke widths are drawn for
POLL_SECONDS = 0.25
# train.py flags this script sets, and the flag of this script that sets each.
RESERVED = {"dataset": "--images", "model_dir": "--output_dir", "seed": "--seed",
            "max_minutes": "--minutes", "max_steps": "--steps",
            "checkpoint_every": "--checkpoint_every or --eval_every_steps", "flagfile": "--config"}
TRAIN_LIST, HELD_OUT_LIST, CURVE_FILE = "train.flist", "held_out.flist", "curve.jsonl"
FIGURES = {"minutes": "learning_curve.png", "images_seen": "learning_curve_images.png"}
GRID_FILE, GRID_PHOTOS = "heldout_grid.png", 4
COLORS = {"model": (190, 100, 20), "telea": (20, 140, 240), "ns": (60, 160, 60)}  # BGR
PLOTTED = (("psnr_hole", "PSNR in the hole (dB)"), ("ssim_hole", "SSIM in the hole"),
           ("l1_hole", "L1 in the hole (%)"))


class UsageError(Exception):
    """A mistake in the command line or its inputs: one line on stderr, exit status 2."""


class TrainingFailed(Exception):
    """train.py stopped with an error: one line on stderr, exit status 1."""


class Stopped(Exception):
    """SIGINT or SIGTERM reached this script."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Parser(argparse.ArgumentParser):
    """argparse whose errors are UsageErrors (one line, exit status 2)."""

    def error(self, message):
        raise UsageError(message)


def progress(text):
    """A progress line on stderr (stdout carries only the JSON lines)."""
    print(f"learn: {text}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------- the command line

def parse_args(argv):
    """(arguments, train.py flags given after `--`)."""
    own, extra = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="train.py flag file of the recipe")
    parser.add_argument("--images", required=True, help="folder of photos to split")
    parser.add_argument("--held_out", type=int, default=100, help="photos held out for evaluation")
    parser.add_argument("--minutes", type=float, help="training minutes (or --steps)")
    parser.add_argument("--steps", type=int, help="training steps (or --minutes)")
    parser.add_argument("--eval_every_minutes", type=float,
                        help="with --minutes: training minutes between evaluations (default 10)")
    parser.add_argument("--eval_every_steps", type=int,
                        help="with --steps: steps between evaluations (default steps // 10)")
    parser.add_argument("--checkpoint_every", type=int,
                        help="with --minutes: train.py's --checkpoint_every (default 10 steps)")
    parser.add_argument("--output_dir", required=True, help="folder of the lists, model and curves")
    parser.add_argument("--seed", type=int, default=0, help="train.py's --seed")
    parser.add_argument("--eval_size", type=int, default=128, help="side of the evaluated squares")
    args = parser.parse_args(own)
    if (args.minutes is None) == (args.steps is None):
        raise UsageError("give one of --minutes=M or --steps=N")
    if args.minutes is not None:
        if args.eval_every_steps is not None:
            raise UsageError("--eval_every_steps goes with --steps; use --eval_every_minutes")
        if not args.minutes > 0:
            raise UsageError(f"--minutes must be positive, got {args.minutes:g}")
        args.eval_every_minutes = 10.0 if args.eval_every_minutes is None else args.eval_every_minutes
        if not args.eval_every_minutes > 0:
            raise UsageError(f"--eval_every_minutes must be positive, got {args.eval_every_minutes:g}")
        args.checkpoint_every = 10 if args.checkpoint_every is None else args.checkpoint_every
        if args.checkpoint_every < 1:
            raise UsageError(f"--checkpoint_every must be at least 1, got {args.checkpoint_every}")
    else:
        for name in ("eval_every_minutes", "checkpoint_every"):
            if getattr(args, name) is not None:
                raise UsageError(f"--{name} goes with --minutes; with --steps use --eval_every_steps")
        if args.steps < 1:
            raise UsageError(f"--steps must be at least 1, got {args.steps}")
        args.eval_every_steps = args.eval_every_steps or max(1, args.steps // 10)
        if not 1 <= args.eval_every_steps <= args.steps:
            raise UsageError(f"--eval_every_steps must be in 1..{args.steps} (--steps), got "
                             f"{args.eval_every_steps}")
    if args.held_out < 1:
        raise UsageError(f"--held_out must be at least 1, got {args.held_out}")
    if args.eval_size < 16:
        raise UsageError(f"--eval_size must be at least 16, got {args.eval_size}")
    if not os.path.isfile(args.config):
        problem = "is a folder" if os.path.isdir(args.config) else "no such file"
        raise UsageError(f"--config={args.config}: {problem}; give a train.py flag file such as "
                         "configs/demo.cfg")
    if not os.path.isdir(args.images):
        problem = "not a folder" if os.path.exists(args.images) else "no such folder"
        raise UsageError(f"--images={args.images}: {problem}; give the folder of photos to split")
    check_output_dir(args.output_dir)
    return args, extra


def check_output_dir(path):
    """Refuses a file, or a folder that holds an earlier run."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--output_dir={path}: is a file; give a folder")
    for name in ("model", CURVE_FILE):
        if os.path.exists(os.path.join(path, name)):
            raise UsageError(f"--output_dir={path} holds an earlier run ({name}); choose a new folder "
                             "or remove it")


def train_flags(args, extra, train_list, model_dir):
    """train.py's arguments: the config, the flags after `--`, then the ones set here."""
    flags = [f"--flagfile={args.config}", *extra, f"--dataset=flist:{train_list}",
             f"--model_dir={model_dir}", f"--seed={args.seed}", "--max_minutes=0"]
    if args.steps is not None:
        return flags + [f"--max_steps={args.steps}", f"--checkpoint_every={args.eval_every_steps}"]
    return flags + [f"--checkpoint_every={args.checkpoint_every}"]


def resolve_config(flags):
    """The `TrainConfig` train.py will build from `flags` (read here to check them before starting).

    Raises:
        UsageError: an unreadable flag file, an unknown flag or a value train.py refuses.
    """
    from absl import flags as absl_flags

    from inpainting.errors import InpaintingError
    from inpainting.training import flags as train_flag_defs

    values = absl_flags.FlagValues()
    train_flag_defs.define_flags(values)
    try:
        values(["train.py", *flags])
        return train_flag_defs.config_from_flags(values)
    except absl_flags.Error as err:
        raise UsageError(f"--config={flags[0].split('=', 1)[1]} or the flags after --: "
                         f"{str(err).splitlines()[0]}") from None
    except InpaintingError as err:
        raise UsageError(f"the recipe: {err}") from None


def check_reserved(extra):
    """Refuses train.py flags after `--` that this script sets itself."""
    for flag in extra:
        name = flag.lstrip("-").split("=", 1)[0]
        if not flag.startswith("-"):
            raise UsageError(f"unexpected argument {flag!r} after --; give train.py flags as --name=value")
        for reserved, own in RESERVED.items():
            if name in (reserved, f"no{reserved}"):
                raise UsageError(f"--{reserved} after -- is set by this script; use {own}")


# ------------------------------------------------------------------------------------------ the split

def held_out_positions(count, held_out):
    """Positions (0-based) of the held-out files among `count` sorted files: every k-th from the
    k-th, k = count // held_out.

    Raises:
        UsageError: held_out is not in 1..count - 1 (at least one file must remain for training).
    """
    if not 1 <= held_out < count:
        raise UsageError(f"--held_out={held_out} needs at least {held_out + 1} images (one left to "
                         f"train on), but the folder has {count}")
    step = count // held_out
    return [step * (i + 1) - 1 for i in range(held_out)]


def split(images, held_out):
    """(training paths, held-out paths, k) of the images under a folder; see the module docstring."""
    from inpainting.data import sources
    from inpainting.errors import DataError

    try:
        paths = sources.list_image_files(images)
    except DataError as err:
        raise UsageError(f"--images={images}: {err}") from None
    positions = held_out_positions(len(paths), held_out)
    chosen = set(positions)
    held = [os.path.abspath(paths[i]) for i in positions]
    train = [os.path.abspath(path) for i, path in enumerate(paths) if i not in chosen]
    return train, held, len(paths) // held_out


def write_lists(output_dir, train, held):
    """Writes the two file lists and checks, reading them back as train.py does, that they share no
    file; returns (training list path, held-out list path)."""
    from inpainting.data import sources

    for path in train + held:
        if "\n" in path or path != path.strip():
            raise UsageError(f"{path}: a file name with a line break or surrounding spaces cannot go "
                             "into a file list; rename it")
    train_list = os.path.join(output_dir, TRAIN_LIST)
    held_list = os.path.join(output_dir, HELD_OUT_LIST)
    for path, names in ((train_list, train), (held_list, held)):
        with open(path, "w", encoding="utf-8") as file:
            file.write("".join(f"{name}\n" for name in names))
    trained = {os.path.realpath(p) for p in sources.read_file_list(train_list)}
    shared = trained & {os.path.realpath(p) for p in sources.read_file_list(held_list)}
    if shared or len(trained) != len(train):
        raise RuntimeError(f"the training list {train_list} holds held-out photos: {sorted(shared)[:3]}")
    return train_list, held_list


# ------------------------------------------------------------------------------------- the held-out set

def square(rgb, size):
    """The largest centred square of `rgb`, resized to size x size (area when shrinking, cubic when
    enlarging)."""
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = np.ascontiguousarray(rgb[top:top + side, left:left + side])
    if side == size:
        return crop
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def stroke_config(size):
    """The default `StrokeConfig` with its widths scaled from 256x256 images to `size`."""
    from inpainting.data import masks

    default = masks.StrokeConfig()
    scale = size / STROKE_REFERENCE_SIZE
    low = max(1, round(default.min_width * scale))
    high = max(low + 1, round(default.max_width * scale))
    return masks.StrokeConfig(min_width=low, max_width=high)


def free_form_mask(name, size):
    """The free-form hole of the held-out photo called `name` (its relative path, / separated).

    Returns:
        float32 [size, size], 1 = hole, covering FREE_FORM_RANGE of the image.
    """
    from inpainting.data import masks, sources

    config = stroke_config(size)
    key = zlib.crc32(name.encode("utf-8"))
    for attempt in range(FREE_FORM_ATTEMPTS):
        seed = sources.stream_seed(FREE_FORM_SEED, key, attempt)
        mask = masks.brush_stroke_mask((size, size), seed, config).numpy()[:, :, 0]
        if FREE_FORM_RANGE[0] <= float(mask.mean()) <= FREE_FORM_RANGE[1]:
            return mask
    raise RuntimeError(f"{name}: no free-form mask of {size}x{size} covering "
                       f"{FREE_FORM_RANGE[0]:.0%}-{FREE_FORM_RANGE[1]:.0%} in {FREE_FORM_ATTEMPTS} attempts")


def held_out_samples(held, images, size):
    """{mask kind: [evaluate.Sample]} of the held-out photos."""
    from inpainting import imageio
    from inpainting.errors import InpaintingError
    from inpainting.evaluate import Sample, center_mask

    center = center_mask((size, size))
    samples = {kind: [] for kind in MASK_KINDS}
    root = os.path.abspath(images)
    for path in held:
        name = os.path.relpath(path, root).replace(os.sep, "/")
        try:
            rgb = square(imageio.read_image(path).rgb, size)
        except InpaintingError as err:
            raise UsageError(f"held-out photo {err}; fix or remove it") from None
        samples["center"].append(Sample(name, rgb, center))
        samples["free_form"].append(Sample(name, rgb, free_form_mask(name, size)))
    return samples


def metric_means(summary):
    """The reported metrics of one method's summary entry; None where not finite."""
    means = summary["mean"]
    return {name: means[name] if math.isfinite(means[name]) else None for name in METRICS}


def baselines(samples):
    """{mask kind: {"telea": metrics, "ns": metrics}}, computed once per run."""
    from inpainting import evaluate

    methods = {name: evaluate.baseline(name) for name in ("telea", "ns")}
    result = {}
    for kind, kind_samples in samples.items():
        _, summary = evaluate.evaluate(methods, kind_samples)
        result[kind] = {name: metric_means(summary[name]) for name in methods}
    return result


def evaluate_checkpoint(prefix, samples):
    """{mask kind: the model's metrics} of the checkpoint `prefix`."""
    from inpainting import evaluate
    from inpainting.inference import runners

    runner = runners.load(prefix)
    try:
        return {kind: metric_means(evaluate.evaluate({"model": runner}, kind_samples)[1]["model"])
                for kind, kind_samples in samples.items()}
    finally:
        del runner
        gc.collect()


# ------------------------------------------------------------------------------------------- training

class Trainer:
    """train.py as a child process whose training time excludes the pauses of evaluations."""

    def __init__(self, flags, model_dir, log_path):
        self.model_dir = model_dir
        self.log_path = log_path
        self.command = [sys.executable, TRAIN_SCRIPT, *flags]
        self.log = open(log_path, "wb")
        self.started = time.time()
        self.pauses = []  # (start, end) wall-clock times
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        self.minutes_of = {}  # checkpoint step -> training minutes when it was saved

    def training_seconds(self, moment=None):
        """Training time at wall-clock `moment` (now by default): since the start, minus pauses."""
        moment = time.time() if moment is None else moment
        paused = sum(max(0.0, min(end, moment) - start) for start, end in self.pauses if start < moment)
        return max(0.0, moment - self.started - paused)

    def checkpoints(self):
        """{step: prefix} of the checkpoints kept in the model folder (training minutes of new ones
        are recorded from their index file's modification time)."""
        import tensorflow as tf

        from inpainting.checkpoints import store

        state = tf.train.get_checkpoint_state(self.model_dir)
        found = {}
        for prefix in (state.all_model_checkpoint_paths if state else []):
            prefix = prefix if os.path.isabs(prefix) else os.path.join(self.model_dir, prefix)
            step = store.checkpoint_step(prefix)
            if step not in self.minutes_of:
                try:
                    saved = os.stat(prefix + ".index").st_mtime
                except FileNotFoundError:
                    continue
                self.minutes_of[step] = self.training_seconds(saved) / 60
            found[step] = prefix
        return found

    def pause(self):
        self.process.send_signal(signal.SIGSTOP)
        self.pauses.append((time.time(), math.inf))

    def resume(self):
        start, _ = self.pauses[-1]
        self.pauses[-1] = (start, time.time())
        self.process.send_signal(signal.SIGCONT)

    def running(self):
        return self.process.poll() is None

    def stop(self):
        """Asks the trainer to save after its current step and stop (SIGTERM); waits for it."""
        if self.running():
            if self.pauses and self.pauses[-1][1] == math.inf:
                self.resume()
            self.process.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self):
        status = self.process.wait()
        self.log.close()
        return status

    def error_line(self):
        """The trainer's last `error: ...` line, or its last line."""
        with open(self.log_path, encoding="utf-8", errors="replace") as file:
            lines = [line.strip() for line in file if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        return (errors or lines or ["(no output)"])[-1]


class Curve:
    """The evaluations so far: JSON lines to stdout and curve.jsonl, and the figures."""

    def __init__(self, args, output_dir, batch_size, baseline_metrics, held_out):
        self.args, self.output_dir = args, output_dir
        self.batch_size, self.baselines, self.held_out = batch_size, baseline_metrics, held_out
        self.records = []

    def add(self, step, minutes, prefix, model_metrics):
        for kind in MASK_KINDS:
            record = {"minutes": round(minutes, 4), "step": step, "images_seen": step * self.batch_size,
                      "masks": kind, "model": model_metrics[kind], **self.baselines[kind],
                      "config": self.args.config, "seed": self.args.seed, "checkpoint": prefix,
                      "held_out": self.held_out, "eval_size": self.args.eval_size}
            common.emit(record)
            with open(os.path.join(self.output_dir, CURVE_FILE), "a", encoding="utf-8") as file:
                file.write(json.dumps(record, sort_keys=True) + "\n")
            self.records.append(record)
        self.draw()

    def draw(self):
        """Redraws both figures from the records so far."""
        legend = [("model", COLORS["model"], False), ("OpenCV Telea", COLORS["telea"], False),
                  ("OpenCV Navier-Stokes", COLORS["ns"], True)]
        labels = {"minutes": "training minutes", "images_seen": "images seen (steps x batch size)"}
        for x_key, file_name in FIGURES.items():
            panels = []
            for kind in MASK_KINDS:
                records = [r for r in self.records if r["masks"] == kind]
                hole = "centre holes" if kind == "center" else "free-form holes (10-50%)"
                for metric, title in PLOTTED:
                    panel = chart.Panel(f"{title}, {hole}", labels[x_key])
                    panel.curves.append(chart.Curve("model", COLORS["model"],
                                                    [(r[x_key], r["model"][metric]) for r in records]))
                    for name in ("telea", "ns"):
                        panel.levels.append(chart.Level(name, COLORS[name],
                                                        self.baselines[kind][name][metric],
                                                        dashed=name == "ns"))
                    panels.append(panel)
            title = (f"{self.args.config}, seed {self.args.seed}: {self.held_out} held-out photos at "
                     f"{self.args.eval_size}x{self.args.eval_size}")
            image = chart.draw_figure(panels, len(PLOTTED), title, legend)
            chart.write_png(os.path.join(self.output_dir, file_name), image)


def check_dataset(model_dir, train_list):
    """Checks that the trainer recorded the training list as its dataset."""
    with open(os.path.join(model_dir, "train_config.json"), encoding="utf-8") as file:
        dataset = json.load(file)["dataset"]
    if dataset != f"flist:{train_list}":
        raise RuntimeError(f"train.py trains on {dataset}, not on the training list {train_list}")


def run(args, trainer, curve, samples, train_list):
    """Evaluates on the schedule until training ends; returns train.py's exit status."""
    evaluated = set()
    checked = False
    every_steps = args.eval_every_steps
    marks = {args.steps} | set(range(every_steps, args.steps + 1, every_steps)) if args.steps else None
    next_mark = args.eval_every_minutes if args.minutes else None

    def evaluate(step, prefix, paused):
        nonlocal checked
        if not checked:
            check_dataset(trainer.model_dir, train_list)
            checked = True
        minutes = trainer.minutes_of[step]
        progress(f"step {step} at {minutes:.2f} training minutes: evaluating {os.path.basename(prefix)}"
                 + (" (training paused)" if paused else ""))
        start = time.perf_counter()
        model_metrics = evaluate_checkpoint(prefix, samples)
        evaluated.add(step)
        curve.add(step, minutes, prefix, model_metrics)
        progress(f"evaluated in {time.perf_counter() - start:.1f} s")

    while trainer.running():
        if args.minutes and trainer.training_seconds() >= 60 * args.minutes:
            progress(f"{args.minutes:g} training minutes: stopping train.py after its current step")
            trainer.stop()
            break
        found = trainer.checkpoints()
        if args.steps:
            due = sorted(step for step in found if step in marks and step not in evaluated)
        else:
            newest = max(found, default=None)
            due = [newest] if newest is not None and newest not in evaluated \
                and trainer.minutes_of[newest] >= next_mark else []
        if due:
            trainer.pause()
            try:
                for step in due:
                    evaluate(step, found[step], paused=True)
            finally:
                if trainer.running():
                    trainer.resume()
            if next_mark is not None:
                next_mark = (math.floor(trainer.minutes_of[due[-1]] / args.eval_every_minutes) + 1) \
                    * args.eval_every_minutes
            continue
        time.sleep(POLL_SECONDS)
    status = trainer.wait()
    if status not in (0, 128 + signal.SIGTERM):
        raise TrainingFailed(f"train.py failed (exit status {status}): {trainer.error_line()}; its output "
                             f"is in {trainer.log_path}")
    found = trainer.checkpoints()
    if found and max(found) not in evaluated:
        evaluate(max(found), found[max(found)], paused=False)
    if found:
        write_grid(found[max(found)], samples, curve.output_dir)
    return status


def write_grid(prefix, samples, output_dir):
    """Draws the fills of checkpoint `prefix` on the first GRID_PHOTOS held-out photos."""
    from inpainting.inference import runners

    photos = [(center.name, center.rgb, {"center": center.mask, "free_form": free.mask})
              for center, free in zip(samples["center"][:GRID_PHOTOS], samples["free_form"][:GRID_PHOTOS])]
    path = os.path.join(output_dir, GRID_FILE)
    chart.write_png(path, chart.fills_grid(runners.load(prefix), photos, MASK_KINDS))
    progress(f"the last checkpoint's fills of {len(photos)} held-out photos: {path}")


def stop_on_signals():
    """SIGINT and SIGTERM raise `Stopped` in the main thread."""

    def handle(signum, frame):
        raise Stopped(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handle)


def main(argv):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up notices off the console
    stop_on_signals()
    trainer = curve = None
    try:
        args, extra = parse_args(argv)
        check_reserved(extra)
        output_dir = os.path.abspath(args.output_dir)
        model_dir = os.path.join(output_dir, "model")
        train_list = os.path.join(output_dir, TRAIN_LIST)
        flags = train_flags(args, extra, train_list, model_dir)
        config = resolve_config(flags)
        train, held, every = split(args.images, args.held_out)
        os.makedirs(output_dir, exist_ok=True)
        train_list, held_list = write_lists(output_dir, train, held)
        progress(f"{len(train) + len(held)} images: {len(train)} to train on ({TRAIN_LIST}), "
                 f"{len(held)} held out ({HELD_OUT_LIST}: every k-th file from the k-th, k = {every})")
        start = time.perf_counter()
        samples = held_out_samples(held, args.images, args.eval_size)
        baseline_metrics = baselines(samples)
        progress(f"held-out masks and the Telea and NS baselines at {args.eval_size}x{args.eval_size} "
                 f"in {time.perf_counter() - start:.1f} s")
        curve = Curve(args, output_dir, config.batch_size, baseline_metrics, len(held))
        settings = {"config": args.config, "images": os.path.abspath(args.images), "seed": args.seed,
                    "held_out": len(held), "held_out_every": every, "training_images": len(train),
                    "eval_size": args.eval_size, "minutes": args.minutes, "steps": args.steps,
                    "eval_every_minutes": args.eval_every_minutes, "eval_every_steps": args.eval_every_steps,
                    "train_command": shlex.join([os.path.relpath(sys.executable), TRAIN_SCRIPT, *flags]),
                    "baselines": baseline_metrics}
        with open(os.path.join(output_dir, "settings.json"), "w", encoding="utf-8") as file:
            json.dump(settings, file, indent=2, sort_keys=True)
        curve.draw()
        trainer = Trainer(flags, model_dir, os.path.join(output_dir, "train.log"))
        progress(f"training (train.py's output in {trainer.log_path})")
        run(args, trainer, curve, samples, train_list)
        progress(f"done: {os.path.join(output_dir, CURVE_FILE)}, "
                 f"{', '.join(os.path.join(output_dir, name) for name in (*FIGURES.values(), GRID_FILE))}")
        return 0
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Stopped as stopped:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if trainer is not None and trainer.running():
            progress(f"{stopped}: stopping train.py after its current step")
            trainer.stop()
        if curve is not None:
            curve.draw()
            progress(f"the curve so far: {len(curve.records) // len(MASK_KINDS)} evaluations")
        return 128 + stopped.signum
    finally:
        if trainer is not None and trainer.running():  # an unexpected error here: do not leave it behind
            trainer.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
