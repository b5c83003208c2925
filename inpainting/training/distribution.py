"""Training on many machines: the cluster of `TF_CONFIG`, its strategy, and the rules workers share.

Every worker runs the same `train.py` command with the same `--model_dir` (a shared file system);
only the environment variable `TF_CONFIG` differs, e.g. for the second of two workers:

    {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, "task": {"type": "worker", "index": 1}}

A `chief` job of one task may be listed too; the chief is then that task, else worker 0. The
strategy is `tf.distribute.MultiWorkerMirroredStrategy`, created before anything else runs in
TensorFlow. At start-up each task publishes a hash of its `TrainConfig` through the coordination
service and compares it with every other task's, so workers started with different flags stop
with an error naming the flags that differ.

Input: each worker reads and decodes only its share of the training files (`--shard_input`, the
default): `distribute_shards` builds each worker's own part of every global batch from its
`sources.Shard` of the stream. With `--noshard_input` every worker reads the whole single-process
stream and keeps its part of every global batch (`distribute`).

Roles: every task trains its part of each global batch and takes part in every checkpoint save
(saving may all-reduce), but only the chief writes into `--model_dir`; the others write into
`<model_dir>/worker-temp-<task>` folders that are removed right after each save. Logs, summaries,
validation images and the configuration files come from the chief only.

Stopping: at the start of every step the tasks vote (one all-reduce of a flag) on whether any of
them was asked to stop (SIGTERM, Ctrl-C) or passed `--max_minutes`; so the whole cluster stops after
the same step and saves it. When the stop came from a SIGTERM every task exits with
`PREEMPTED_EXIT_STATUS` (143, as a process killed by SIGTERM), so an orchestrator restarts it, and
the restarted cluster resumes from that checkpoint (after Ctrl-C: 130; after the time limit: 0). A
task that dies without warning, or a cluster that does not assemble, makes the others fail within
`--worker_timeout` seconds with an error that says so; the restarted cluster resumes from the last
periodic checkpoint.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys

import tensorflow as tf

from inpainting.data import sources
from inpainting.errors import TrainingError, mention

ENV = "TF_CONFIG"
JOBS = ("chief", "worker")
PREEMPTED_EXIT_STATUS = 143
TEMP_PREFIX = "worker-temp-"
EXAMPLE = ('{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
           '"task": {"type": "worker", "index": 0}}')
_KEY = "inpainting/train_config/"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The tasks of a `TF_CONFIG` and which one this process is.

    Attributes:
        jobs: {"chief": [address], "worker": [address, ...]} (a job may be absent).
        task_type: "chief" or "worker".
        task_index: index of this task in its job.
    """

    jobs: dict
    task_type: str
    task_index: int

    @property
    def num_tasks(self):
        return sum(len(addresses) for addresses in self.jobs.values())

    @property
    def is_chief(self):
        if "chief" in self.jobs:
            return self.task_type == "chief"
        return self.task_index == 0

    @property
    def name(self):
        """"chief" or "worker <index>", for messages."""
        return "chief" if self.task_type == "chief" else f"worker {self.task_index}"

    def tasks(self):
        """(type, index) of every task, the chief's first."""
        return [(job, i) for job in JOBS for i in range(len(self.jobs.get(job, ())))]


def _fail(message):
    raise TrainingError(f"{ENV}: {message}; it must look like {EXAMPLE}")


def parse_tf_config(text):
    """The `Cluster` of a `TF_CONFIG` value; TrainingError (one line) saying what is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        _fail(f"is not valid JSON ({err})")
    if not isinstance(value, dict) or not isinstance(value.get("cluster"), dict):
        _fail('has no "cluster" object')
    jobs = value["cluster"]
    other = sorted(set(jobs) - set(JOBS))
    if other:
        _fail(f"job {other[0]!r} is not supported (only chief and worker: synchronous training "
              "has no parameter servers or evaluators)")
    if not jobs.get("worker") and not jobs.get("chief"):
        _fail('"cluster" lists no "worker" task')
    seen = set()
    for job, addresses in jobs.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            _fail(f'cluster "{job}" must be a list of "host:port" strings, got {addresses!r}')
        for address in addresses:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                _fail(f'cluster "{job}" address {address!r} is not "host:port"')
            if address in seen:
                _fail(f"address {address} is listed twice")
            seen.add(address)
    if len(jobs.get("chief", ())) > 1:
        _fail(f'"chief" lists {len(jobs["chief"])} tasks; there is at most one chief')
    task = value.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        _fail('has no "task" object with "type" and "index"')
    task_type, index = task["type"], task["index"]
    if task_type not in jobs:
        _fail(f"task type {task_type!r} is not a job of the cluster ({', '.join(jobs)})")
    if not isinstance(index, int) or isinstance(index, bool):
        _fail(f"task index must be an integer, got {index!r}")
    if not 0 <= index < len(jobs[task_type]):
        _fail(f'task index {index} is out of range: the cluster has {len(jobs[task_type])} '
              f'"{task_type}" task(s), indices 0 to {len(jobs[task_type]) - 1}')
    return Cluster({job: list(jobs[job]) for job in JOBS if job in jobs}, task_type, index)


def free_local_ports(count):
    """`count` distinct TCP ports free on 127.0.0.1 now, for a cluster of local processes (tests,
    benchmarks). Another process may take one before it is bound again: retry on failure."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_from_environment(environ=None):
    """The `Cluster` of the `TF_CONFIG` environment variable, or None when it is unset or empty."""
    text = (os.environ if environ is None else environ).get(ENV, "").strip()
    return parse_tf_config(text) if text else None


