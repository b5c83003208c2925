"""Shared pieces of the benchmark scripts: quiet-machine timing and the machine's matmul speed.

Timing follows the method of the reference timings (shared/reference/deepfill/timing.txt): wall clock
around the computation only, warm-up runs excluded, and before each run a wait (up to a limit)
until other processes use less than 0.15 of a core; the CPU other processes used during each run
is recorded so that a "quiet median" over undisturbed runs can be reported.
"""

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
    for _ in range(warmup):
        fn()
    seconds, others = [], []
    for _ in range(runs):
        if wait:
            wait_for_quiet()
        busy0, own0 = _busy_and_own()
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        busy1, own1 = _busy_and_own()
        seconds.append(elapsed)
        others.append(max(0.0, (busy1 - busy0) - (own1 - own0)) / elapsed)
    quiet = [s for s, o in zip(seconds, others) if o < QUIET_CORES]
    return {"median": float(np.median(seconds)), "min": float(min(seconds)),
            "quiet_median": float(np.median(quiet)) if quiet else None,
            "quiet_runs": len(quiet), "runs": len(seconds),
            "others_cores_max": round(max(others), 3)}


ONEDNN_MODES = {"on": "1", "off": "0"}
DILATED_CONV = ("auto", "native", "space_to_batch")


def add_backend_flags(parser, dilated_conv="auto"):
    """`--onednn` and `--dilated_conv`, whose lists `run_backends` runs one child process each."""
    parser.add_argument("--onednn", default="on,off",
                        help="oneDNN modes to measure, comma-separated: on, off (TF_ENABLE_ONEDNN_OPTS=1/0; "
                             "CPUs without AVX-512 default to off), or default (as the machine gives it)")
    parser.add_argument("--dilated_conv", default=dilated_conv,
                        help="formulations of the dilated convolutions to measure, comma-separated: "
                             f"{', '.join(DILATED_CONV)} (INPAINTING_DILATED_CONV; native cannot train "
                             "with oneDNN off)")


def run_backends(args):
    """Runs this script once per (oneDNN mode, dilated-conv formulation) of `args` in a child process.

    Returns:
        None in a child (or for a single default backend): this process measures. Otherwise the
        children's JSON records, which were printed as they came; each carries `onednn` and
        `dilated_conv`.
    """
    modes = args.onednn.split(",")
    formulations = args.dilated_conv.split(",")
    for value in modes:
        if value not in (*ONEDNN_MODES, "default"):
            raise SystemExit(f"error: --onednn takes on, off or default, got {value!r}")
    for value in formulations:
        if value not in DILATED_CONV:
            raise SystemExit(f"error: --dilated_conv takes {', '.join(DILATED_CONV)}, got {value!r}")
    if os.environ.get("BENCH_CHILD") or (modes == ["default"] and len(formulations) == 1):
        os.environ.setdefault("INPAINTING_DILATED_CONV", formulations[0])
        return None
    own = [a for a in sys.argv[1:] if not a.startswith(("--onednn", "--dilated_conv"))]
    records = []
    for mode in modes:
        for formulation in formulations:
            env = dict(os.environ, BENCH_CHILD="1", INPAINTING_DILATED_CONV=formulation)
            if mode != "default":
                env["TF_ENABLE_ONEDNN_OPTS"] = ONEDNN_MODES[mode]
            child = subprocess.Popen([sys.executable, sys.argv[0], *own], env=env, text=True,
                                     stdout=subprocess.PIPE)
            for line in child.stdout:
                print(line, end="", flush=True)
                if line.startswith("{"):
                    records.append(json.loads(line))
            if child.wait():
                raise SystemExit(f"error: the run with oneDNN {mode} and {formulation} failed "
                                 f"(exit status {child.returncode})")
    return records


def emit_backend_ratios(records, bench, keys):
    """One line per group of `records` of `bench` that agree on `keys`: each backend's seconds over
    those of oneDNN on with the `auto` formulation (the first backend measured if it is absent)."""
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


def backend():
    """The oneDNN mode and dilated-conv formulation this process measures, as JSON fields."""
    from tensorflow.python.util import _pywrap_util_port

    return {"onednn": bool(_pywrap_util_port.IsMklEnabled()),
            "dilated_conv": os.environ.get("INPAINTING_DILATED_CONV", "auto")}


def matmul_gflops(n=2048, runs=10, wait=True):
    """float32 matrix-multiply speed of this machine, measured with TensorFlow (`wait`: for a quiet
    machine before each run)."""
    import tensorflow as tf

    a = tf.random.stateless_normal([n, n], seed=[1, 2])
    b = tf.random.stateless_normal([n, n], seed=[3, 4])
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    timing = time_runs(lambda: matmul(a, b).numpy(), runs, warmup=2, wait=wait)
    return 2 * n ** 3 / timing["median"] / 1e9, timing


def emit(record):
    """Prints one JSON line."""
    print(json.dumps(record, sort_keys=True), flush=True)


def v1_generator(checkpoint, temp, **kwargs):
    """(generator, weights name): `checkpoint`'s, else the reference v1 checkpoint's if present
    (extracted into `temp`), else random weights; `kwargs` go to the generator."""
    from inpainting import checkpoints
    from inpainting.config import ModelConfig
    from inpainting.generator import Generator

    if checkpoint:
        return checkpoints.load_generator(checkpoint, **kwargs), checkpoint
    archive = REFERENCE_V1 / "checkpoint.tar.xz"
    if archive.exists():
        with tarfile.open(archive) as tar:
            tar.extractall(temp, filter="data")
        return checkpoints.load_generator(os.path.join(temp, "ckpt"), **kwargs), "reference v1"
    import keras

    keras.utils.set_random_seed(0)
    generator = Generator(ModelConfig(), **kwargs)
    generator.build()
    return generator, "random"
