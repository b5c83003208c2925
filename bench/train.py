"""Training speed of DeepFill v1 or v2, as JSON lines.

    .venv/bin/python bench/train.py [--version=v1] [--batch_size=4] [--size=256] [--iterations=6] [--xla]
        [--onednn=on,off] [--dilated_conv=auto,space_to_batch]
    .venv/bin/python bench/train.py --strategy=multi_worker [--workers=1,2,4] [--version=v2] [--size=64]
        [--dataset=samples] [--input=sharded,whole]

One training iteration is what the original's trainer does per step and what reference
`timing.txt` measures: for v1, 5 critic updates (WGAN-GP, each re-running the generator forward on
its own batch) and 1 generator update; for v2, 1 critic update (SN-PatchGAN hinge) and 1 generator
update; at 256x256 with batch 4 and the released widths. The steps are the
training loop's own `tf.function`s (`inpainting.training.trainer.Trainer`), fed from a constant batch of
real photos (the bundled samples) so that the input pipeline is not measured, as in the reference.
`--precision=mixed_bfloat16` (or `mixed_float16`) measures 16-bit convolutions, which is not the
original's math, so its lines carry no comparison. Prints one line for the iteration, one each for
a single critic and a single generator update, and one with this machine's float32 matmul GFLOP/s
measured in the same run. Each line has the arithmetic of what it times (`gflop`: the convolutions,
their gradients and the matrix products of the update's graph, `common.graph_gflop`), its rate
(`gflops`) and that rate over the matmul's (`of_matmul_rate`), and, at batch 4, 256x256, float32,
the original code's time on this machine class (`timing-project-machine.txt`) scaled by the
matmul rate of this run (`original_seconds`, `speedup_vs_original`, and `original`, which says so).

Each oneDNN mode (`TF_ENABLE_ONEDNN_OPTS`; CPUs without AVX-512 default to off) runs in a child
process of its own, in which each formulation of the dilated convolutions
(`INPAINTING_DILATED_CONV`) has a trainer of its own and the formulations are timed in turns;
every line says which (`onednn`, `dilated_conv`), and `train_<version>_backends` lines give each
one's seconds over oneDNN on with the default formulation. `native` cannot train with oneDNN off
(TensorFlow has no gradient kernel for dilated convolutions there) and is skipped with a line.

`--strategy=multi_worker` starts, for each count of `--workers` and each way of reading the input
(`--input`: `sharded`, each worker reading and decoding only its share of `--dataset`, train.py's
default; `whole`, each reading the whole stream and keeping its part, `--noshard_input`), that many
local worker processes on 127.0.0.1 (`MultiWorkerMirroredStrategy`, TF_CONFIG set by this script)
training from the real input pipeline, and prints the cluster's seconds per iteration and images/s
(global batch x batches per iteration / seconds) beside the images each worker decoded per second
(`decoded_per_worker_per_second`, one value per worker: its part of the batches and its unreadable
files), then each count's speed over one worker's. All workers share this machine's cores, so the
numbers show the cost of the multi-worker machinery (gRPC all-reduce, the per-step stop vote) and
of the input on one computer, not the speed-up of a cluster of machines; the decoding each worker
does is what a cluster of machines saves. The workers run in the machine's oneDNN mode with the
default formulation.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

VERSIONS = ("v1", "v2")


def constant_batches(config):
    """An endless dataset repeating one training batch of real photos with the centre box."""
    import tensorflow as tf

    from inpainting.data import pipeline, sources

    source = sources.parse_dataset("samples")
    images = pipeline.image_dataset(source, image_size=config.image_size, training=True, seed=1)
    batch = next(iter(pipeline.training_batches(
        lambda **kw: images, batch_size=config.batch_size, image_size=config.image_size,
        box_size=config.box_size, seed=1, free_form=config.free_form_masks)))
    return tf.data.Dataset.from_tensors(batch).repeat()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="v1", choices=VERSIONS)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--xla", action="store_true", help="compile the steps with XLA")
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "mixed_bfloat16", "mixed_float16"],
                        help="the 16-bit precisions are not the original's math (16-bit convolutions)")
    parser.add_argument("--no_wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument("--strategy", default="auto", choices=["auto", "multi_worker"],
                        help="multi_worker: start 1, 2, ... (--workers) local worker processes on "
                             "127.0.0.1 and report the cluster's images/s for each count")
    parser.add_argument("--workers", default="1,2,4", help="worker counts for --strategy=multi_worker")
    parser.add_argument("--dataset", default="samples", help="--strategy=multi_worker: train.py's "
                        "--dataset the workers read")
    parser.add_argument("--input", default="sharded,whole",
                        help="--strategy=multi_worker: sharded (each worker decodes its share), "
                             "whole (each decodes the whole stream), or both")
    parser.add_argument("--scratch", default="", help=argparse.SUPPRESS)  # the workers' shared folder
    common.add_backend_flags(parser)
    args = parser.parse_args()
    if args.strategy == "multi_worker":
        if os.environ.get("TF_CONFIG"):
            multi_worker_task(args)
        else:
            launch_workers(args)
        return
    formulations = common.dilated_conv_formulations(args)
    records = common.run_onednn_modes(args)
    if records is not None:
        common.emit_backend_ratios(records, f"train_{args.version}",
                                   ("measure", "batch", "size", "precision", "xla"))
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import keras
    import tensorflow as tf

    from inpainting.config import TrainConfig
    from inpainting.model import layers
    from inpainting.training import trainer as training

    onednn = common.onednn()
    if "native" in formulations and not layers.native_dilated_gradients():
        formulations.remove("native")
        common.emit({"bench": f"train_{args.version}", "onednn": onednn, "dilated_conv": "native",
                     "skipped": "TensorFlow has no gradient kernel for dilated convolutions here"})
    keras.mixed_precision.set_global_policy(args.precision)
    wait = not args.no_wait
    with tempfile.TemporaryDirectory() as temp:
        # One trainer per formulation of the dilated convolutions, its steps traced with it; the
        # formulations are timed in turns.
        runs, flop = {}, {}
        for formulation in formulations:
            config = TrainConfig(model_dir=os.path.join(temp, formulation), version=args.version,
                                 image_size=args.size, box_size=args.size // 2,
                                 batch_size=args.batch_size, xla=args.xla, precision=args.precision)
            trainer = training.Trainer(config)
            batches = constant_batches(config)
            iterator = iter(trainer.strategy.experimental_distribute_dataset(batches))
            with common.dilated_conv(formulation):
                trainer.train_step(iterator, 1)
                # The arithmetic of each update, from its graph traced on the batch's static shapes.
                flop[formulation] = {
                    f"{update}_update": common.graph_gflop(
                        tf.function(trainer.replica_update(update)).get_concrete_function(
                            batches.element_spec).graph)
                    for update in ("critic", "generator")}
            flop[formulation]["iteration"] = (config.critic_steps * flop[formulation]["critic_update"]
                                              + flop[formulation]["generator_update"])
            runs[formulation] = trainer, iterator
        timings = {
            "iteration": common.time_interleaved(
                {f: lambda t=t, i=i: t.train_step(i, 1) for f, (t, i) in runs.items()},
                args.iterations, warmup=0, wait=wait),
            "critic_update": common.time_interleaved(
                {f: lambda t=t, i=i: t.checked_update("critic", i) for f, (t, i) in runs.items()},
                3 * args.iterations, warmup=0, wait=wait),
            "generator_update": common.time_interleaved(
                {f: lambda t=t, i=i: t.checked_update("generator", i) for f, (t, i) in runs.items()},
                args.iterations, warmup=0, wait=wait),
        }
    gflops, matmul = common.matmul_gflops(wait=wait)
    common_fields = {"batch": args.batch_size, "size": f"{args.size}x{args.size}",
                     "critic_updates": config.critic_steps, "xla": args.xla,
                     "precision": args.precision, "onednn": onednn, "matmul_gflops": round(gflops, 1)}
    same_math = (args.batch_size, args.size, args.precision) == (4, 256, "float32")
    for name, by_formulation in timings.items():
        for formulation, timing in by_formulation.items():
            key = ("train", args.version, name) if same_math else None
            common.emit({"bench": f"train_{args.version}", "measure": name, **common_fields,
                         "dilated_conv": formulation,
                         "seconds": round(timing["median"], 4), "min": round(timing["min"], 4),
                         "quiet_median": timing["quiet_median"] and round(timing["quiet_median"], 4),
                         "runs": timing["runs"], "quiet_runs": timing["quiet_runs"],
                         "gflop": round(flop[formulation][name], 1),
                         "gflops": round(flop[formulation][name] / timing["median"], 1),
                         "of_matmul_rate": round(flop[formulation][name] / timing["median"] / gflops, 3),
                         **common.original_comparison(key, timing["median"], gflops)})
    common.emit({"bench": "matmul", "gflops": round(gflops, 1), "seconds": round(matmul["median"], 5),
                 "onednn": onednn})


def launch_workers(args):
    """Runs this script as 1, 2, ... local workers of one cluster each; prints the chief's lines."""
    from inpainting.training import distribution

    rates = {}
    for mode, count in [(mode, int(n)) for mode in args.input.split(",")
                        for n in args.workers.split(",")]:
        addresses = [f"127.0.0.1:{port}" for port in distribution.free_local_ports(count)]
        argv = [a for a in sys.argv[1:] if not a.startswith(("--workers", "--input"))]
        argv.append(f"--input={mode}")
        processes = []
        scratch = tempfile.TemporaryDirectory()
        argv.append(f"--scratch={scratch.name}")
        try:
            for index in range(count):
                tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
                env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), CUDA_VISIBLE_DEVICES="-1")
                processes.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv],
                                                  stdout=subprocess.PIPE, text=True, env=env))
            output = processes[0].communicate(timeout=3600)[0]
            for process in processes[1:]:
                process.wait(timeout=600)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            scratch.cleanup()
        if any(p.returncode for p in processes):
            sys.exit(f"error: the {count}-worker run failed (exit statuses "
                     f"{[p.returncode for p in processes]})")
        for line in output.splitlines():
            record = json.loads(line)
            rates[mode, count] = record["images_per_second"]
            common.emit(record)
    for mode in args.input.split(","):
        if (mode, 1) in rates:
            common.emit({"bench": f"train_{args.version}_multi_worker_scaling", "input": mode,
                         **{f"speedup_{n}_workers": round(rate / rates[mode, 1], 3)
                            for (m, n), rate in rates.items() if m == mode}})