def wants_multi_worker(config, environ=None):
    """The `Cluster` when `config.strategy` asks for many workers, else None.

    `multi_worker` needs `TF_CONFIG`; `auto` picks it when `TF_CONFIG` names more than one task.
    """
    cluster = cluster_from_environment(environ)
    if config.strategy == "multi_worker":
        if cluster is None:
            raise TrainingError(f"{{parameter}}=multi_worker needs the {ENV} environment variable "
                                f"(the cluster and this task), e.g. {ENV}='{EXAMPLE}'", parameter="strategy")
        return cluster
    if config.strategy == "auto" and cluster is not None and cluster.num_tasks > 1:
        return cluster
    return None


def make_strategy(config, cluster):
    """`MultiWorkerMirroredStrategy` for `cluster`; run it before any other TensorFlow op.

    Collectives and the coordination service's heartbeats time out after `config.worker_timeout`
    seconds, so a vanished task makes the others fail instead of waiting forever.
    """
    from tensorflow.python.eager import context

    timeout_ms = int(config.worker_timeout * 1000)
    spec = tf.train.ClusterSpec(cluster.jobs)
    leader = f"/job:{cluster.tasks()[0][0]}/replica:0/task:0"
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=leader, heartbeat_timeout_in_ms=timeout_ms,
        cluster_register_timeout_in_ms=timeout_ms, shutdown_barrier_timeout_in_ms=timeout_ms,
        coordinated_jobs=[_coordinated_job(job, len(addresses))
                          for job, addresses in cluster.jobs.items()])
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type=cluster.task_type, task_id=cluster.task_index, rpc_layer="grpc")
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=config.worker_timeout)
    # The first task (the coordination service's) waits inside TensorFlow for the others without a
    # time limit of its own (the others fail after worker_timeout); a watchdog ends it a little later,
    # printing the error as the command line prints the others (the process cannot: it is killed).
    watchdog = _watchdog(config.worker_timeout + 15, TrainingError(
        f"{cluster.name}: the cluster of {ENV} did not assemble within {{parameter}}="
        f"{config.worker_timeout:g} s (+15); start every task it lists ({cluster.num_tasks}), with the "
        f"addresses reachable from each other", parameter="worker_timeout").describe(flags=True))
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(resolver, communication_options=options)
    except (tf.errors.OpError, RuntimeError, ValueError) as err:
        raise TrainingError(f"{cluster.name}: cannot join the cluster of {ENV} within "
                            f"{{parameter}}={config.worker_timeout:g} s ({_first_line(err)}); "
                            f"start every task it lists ({cluster.num_tasks}), check the addresses "
                            "and that each port is free on its machine", parameter="worker_timeout") from None
    finally:
        watchdog.stdin.close()  # cancels it
        watchdog.wait()
    # TensorFlow's own SIGTERM listener (for its PreemptionCheckpointHandler) would swallow the
    # signal until the training loop installs its handler: until then SIGTERM ends the process.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    strategy.cluster = cluster
    return strategy


# A watchdog process: unless its stdin closes within SECONDS it prints the error and kills PID. (A
# thread cannot do it: TensorFlow keeps Python's lock while it waits for the cluster.)
_WATCHDOG = """
import os, select, signal, sys
pid, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
if not select.select([sys.stdin], [], [], seconds)[0]:
    print("error: " + message, file=sys.stderr, flush=True)
    os.kill(pid, signal.SIGKILL)
"""


def _watchdog(seconds, message):
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(seconds), message],
                            stdin=subprocess.PIPE)


def _coordinated_job(name, num_tasks):
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2

    return coordination_config_pb2.CoordinatedJob(name=name, num_tasks=num_tasks)


def cluster_of(strategy):
    """The `Cluster` of a strategy made by `make_strategy`, else None (one process)."""
    return getattr(strategy, "cluster", None)


