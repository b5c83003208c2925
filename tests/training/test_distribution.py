"""Training on many machines: TF_CONFIG, the multi-worker strategy, roles, stops and lost workers.

The cluster tests start `train.py` worker processes on 127.0.0.1 free ports with a cnum=4 model on
64x64 images (32x32 for the input-sharding tests) and stop every process they start. They run
in the default oneDNN mode only: the cluster's machinery (sharding, all-reduce, votes, stops) is
above the kernels, whose numbers in both modes the one-process training tests check.
"""

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, assert_user_error
from inpainting.config import TrainConfig
from inpainting.errors import ConfigError, TrainingError
from inpainting.training import distribution, trainer
from test_trainer import TINY, checkpoint_values, image_folder, read_events  # noqa: F401 (a fixture)

EXAMPLE = distribution.EXAMPLE
# Adam's epsilon 1e-3 keeps an update proportional to its gradient (see test_trainer's mirrored
# test): the runs below then compare gradients, whose summation order differs between one process
# and an all-reduce over workers.
COMMON = ("--cnum=4", "--image_size=64", "--box_size=32", "--max_delta=8", "--critic_steps=1",
          "--log_every=1", "--validation_images=1", "--adam_epsilon=1e-3", "--summary_every=1",
          "--validation_every=2")


def cluster_json(ports, chief=False):
    addresses = [f"127.0.0.1:{port}" for port in ports]
    return {"chief": addresses[:1], "worker": addresses[1:]} if chief else {"worker": addresses}


def tf_configs(count, chief=False):
    """The TF_CONFIG of each of `count` tasks on free 127.0.0.1 ports (the chief's first)."""
    cluster = cluster_json(distribution.free_local_ports(count), chief)
    tasks = [(job, i) for job in ("chief", "worker") for i in range(len(cluster.get(job, ())))]
    return [json.dumps({"cluster": cluster, "task": {"type": job, "index": i}}) for job, i in tasks]


class Workers:
    """Worker processes of one cluster, their output in files; `stop()` kills what still runs."""

    def __init__(self, log_dir):
        self.log_dir, self.processes, self.logs = log_dir, [], []

    def start(self, model_dir, folder, *args, count=2, chief=False, extra=None):
        self.processes, self.logs = [], []
        for index, tf_config in enumerate(tf_configs(count, chief)):
            log = self.log_dir / f"task{index}-{time.monotonic_ns()}.log"
            flags = [f"--model_dir={model_dir}", f"--dataset=folder:{folder}", *COMMON, *args,
                     *((extra or {}).get(index, ()))]
            env = dict(os.environ, TF_CONFIG=tf_config, CUDA_VISIBLE_DEVICES="-1",
                       TF_CPP_MIN_LOG_LEVEL="3")
            with open(log, "w") as out:
                self.processes.append(subprocess.Popen(
                    [sys.executable, str(REPO / "train.py"), *flags], stdout=out,
                    stderr=subprocess.STDOUT, cwd=REPO, env=env))
            self.logs.append(log)
        return self

    def output(self, index):
        return self.logs[index].read_text()

    def wait(self, timeout=300):
        """Every exit status, within `timeout` seconds for all."""
        end = time.monotonic() + timeout
        try:
            return [p.wait(timeout=max(1.0, end - time.monotonic())) for p in self.processes]
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError("workers did not finish:\n" + "\n".join(
                self.output(i)[-2000:] for i in range(len(self.logs))))

    def wait_for(self, index, text, timeout=300):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.output(index):
                return
            if any(p.poll() is not None for p in self.processes):
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"{text!r} not printed by task {index}:\n{self.output(index)[-3000:]}")

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=60)


@pytest.fixture
def workers(tmp_path):
    cluster = Workers(tmp_path)
    yield cluster
    cluster.stop()


def one_process(model_dir, folder, **settings):
    """Trains in this process on one device, with the settings of the worker flags."""
    config = TrainConfig(model_dir=str(model_dir), dataset=f"folder:{folder}",
                         **dict(TINY, strategy="one_device", adam_epsilon=1e-3, validation_every=2,
                                critic_steps=1, validation_images=1, deterministic=False,
                                **settings))
    return trainer.Trainer(config).fit()


