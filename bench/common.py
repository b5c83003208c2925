"""Shared pieces of the benchmark scripts: quiet-machine timing and the machine's matmul speed.

Timing follows the method of the reference timings (shared/reference/deepfill/timing.txt): wall clock
around the computation only, warm-up runs excluded, and before each run a wait (up to a limit)
until other processes use less than 0.15 of a core; the CPU other processes used during each run
is recorded so that a "quiet median" over undisturbed runs can be reported.
"""

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import time

import numpy as np

QUIET_CORES = 0.15
REFERENCE_V1 = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference" / "deepfill" / "v1"


def _busy_and_own():
    """(all processes' busy CPU seconds, this process's CPU seconds)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    times = os.times()
    return (sum(fields[:8]) - idle) / ticks, times.user + times.system


def others_cpu(seconds=0.5):
    """Cores used by other processes over a short window."""
    busy0, own0 = _busy_and_own()
    time.sleep(seconds)
    busy1, own1 = _busy_and_own()
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / seconds


def wait_for_quiet(limit=120.0):
    """Waits until other processes use < QUIET_CORES, at most `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and others_cpu() >= QUIET_CORES:
        pass


def time_runs(fn, runs, warmup, wait=True):
    """Times `fn()` `runs` times after `warmup` calls.

    Returns:
        A dict: median, min, quiet median (over runs during which others used < 0.15 core, or
        null), the runs' seconds and the cores other processes used during each.
    """
    return time_interleaved({None: fn}, runs, warmup, wait)[None]


def time_interleaved(fns, runs, warmup, wait=True):
    """Times each function of the dict `fns` `runs` times, taking turns (A B A B ...), so that a
    machine whose speed drifts slows them alike; after `warmup` calls of each.

    Returns:
        {name: the dict `time_runs` returns}.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    seconds = {name: [] for name in fns}
    others = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            if wait:
                wait_for_quiet()
            busy0, own0 = _busy_and_own()
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            busy1, own1 = _busy_and_own()
            seconds[name].append(elapsed)
            others[name].append(max(0.0, (busy1 - busy0) - (own1 - own0)) / elapsed)
    timings = {}
    for name in fns:
        quiet = [s for s, o in zip(seconds[name], others[name]) if o < QUIET_CORES]
        timings[name] = {"median": float(np.median(seconds[name])), "min": float(min(seconds[name])),
                         "quiet_median": float(np.median(quiet)) if quiet else None,
                         "quiet_runs": len(quiet), "runs": len(seconds[name]),
                         "others_cores_max": round(max(others[name]), 3)}
    return timings


ONEDNN_MODES = {"on": "1", "off": "0"}
DILATED_CONV = ("auto", "native", "space_to_batch")


def add_backend_flags(parser, dilated_conv="auto,space_to_batch"):
    """`--onednn` (one child process per mode, `run_onednn_modes`) and `--dilated_conv` (the
    formulations timed in turns in each, `dilated_conv_formulations`)."""
    parser.add_argument("--onednn", default="on,off",
                        help="oneDNN modes to measure, comma-separated, each in a child process: on, "
                             "off (TF_ENABLE_ONEDNN_OPTS=1/0; CPUs without AVX-512 default to off), or "
                             "default (as the machine gives it)")
    parser.add_argument("--dilated_conv", default=dilated_conv,
                        help="formulations of the dilated convolutions to measure in turns, "
                             f"comma-separated: {', '.join(DILATED_CONV)} (INPAINTING_DILATED_CONV; "
                             "native cannot train with oneDNN off)")


def dilated_conv_formulations(args):
    """The formulations of `--dilated_conv`, checked."""
    formulations = args.dilated_conv.split(",")
    for value in formulations:
        if value not in DILATED_CONV:
            raise SystemExit(f"error: --dilated_conv takes {', '.join(DILATED_CONV)}, got {value!r}")
    return formulations


@contextlib.contextmanager
def dilated_conv(formulation):
    """Models traced inside use `formulation` for their dilated convolutions."""
    saved = os.environ.get("INPAINTING_DILATED_CONV")
    os.environ["INPAINTING_DILATED_CONV"] = formulation
    try:
        yield
    finally:
        if saved is None:
            del os.environ["INPAINTING_DILATED_CONV"]
        else:
            os.environ["INPAINTING_DILATED_CONV"] = saved


def run_onednn_modes(args):
    """Runs this script once per oneDNN mode of `args.onednn` in a child process.

    Returns:
        None in a child (or for the single mode `default`): this process measures. Otherwise the
        children's JSON records, printed as they came.
    """
    modes = args.onednn.split(",")
    for value in modes:
        if value not in (*ONEDNN_MODES, "default"):
            raise SystemExit(f"error: --onednn takes on, off or default, got {value!r}")
    if os.environ.get("BENCH_CHILD") or modes == ["default"]:
        return None
    own = [a for a in sys.argv[1:] if not a.startswith("--onednn")]
    records = []
    for mode in modes:
        env = dict(os.environ, BENCH_CHILD="1")
        if mode != "default":
            env["TF_ENABLE_ONEDNN_OPTS"] = ONEDNN_MODES[mode]
        child = subprocess.Popen([sys.executable, sys.argv[0], *own], env=env, text=True,
                                 stdout=subprocess.PIPE)
        for line in child.stdout:
            print(line, end="", flush=True)
            if line.startswith("{"):
                records.append(json.loads(line))
        if child.wait():
            raise SystemExit(f"error: the run with oneDNN {mode} failed (exit status {child.returncode})")
    return records


def emit_backend_ratios(records, bench, keys):
    """One line per group of `records` of `bench` that agree on `keys`: each backend's seconds over
    those of oneDNN on with the `auto` formulation (the first backend measured if it is absent).
    Only formulations timed in turns in one process are compared without drift between them."""
    groups = {}
    for record in records:
        if record.get("bench") == bench:
            groups.setdefault(tuple(record.get(k) for k in keys), []).append(record)
    for group_key, group in groups.items():
        name = lambda r: f"onednn_{'on' if r['onednn'] else 'off'}_{r['dilated_conv']}"
        base = next((r for r in group if r["onednn"] and r["dilated_conv"] == "auto"), group[0])
        emit({"bench": f"{bench}_backends", **dict(zip(keys, group_key)),
              "seconds": {name(r): r["seconds"] for r in group},
              f"over_{name(base)}": {name(r): round(r["seconds"] / base["seconds"], 3) for r in group}})


def onednn():
    """Whether TensorFlow computes with oneDNN in this process."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def matmul_gflops(n=2048, runs=10, wait=True):
    """float32 matrix-multiply speed of this machine, measured with TensorFlow (`wait`: for a quiet
    machine before each run)."""
    import tensorflow as tf

    a = tf.random.stateless_normal([n, n], seed=[1, 2])
    b = tf.random.stateless_normal([n, n], seed=[3, 4])
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    timing = time_runs(lambda: matmul(a, b).numpy(), runs, warmup=2, wait=wait)
    return 2 * n ** 3 / timing["median"] / 1e9, timing


# The original code timed on this project's machine class (shared/reference/deepfill/
# timing-project-machine.txt, oneDNN on, float32, medians in seconds), and the float32 matmul rate
# its numbers are scaled by: on a machine measuring M GFLOP/s in the same run, the original would
# take seconds * ORIGINAL_MATMUL_GFLOPS / M.
ORIGINAL_MATMUL_GFLOPS = 196.0
ORIGINAL_SECONDS = {
    ("infer", "v1", 256, 256): 0.2848, ("infer", "v1", 512, 680): 3.218,
    ("infer", "v2", 256, 256): 0.3404, ("infer", "v2", 512, 680): 3.126,
    ("train", "v1", "iteration"): 19.83, ("train", "v1", "critic_update"): 2.983,
    ("train", "v1", "generator_update"): 4.940,
    ("train", "v2", "iteration"): 7.542, ("train", "v2", "critic_update"): 2.259,
    ("train", "v2", "generator_update"): 5.240,
}
ORIGINAL_SOURCE = "timing-project-machine.txt"


def original_comparison(key, seconds, matmul):
    """The fields comparing `seconds` with the original's time for `key` (of ORIGINAL_SECONDS) on
    this machine: that file's time scaled by this run's matmul rate `matmul` (GFLOP/s); null
    fields where the original was not timed (another size, batch or precision)."""
    measured = ORIGINAL_SECONDS.get(key)
    original = measured and measured * ORIGINAL_MATMUL_GFLOPS / matmul
    return {"original_seconds": original and round(original, 4),
            "speedup_vs_original": original and round(original / seconds, 3),
            "original": original and (f"{ORIGINAL_SOURCE} ({measured} s at "
                                      f"{ORIGINAL_MATMUL_GFLOPS:g} GFLOP/s) x {ORIGINAL_MATMUL_GFLOPS:g}"
                                      f" / this run's matmul {matmul:.1f} GFLOP/s")}


def _executed_ops(graph):
    """The ops of a traced function's graph that its outputs and side effects depend on: what runs
    once TensorFlow prunes the rest (e.g. gradients the tape computed for variables it watched
    but nothing applies)."""
    pending = [t.op for t in graph.outputs] + list(graph.control_outputs)
    seen = set()
    while pending:
        op = pending.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        pending += [t.op for t in op.inputs] + list(op.control_inputs)
    return [op for op in graph.get_operations() if op.name in seen]


def graph_gflop(graph):
    """GFLOPs (multiply and add counted apart) of the convolutions (forward and both gradients) and
    matrix products a traced function's graph executes, from their static shapes: the arithmetic
    that runs at the matmul rate; the elementwise rest is not counted. ValueError if a shape is
    unknown.
    """
    total = 0
    for op in _executed_ops(graph):
        if op.type not in ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MatMul",
                           "BatchMatMulV2"):
            continue
        shapes = [t.shape for t in (*op.inputs, *op.outputs)]
        if not all(shape.is_fully_defined() for shape in shapes):
            raise ValueError(f"{op.name}: shapes {shapes} are not all known; trace with static shapes")
        if op.type.startswith("Conv2D"):
            # Output (or output gradient) positions x the kernel's taps x its input channels.
            kernel = (op.outputs[0] if op.type == "Conv2DBackpropFilter" else op.inputs[1]).shape
            positions = (op.outputs[0] if op.type == "Conv2D" else op.inputs[2]).shape
            total += 2 * positions.num_elements() * kernel[0] * kernel[1] * kernel[2]
        else:
            a, b = op.inputs[0].shape, op.inputs[1].shape
            flags = ("transpose_a", "transpose_b") if op.type == "MatMul" else ("adj_x", "adj_y")
            transpose_a, transpose_b = (op.get_attr(flag) for flag in flags)
            rows, depth = (a[-1], a[-2]) if transpose_a else (a[-2], a[-1])
            columns = b[-2] if transpose_b else b[-1]
            batch = max(a[:-2].num_elements(), b[:-2].num_elements())
            total += 2 * batch * rows * columns * depth
    return total / 1e9


def emit(record):
    """Prints one JSON line."""
    print(json.dumps(record, sort_keys=True), flush=True)


def v1_generator(checkpoint, temp, **kwargs):
    """(generator, weights name): `checkpoint`'s, else the reference v1 checkpoint's if present
    (extracted into `temp`), else random weights; `kwargs` go to the generator."""
    from inpainting.checkpoints import store
    from inpainting.config import ModelConfig
    from inpainting.model.generator import Generator

    if checkpoint:
        return store.load_generator(checkpoint, **kwargs), checkpoint
    archive = REFERENCE_V1 / "checkpoint.tar.xz"
    if archive.exists():
        with tarfile.open(archive) as tar:
            tar.extractall(temp, filter="data")
        return store.load_generator(os.path.join(temp, "ckpt"), **kwargs), "reference v1"
    import keras

    keras.utils.set_random_seed(0)
    generator = Generator(ModelConfig(), **kwargs)
    generator.build()
    return generator, "random"