def check_batch(config, strategy):
    """TrainingError unless `config.batch_size` (global) divides over all replicas of all workers."""
    cluster = cluster_of(strategy)
    replicas = strategy.num_replicas_in_sync
    if cluster is not None and config.batch_size % replicas:
        raise TrainingError(f"{{parameter}}={config.batch_size} (the global batch) cannot be split "
                            f"evenly over the {replicas} replicas of {cluster.num_tasks} workers; "
                            f"give a multiple of {replicas}", parameter="batch_size")


def config_hash(config):
    """A SHA-256 of a `TrainConfig`'s values (what every worker must agree on)."""
    text = json.dumps(config.to_dict(), sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def check_same_config(config, strategy):
    """TrainingError unless every task of the cluster runs with the same `TrainConfig`.

    Each task publishes its config (and its hash) in the coordination service's key-value store
    and reads every other task's, waiting at most `config.worker_timeout` seconds.
    """
    cluster = cluster_of(strategy)
    if cluster is None:
        return
    from tensorflow.python.eager import context

    own = config.to_dict()
    me = (cluster.task_type, cluster.task_index)
    context.context().set_config_key_value(
        _KEY + "%s/%d" % me, json.dumps({"hash": config_hash(config), "config": own}, default=list))
    for job, index in cluster.tasks():
        if (job, index) == me:
            continue
        try:
            text = context.context().get_config_key_value(
                _KEY + f"{job}/{index}", timeout_in_ms=int(config.worker_timeout * 1000))
        except tf.errors.OpError as err:
            raise TrainingError(f"{cluster.name}: {job} {index} did not report its flags within "
                                f"{{parameter}}={config.worker_timeout:g} s ({_first_line(err)}); "
                                "start every worker of TF_CONFIG", parameter="worker_timeout") from None
        theirs = json.loads(text)
        if theirs["hash"] != config_hash(config):
            other = "chief" if job == "chief" else f"worker {index}"
            differ = [f"{mention(key)}={json.dumps(theirs['config'].get(key), default=list)} there, "
                      f"{json.dumps(value, default=list)} here"
                      for key, value in own.items()
                      if json.loads(json.dumps(value, default=list)) != theirs["config"].get(key)]
            raise TrainingError(f"{cluster.name}: {other} was started with different flags "
                                f"({'; '.join(differ) or 'another program version'}); start every "
                                "worker with the same command, only TF_CONFIG differs")


def distribute(strategy, dataset):
    """The per-replica iterator of a dataset of global batches.

    On many workers each one keeps its own replicas' parts of every global batch (data sharding
    by element after batching), so the cluster trains on exactly the batches one process would.
    """
    if cluster_of(strategy) is not None:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    return iter(strategy.experimental_distribute_dataset(dataset))


def shards_input(config, strategy):
    """Whether each worker of `strategy`'s cluster reads only its share of the input."""
    return cluster_of(strategy) is not None and config.shard_input


def num_workers(strategy):
    """The number of tasks (worker processes) of `strategy`: 1 for one process."""
    cluster = cluster_of(strategy)
    return 1 if cluster is None else cluster.num_tasks


def distribute_shards(strategy, make, batch_size):
    """The per-replica iterator of every worker's own batches.

    Args:
        strategy: a strategy of `make_strategy`.
        make: function `sources.Shard` -> the dataset of that worker's part of every global
            batch (called once on each worker, with its input pipeline's index).
        batch_size: the global batch.

    A worker with several replicas splits its part of each batch over them in order.
    """
    def worker_dataset(context):
        dataset = make(sources.Shard(context.input_pipeline_id, context.num_input_pipelines))
        if context.num_replicas_in_sync > context.num_input_pipelines:
            dataset = dataset.rebatch(context.get_per_replica_batch_size(batch_size),
                                      drop_remainder=True)
        return dataset

    return iter(strategy.distribute_datasets_from_function(worker_dataset))


def is_chief(strategy):
    cluster = cluster_of(strategy)
    return cluster is None or cluster.is_chief


def temp_dir(model_dir, cluster):
    """The folder a non-chief task saves its checkpoints into (removed after each save)."""
    return os.path.join(model_dir, f"{TEMP_PREFIX}{cluster.task_type}-{cluster.task_index}")


class _WorkerCheckpointManager:
    """A non-chief task's stand-in for `tf.train.CheckpointManager`: `latest_checkpoint` is the
    chief's, and `save` writes into a temporary folder that is removed right after."""

    def __init__(self, checkpoint, model_dir, cluster, **kwargs):
        self._checkpoint, self._model_dir, self._kwargs = checkpoint, model_dir, kwargs
        self._temp_dir = temp_dir(model_dir, cluster)

    @property
    def latest_checkpoint(self):
        return tf.train.latest_checkpoint(self._model_dir)

    def save(self, checkpoint_number=None):
        """Saves like the chief (every task must), then deletes; returns the chief's prefix."""
        manager = tf.train.CheckpointManager(self._checkpoint, self._temp_dir, **self._kwargs)
        try:
            path = manager.save(checkpoint_number=checkpoint_number)
        finally:
            remove_temp_dir(self._temp_dir)
        return os.path.join(self._model_dir, os.path.basename(path))


def remove_temp_dir(path):
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


def checkpoint_manager(checkpoint, model_dir, strategy, **kwargs):
    """A `tf.train.CheckpointManager` of `model_dir` for the chief (or one process); for other
    tasks one that writes into a temporary folder removed after each save."""
    cluster = cluster_of(strategy)
    if cluster is None or cluster.is_chief:
        return tf.train.CheckpointManager(checkpoint, model_dir, **kwargs)
    remove_temp_dir(temp_dir(model_dir, cluster))  # left by a task that was killed while saving
    return _WorkerCheckpointManager(checkpoint, model_dir, cluster, **kwargs)


class StopVote:
    """Whether the cluster stops before the next step: one all-reduce of every task's reason.

    A reason is None, "SIGTERM", "SIGINT" or a text of this task's own (e.g. its time limit); the
    cluster stops when any task has one, a signal taking precedence. With one process it only
    returns the local reason.
    """

    _KINDS = ("SIGTERM", "SIGINT", "other")

    def __init__(self, strategy):
        self.strategy = strategy
        self.cluster = cluster_of(strategy)
        if self.cluster is not None:
            self._count = tf.function(self._count_votes)

    def _count_votes(self, wishes):
        def replica():  # the tensor is taken inside the replica, so it lives on its device
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                                  tf.identity(wishes))

        votes = self.strategy.run(replica)
        return self.strategy.experimental_local_results(votes)[0]

    def __call__(self, reason):
        """`reason` (or None) of this task -> the reason the cluster stops now, or None."""
        if self.cluster is None or not self.cluster.num_tasks > 1:
            return reason
        kind = reason if reason in self._KINDS[:2] else "other" if reason else None
        wishes = tf.constant([float(kind == k) for k in self._KINDS])
        votes = self._count(wishes).numpy()
        for k, count in zip(self._KINDS, votes):
            if count:
                return reason if kind == k else (f"{k} on another worker" if k != "other" else
                                                 "the time limit of another worker")
        return None