def assert_close(got, expected, atol, keys=None):
    assert got.keys() == expected.keys()
    for key in keys or expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=atol, err_msg=key)


def assert_only_chief_files(model_dir, runs=1):
    """No worker temporary folder; one TensorBoard file per log folder and run (the chief's)."""
    names = os.listdir(model_dir)
    assert not [n for n in names if n.startswith(distribution.TEMP_PREFIX)], names
    assert {"model_config.json", "train_config.json", "train", "validation"} <= set(names)
    for folder in ("train", "validation"):
        assert len(os.listdir(model_dir / folder)) == runs, os.listdir(model_dir / folder)


# ---- TF_CONFIG ------------------------------------------------------------------------------------

GOOD = {"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]},
        "task": {"type": "worker", "index": 1}}


def test_parses_tf_config_and_finds_the_chief():
    cluster = distribution.parse_tf_config(json.dumps(GOOD))
    assert (cluster.num_tasks, cluster.task_type, cluster.task_index) == (2, "worker", 1)
    assert not cluster.is_chief and cluster.name == "worker 1"
    assert distribution.parse_tf_config(json.dumps(dict(GOOD, task={"type": "worker",
                                                                     "index": 0}))).is_chief
    with_chief = {"cluster": {"chief": ["h:1"], "worker": ["h:2"]}, "task": {"type": "worker",
                                                                           "index": 0}}
    cluster = distribution.parse_tf_config(json.dumps(with_chief))
    assert not cluster.is_chief and cluster.tasks() == [("chief", 0), ("worker", 0)]


@pytest.mark.parametrize("value, message", [
    ('{"cluster": {"worker": ["h:1"]', "is not valid JSON (Expecting ',' delimiter: line 1 column 31 "
                                      "(char 30))"),
    ('["h:1"]', 'has no "cluster" object'),
    ('{"cluster": {"worker": ["h:1"], "ps": ["h:2"]}, "task": {"type": "worker", "index": 0}}',
     "job 'ps' is not supported (only chief and worker: synchronous training has no parameter "
     "servers or evaluators)"),
    ('{"cluster": {"worker": "h:1"}, "task": {"type": "worker", "index": 0}}',
     "cluster \"worker\" must be a list of \"host:port\" strings, got 'h:1'"),
    ('{"cluster": {"worker": ["h1"]}, "task": {"type": "worker", "index": 0}}',
     "cluster \"worker\" address 'h1' is not \"host:port\""),
    ('{"cluster": {"worker": ["h:1", "h:1"]}, "task": {"type": "worker", "index": 0}}',
     "address h:1 is listed twice"),
    ('{"cluster": {"worker": ["h:1"]}}', 'has no "task" object with "type" and "index"'),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}',
     "task type 'chief' is not a job of the cluster (worker)"),
    ('{"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 2}}',
     'task index 2 is out of range: the cluster has 2 "worker" task(s), indices 0 to 1'),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": "0"}}',
     "task index must be an integer, got '0'"),
])
def test_bad_tf_config_gets_one_line_errors(value, message):
    with pytest.raises(TrainingError) as err:
        distribution.parse_tf_config(value)
    assert str(err.value) == f"TF_CONFIG: {message}; it must look like {EXAMPLE}"


def test_strategy_selection(tmp_path):
    two, one = json.dumps(GOOD), json.dumps({"cluster": {"worker": ["h:1"]},
                                             "task": {"type": "worker", "index": 0}})

    def chosen(strategy, tf_config):
        config = TrainConfig(model_dir=str(tmp_path), strategy=strategy)
        cluster = distribution.wants_multi_worker(config, {"TF_CONFIG": tf_config})
        return cluster and cluster.num_tasks

    assert chosen("auto", two) == 2
    assert chosen("auto", one) is None and chosen("auto", "") is None
    assert chosen("multi_worker", one) == 1
    assert chosen("mirrored", two) is None and chosen("one_device", two) is None
    with pytest.raises(TrainingError, match=r"^strategy=multi_worker needs the TF_CONFIG "
                                            r"environment variable \(the cluster and this task\)"):
        chosen("multi_worker", "")


def test_worker_timeout_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match=r"^worker_timeout: must be positive \(seconds\), got 0"):
        TrainConfig(model_dir=str(tmp_path), worker_timeout=0)