def multi_worker_task(args):
    """One worker of a local cluster: times training iterations on constant batches; the chief
    prints one JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from inpainting.config import TrainConfig
    from inpainting.training import distribution
    from inpainting.training import trainer as training

    keras.mixed_precision.set_global_policy(args.precision)
    # The workers share the scratch folder; nothing is saved: checkpoints are not measured.
    config = TrainConfig(model_dir=args.scratch, version=args.version, image_size=args.size,
                         box_size=args.size // 2, batch_size=args.batch_size, xla=args.xla,
                         precision=args.precision, strategy="multi_worker", dataset=args.dataset,
                         shard_input=args.input == "sharded")
    strategy = training.make_strategy(config)  # first: before other TensorFlow work
    trainer = training.Trainer(config, strategy)
    iterator = trainer.training_data()
    # No waiting for a quiet CPU: the other local workers keep it busy by design.
    warmup = 1
    iteration = common.time_runs(lambda: trainer.train_step(iterator, 1), args.iterations,
                                 warmup=warmup, wait=False)
    if distribution.is_chief(strategy):
        workers = strategy.cluster.num_tasks
        images = args.batch_size * config.batches_per_step
        steps = warmup + args.iterations
        decoded = [n / steps / iteration["median"] for n in trainer.decoded_images(steps)]
        common.emit({"bench": f"train_{args.version}_multi_worker", "workers": workers,
                     "input": args.input, "dataset": args.dataset,
                     "global_batch": args.batch_size, "size": f"{args.size}x{args.size}",
                     "seconds_per_iteration": round(iteration["median"], 4),
                     "images_per_second": round(images / iteration["median"], 3),
                     "decoded_per_worker_per_second": [round(rate, 3) for rate in decoded],
                     "runs": iteration["runs"], "onednn": common.onednn()})


if __name__ == "__main__":
    main()