def summary_writer(strategy, path):
    """A TensorBoard writer of `path` for the chief (or one process); a no-op one for other tasks."""
    if is_chief(strategy):
        return tf.summary.create_file_writer(path)
    return tf.summary.create_noop_writer()


@contextlib.contextmanager
def chief_output(strategy):
    """Console output of a training run from the chief only: other tasks' stdout is discarded."""
    if is_chief(strategy):
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def finish(result, strategy):
    """`Trainer.fit()`'s result, after a last line from each non-chief task of a cluster. Every
    task of a cluster that stopped for a SIGTERM (on any task) has "signal" "SIGTERM", so each exits
    with `PREEMPTED_EXIT_STATUS` (`stopping.exit_status`)."""
    cluster = cluster_of(strategy)
    if cluster is not None and not cluster.is_chief:
        print(f"{cluster.name}: {result['status']} at step {result['step']}", flush=True)
    return result


# The errors a collective or the coordination service raises when a task vanished.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
               tf.errors.CancelledError, tf.errors.InternalError, tf.errors.UnknownError)


@contextlib.contextmanager
def peer_failures(config, strategy):
    """Turns a lost task into a TrainingError that says what happened and what to do."""
    cluster = cluster_of(strategy)
    try:
        yield
    except PEER_ERRORS as err:
        if cluster is None:
            raise
        raise TrainingError(f"{cluster.name}: lost contact with another worker of the cluster "
                            f"(no answer within {{parameter}}={config.worker_timeout:g} s: "
                            f"{_first_line(err)}); restart every worker with the same command, the "
                            f"run resumes from the last checkpoint in {mention('model_dir')}",
                            parameter="worker_timeout") from None


def _first_line(err):
    """The first informative line of an error (not TensorFlow's "Graph execution error:" header or
    its node trace), after the error's type."""
    text = getattr(err, "message", None) or str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()
             and not line.strip().startswith(("Graph execution error", "Detected at node", "File ",
                                              "[[", "{{"))]
    detail = lines[0].rstrip(":") if lines else ""
    return f"{type(err).__name__}: {detail}" if detail else type(err).__name__