def test_train_py_refuses_a_bad_tf_config(tmp_path, image_folder):
    for tf_config, fragment in (("{oops", "TF_CONFIG: is not valid JSON"),
                                (json.dumps(dict(GOOD, task={"type": "worker", "index": 5})),
                                 "TF_CONFIG: task index 5 is out of range")):
        result = subprocess.run(
            [sys.executable, str(REPO / "train.py"), f"--model_dir={tmp_path / 'run'}",
             f"--dataset=folder:{image_folder}", "--strategy=multi_worker"],
            capture_output=True, text=True, cwd=REPO, timeout=300,
            env=dict(os.environ, TF_CONFIG=tf_config, CUDA_VISIBLE_DEVICES="-1"))
        assert_user_error(result, fragment)
    assert not (tmp_path / "run").exists()


# ---- clusters -------------------------------------------------------------------------------------

def test_batch_must_divide_over_the_workers(tmp_path, image_folder, workers):
    workers.start(tmp_path / "run", image_folder, "--batch_size=3", "--max_steps=1",
                  "--worker_timeout=60")
    assert workers.wait() == [1, 1]
    for index in range(2):
        errors = [line for line in workers.output(index).splitlines() if line.startswith("error: ")]
        assert errors == ["error: --batch_size=3 (the global batch) cannot be split evenly over the 2 "
                          "replicas of 2 workers; give a multiple of 2"], workers.output(index)
        assert "Traceback" not in workers.output(index)


def test_workers_started_with_different_flags_stop(tmp_path, image_folder, workers):
    workers.start(tmp_path / "run", image_folder, "--batch_size=2", "--max_steps=1",
                  "--worker_timeout=60", extra={1: ["--seed=7"]})
    assert workers.wait() == [1, 1]
    for index, (other, here, there) in enumerate((("worker 1", 0, 7), ("worker 0", 7, 0))):
        errors = [line for line in workers.output(index).splitlines() if line.startswith("error: ")]
        assert errors == [f"error: worker {index}: {other} was started with different flags "
                          f"(--seed={there} there, {here} here); start every worker with the same "
                          f"command, only TF_CONFIG differs"], workers.output(index)
    assert not os.path.exists(tmp_path / "run" / "ckpt-1.index")


def test_a_worker_whose_cluster_never_assembles_stops_with_an_error(tmp_path, image_folder):
    # Task 0 runs the coordination service and waits for the others inside TensorFlow (a watchdog
    # process ends it); task 1 gives up connecting to task 0. Each is alone in its own cluster.
    processes = []
    try:
        for index in (0, 1):
            processes.append(subprocess.Popen(
                [sys.executable, str(REPO / "train.py"), f"--model_dir={tmp_path / 'run'}",
                 f"--dataset=folder:{image_folder}", *COMMON, "--batch_size=2", "--worker_timeout=5"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                env=dict(os.environ, TF_CONFIG=tf_configs(2)[index], CUDA_VISIBLE_DEVICES="-1")))
        started = time.monotonic()
        outputs = [p.communicate(timeout=200) for p in processes]
        assert time.monotonic() - started < 5 + 15 + 60
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    results = [subprocess.CompletedProcess(p.args, p.returncode, *out) for p, out in zip(processes, outputs)]
    assert results[0].returncode == -signal.SIGKILL
    assert_user_error(results[0], "worker 0: the cluster of TF_CONFIG did not assemble within "
                      "--worker_timeout=5 s (+15); start every task it lists (2)")
    assert results[1].returncode == 1
    assert_user_error(results[1], "worker 1: cannot join the cluster of TF_CONFIG within "
                      "--worker_timeout=5 s (", "start every task it lists (2)")
    assert not (tmp_path / "run").exists()


def test_two_workers_train_like_one_process(tmp_path, image_folder, workers):
    # Tolerance: the workers' all-reduce sums the two halves of the batch's gradient in another
    # order than one device does, so values agree to float32 rounding of the gradients (1e-5 on
    # every tensor after the first step, as the one-process MirroredStrategy test). Later steps
    # are compared on the generator, which stays within 1e-6: the WGAN-GP critic's gradient
    # amplifies that rounding in a few near-zero components.
    model_dir = tmp_path / "cluster"
    workers.start(model_dir, image_folder, "--batch_size=4", "--max_steps=3", "--checkpoint_every=1",
                  "--strategy=multi_worker", "--ema_decay=0.5", "--noshard_input")
    assert workers.wait() == [0, 0], workers.output(0) + workers.output(1)
    chief, worker = workers.output(0), workers.output(1)
    assert f"finished at step 3; checkpoint {model_dir / 'ckpt-3'}" in chief
    assert "step 3/3 [" in chief and "step " not in worker.replace("at step 3", "")
    assert worker.splitlines()[-1] == "worker 1: finished at step 3"
    assert tf.train.latest_checkpoint(str(model_dir)) == str(model_dir / "ckpt-3")
    assert_only_chief_files(model_dir)
    assert json.load(open(model_dir / "train_config.json"))["strategy"] == "multi_worker"

    one_process(tmp_path / "one", image_folder, batch_size=4, max_steps=3, checkpoint_every=1,
                ema_decay=0.5)
    assert_close(checkpoint_values(model_dir / "ckpt-1"), checkpoint_values(tmp_path / "one" / "ckpt-1"),
                 atol=1e-5)
    got, expected = (checkpoint_values(d / "ckpt-3") for d in (model_dir, tmp_path / "one"))
    # With --ema_decay "generator" is the average of the weights of every step, updated on every
    # worker alike.
    generator = [key for key in expected if key.startswith("generator/")]
    assert len(generator) > 50
    assert_close(got, expected, atol=1e-6, keys=generator)


def test_chief_and_two_workers_train_v2_guided_like_one_process(tmp_path, image_folder, workers):
    # Three tasks, a "chief" job, and DeepFill v2 guided: the SN-PatchGAN's power-iteration vectors
    # `u` are updated inside the replicas and must stay equal on every worker.
    model_dir = tmp_path / "cluster"
    v2 = ("--version=v2", "--guided", "--cnum=4")
    workers.start(model_dir, image_folder, *v2, "--batch_size=3", "--max_steps=2",
                  "--checkpoint_every=1", "--noshard_input", count=3, chief=True)
    assert workers.wait() == [0, 0, 0], "".join(workers.output(i) for i in range(3))
    assert [workers.output(i).splitlines()[-1] for i in (1, 2)] == [
        "worker 0: finished at step 2", "worker 1: finished at step 2"]
    assert_only_chief_files(model_dir)
    one_process(tmp_path / "one", image_folder, version="v2", guided=True, batch_size=3, max_steps=2,
                checkpoint_every=1)
    # Step 1 within 1e-5 everywhere (as two workers above); after step 2, which starts from the
    # rounding noise of step 1, the power-iteration vectors and the generator stay within 1e-6 and
    # the optimizer's state within 5e-5.
    assert_close(checkpoint_values(model_dir / "ckpt-1"), checkpoint_values(tmp_path / "one" / "ckpt-1"),
                 atol=1e-5)
    got, expected = (checkpoint_values(d / "ckpt-2") for d in (model_dir, tmp_path / "one"))
    u_keys = [key for key in expected if key.endswith("/u/.ATTRIBUTES/VARIABLE_VALUE")]
    assert len(u_keys) == 6
    assert_close(got, expected, atol=1e-6,
                 keys=u_keys + [key for key in expected if key.startswith("generator/")])
    assert_close(got, expected, atol=5e-5)


def test_sigterm_on_one_worker_saves_the_cluster_and_resumes(tmp_path, image_folder, workers):
    flags = ("--batch_size=2", "--max_steps=8", "--checkpoint_every=100", "--worker_timeout=120")
    model_dir = tmp_path / "run"
    workers.start(model_dir, image_folder, *flags)
    workers.wait_for(0, "step 2/8 [")
    workers.processes[1].send_signal(signal.SIGTERM)
    assert workers.wait() == [distribution.PREEMPTED_EXIT_STATUS] * 2
    chief = [line for line in workers.output(0).splitlines() if line.startswith("stopped by ")]
    assert len(chief) == 1, workers.output(0)
    step = int(chief[0].split(" at step ")[1].split(";")[0])
    assert 2 <= step < 8
    assert chief[0].startswith(f"stopped by SIGTERM on another worker at step {step}; checkpoint "
                               f"{model_dir / f'ckpt-{step}'}")
    assert workers.output(1).splitlines()[-1] == f"worker 1: stopped by SIGTERM at step {step}"
    assert tf.train.latest_checkpoint(str(model_dir)) == str(model_dir / f"ckpt-{step}")
    assert_only_chief_files(model_dir)

    workers.start(model_dir, image_folder, *flags)
    assert workers.wait() == [0, 0]
    assert f"resumed from {model_dir / f'ckpt-{step}'} at step {step}" in workers.output(0)
    assert f"finished at step 8; checkpoint {model_dir / 'ckpt-8'}" in workers.output(0)

    workers.start(tmp_path / "uninterrupted", image_folder, *flags)
    assert workers.wait() == [0, 0]
    got, expected = (checkpoint_values(d / "ckpt-8") for d in (model_dir, tmp_path / "uninterrupted"))
    assert (got.pop("save_counter/.ATTRIBUTES/VARIABLE_VALUE"),
            expected.pop("save_counter/.ATTRIBUTES/VARIABLE_VALUE")) == (2, 1)
    assert_close(got, expected, atol=1e-6)


def test_the_time_limit_stops_the_cluster_after_one_step(tmp_path, image_folder, workers):
    # The workers' clocks pass --max_minutes at different steps; the vote makes them stop together.
    model_dir = tmp_path / "run"
    workers.start(model_dir, image_folder, "--batch_size=2", "--max_steps=100000",
                  "--checkpoint_every=1000", "--max_minutes=0.15", "--worker_timeout=120")
    assert workers.wait() == [0, 0]
    chief = [line for line in workers.output(0).splitlines() if line.startswith("stopped ")]
    assert len(chief) == 1, workers.output(0)
    step = int(chief[0].split(" at step ")[1].split(";")[0])
    assert chief[0].split(" at step ")[0] in ("stopped after --max_minutes=0.15",
                                              "stopped by the time limit of another worker")
    assert workers.output(1).splitlines()[-1] in (
        f"worker 1: stopped after --max_minutes=0.15 at step {step}",
        f"worker 1: stopped by the time limit of another worker at step {step}")
    assert tf.train.latest_checkpoint(str(model_dir)) == str(model_dir / f"ckpt-{step}")
    assert_only_chief_files(model_dir)

def test_a_killed_worker_stops_the_others_and_the_cluster_resumes(tmp_path, image_folder, workers):
    model_dir = tmp_path / "run"
    flags = ("--batch_size=2", "--checkpoint_every=2", "--worker_timeout=20")
    workers.start(model_dir, image_folder, *flags, "--max_steps=1000")
    workers.wait_for(0, "step 5/1000 [")
    workers.processes[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    assert workers.wait(timeout=200)[0] == 1
    assert time.monotonic() - killed < 20 + 60  # the timeout, and the time to save nothing and exit
    output = workers.output(0)
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in output, output
    assert errors[0].startswith("error: worker 0: lost contact with another worker of the cluster "
                                "(no answer within --worker_timeout=20 s: ")
    assert errors[0].endswith("restart every worker with the same command, the run resumes from the "
                              "last checkpoint in --model_dir")
    last = int(tf.train.latest_checkpoint(str(model_dir)).rsplit("-", 1)[1])
    assert last >= 4 and last % 2 == 0

    workers.start(model_dir, image_folder, *flags, f"--max_steps={last + 1}")
    assert workers.wait() == [0, 0]
    assert f"resumed from {model_dir / f'ckpt-{last}'} at step {last}" in workers.output(0)
    assert f"finished at step {last + 1}; checkpoint {model_dir / f'ckpt-{last + 1}'}" in \
        workers.output(0)
    assert_only_chief_files(model_dir, runs=2)


@pytest.mark.parametrize("victim, signum", [(0, signal.SIGKILL), (1, signal.SIGSTOP)],
                         ids=["chief killed", "worker frozen"])
def test_a_lost_chief_or_a_frozen_worker_is_reported_within_the_timeout(tmp_path, image_folder,
                                                                       workers, victim, signum):
    # The chief runs the coordination service; a frozen (SIGSTOP) worker keeps its connections
    # open, so only the missing heartbeats and the collective timeout can reveal it.
    workers.start(tmp_path / "run", image_folder, "--batch_size=2", "--checkpoint_every=2",
                  "--worker_timeout=20", "--max_steps=1000")
    workers.wait_for(0, "step 3/1000 [")
    workers.processes[victim].send_signal(signum)
    lost = time.monotonic()
    survivor = workers.processes[1 - victim]
    assert survivor.wait(timeout=200) == 1
    assert time.monotonic() - lost < 20 + 60
    output = workers.output(1 - victim)
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in output, output
    assert errors[0].startswith(f"error: worker {1 - victim}: lost contact with another worker of "
                                "the cluster (no answer within --worker_timeout=20 s: ")


# ---- input sharding -------------------------------------------------------------------------------

# A global batch of 4, 32x32 crops of 8x8 pictures; validation only at the last step.
SHARDED = ("--image_size=32", "--box_size=16", "--batch_size=4", "--validation_every=1000",
           "--worker_timeout=60")


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    """296 tiny noise PNGs and 24 unreadable files among them: enough that no worker's stream,
    read ahead by its prefetching, reaches the second epoch (where the files change workers)."""
    folder = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(1)
    for i in range(296):
        cv2.imwrite(str(folder / f"p{i:03d}.png"), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    for i in range(24):
        (folder / f"p{i * 12 + 6:03d}x.png").write_bytes(b"not an image" * i)
    return folder


def decoded_counts(chief_output):
    """The chief's count of the images each worker decoded, from its last line saying so."""
    line = [line for line in chief_output.splitlines()
            if line.startswith("images decoded by each worker")][-1]
    return [int(part.split()[-1]) for part in line.split(": ", 1)[1].split(", ")]


def named_unreadable(output):
    return {line.split("skipped an unreadable image: ", 1)[1] for line in output.splitlines()
            if "skipped an unreadable image: " in line}


def assert_each_worker_read_its_share(workers, model_dir, count, steps):
    """Each worker decoded its 1/count of the images trained on (4 per step: one critic and one
    generator batch of 2 ... 1 per worker) and the unreadable files it met, named by it alone."""
    consumed = steps * 2 * 4
    decoded = decoded_counts(workers.output(0))
    assert len(decoded) == count
    named = [named_unreadable(workers.output(k)) for k in range(count)]
    skipped = [n - consumed // count for n in decoded]
    for k in range(count):
        # Its unreadable files (the prefetched ones included) are its own: no other worker
        # opened them, as every worker would if each read the whole stream.
        assert 0 <= skipped[k] <= len(named[k]), (k, decoded, named)
        assert all(named[k].isdisjoint(named[j]) for j in range(count) if j != k), named
    assert sum(skipped) >= 1  # the counts were put to the test
    events = read_events(model_dir / "train")
    assert events["skipped_files"][steps] == sum(skipped)  # the cluster's total
    assert [events[f"decoded_images/worker_{k}"][steps] for k in range(count)] == decoded
    return decoded


def test_two_workers_read_their_shards_and_resume_exactly_after_sigkill_and_sigterm(
        tmp_path, many_images, workers):
    flags = (*SHARDED, "--max_steps=8", "--checkpoint_every=3")
    full = tmp_path / "uninterrupted"
    workers.start(full, many_images, *flags)
    assert workers.wait() == [0, 0], workers.output(0)
    decoded = assert_each_worker_read_its_share(workers, full, count=2, steps=8)

    # SIGKILL on every worker at step 4: the restarted cluster resumes from ckpt-3...
    run = tmp_path / "run"
    workers.start(run, many_images, *flags)
    workers.wait_for(0, "step 4/8 [")
    workers.stop()
    assert tf.train.latest_checkpoint(str(run)) == str(run / "ckpt-3")
    # ... and SIGTERM on worker 1 after its step 4 stops it at a step it saves ...
    workers.start(run, many_images, *flags)
    workers.wait_for(0, "step 4/8 [")
    workers.processes[1].send_signal(signal.SIGTERM)
    assert workers.wait() == [distribution.PREEMPTED_EXIT_STATUS] * 2
    assert f"resumed from {run / 'ckpt-3'} at step 3" in workers.output(0)
    step = int(tf.train.latest_checkpoint(str(run)).rsplit("-", 1)[1])
    assert 4 <= step < 8
    # ... from which the same command finishes as the uninterrupted cluster did.
    workers.start(run, many_images, *flags)
    assert workers.wait() == [0, 0]
    assert f"resumed from {run / f'ckpt-{step}'} at step {step}" in workers.output(0)
    assert decoded_counts(workers.output(0)) == decoded
    got, expected = (checkpoint_values(d / "ckpt-8") for d in (run, full))
    assert got.pop("worker_skipped_files/.ATTRIBUTES/VARIABLE_VALUE").tolist() == [
        n - 32 for n in decoded]
    for values in (got, expected):  # the saves counted differ
        values.pop("save_counter/.ATTRIBUTES/VARIABLE_VALUE")
    expected.pop("worker_skipped_files/.ATTRIBUTES/VARIABLE_VALUE")
    assert_close(got, expected, atol=1e-6)


def test_four_workers_read_a_quarter_each_and_train_alike_twice(tmp_path, many_images, workers):
    flags = (*SHARDED, "--max_steps=3", "--checkpoint_every=100")
    for name in ("first", "second"):
        workers.start(tmp_path / name, many_images, *flags, count=4)
        assert workers.wait() == [0] * 4, workers.output(0)
        assert_each_worker_read_its_share(workers, tmp_path / name, count=4, steps=3)
    got, expected = (checkpoint_values(tmp_path / name / "ckpt-3") for name in ("second", "first"))
    assert_close(got, expected, atol=1e-6)


# ---- launch recipes -------------------------------------------------------------------------------

def manifest_args(text):
    """The train.py flags of a deploy/ recipe's command (Kubernetes shell or Vertex AI args)."""
    if "exec python train.py" in text:
        command = text.split("exec python train.py", 1)[1].split("ports:")[0]
        return command.replace("\\\n", " ").split()
    return [[a.strip().strip('",') for a in line.split("[", 1)[1].rstrip("]").split(",")]
            for line in text.replace("\n             ", " ").splitlines()
            if line.strip().startswith("args:")]


def parsed_config(args, monkeypatch):
    from absl import flags as absl_flags

    from inpainting.training import flags

    monkeypatch.chdir(REPO)
    values = absl_flags.FlagValues()
    flags.define_flags(values)
    values(["train.py", *args])
    return flags.config_from_flags(values)


def test_kubernetes_job_gives_each_pod_its_tf_config(monkeypatch):
    text = (REPO / "deploy" / "kubernetes.yaml").read_text()
    script = text.split("            - |\n", 1)[1].split("exec python")[0] + 'echo "$TF_CONFIG"'
    workers = int(text.split('name: WORKERS\n              value: "')[1].split('"')[0])
    assert f"completions: {workers}\n" in text and f"parallelism: {workers}\n" in text
    for index in range(workers):
        result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                                env={"WORKERS": str(workers), "JOB_COMPLETION_INDEX": str(index),
                                     "PATH": os.environ["PATH"]})
        cluster = distribution.parse_tf_config(result.stdout)
        assert cluster.jobs == {"worker": [f"inpainting-train-{i}.inpainting-train:2222"
                                           for i in range(workers)]}
        assert (cluster.task_type, cluster.task_index, cluster.is_chief) == ("worker", index, index == 0)
    config = parsed_config(manifest_args(text), monkeypatch)
    assert (config.strategy, config.model_dir) == ("multi_worker", "/runs/places2")
    assert config.batch_size % workers == 0


def test_vertex_ai_pools_run_the_same_command(monkeypatch):
    text = (REPO / "deploy" / "vertex-ai.yaml").read_text()
    chief, workers = manifest_args(text)
    assert chief == workers
    tasks = sum(int(line.split(":")[1]) for line in text.splitlines()
                if line.strip().startswith("replicaCount:"))
    config = parsed_config(chief, monkeypatch)
    assert config.strategy == "multi_worker" and config.batch_size % tasks == 0
    assert config.model_dir.startswith("/gcs/")


def test_free_local_ports_are_distinct_and_bindable():
    import socket

    ports = distribution.free_local_ports(4)
    assert len(set(ports)) == 4 and all(1024 <= port < 65536 for port in ports)
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", ports[0]))  # released again: a worker can take it
    finally:
        listener.close()
