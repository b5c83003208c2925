"""Training of DeepFill v1 and v2: critic updates and generator updates under `tf.distribute`.

v1 trains a global and a local WGAN-GP critic; v2 an SN-PatchGAN critic with the hinge loss, on
holes that unite a box and brush strokes (and, guided, edge maps of the images).

One training step is what the original calls an iteration: `critic_steps` critic updates, each on
its own batch, box and mask, then one generator update on a further batch. All randomness (data
order, crops, flips, boxes, masks and the gradient-penalty weights) comes from the input pipeline,
as a pure function of the seed and the position in the stream, so a run resumed from step k sees
the data an uninterrupted run sees, and the update does not depend on how the batch is split
across devices. On a cluster each worker reads its own shard of the stream (`sources.Shard`), so
the stream is also a function of the number of workers; each worker's count of unreadable files is
checkpointed ("worker_skipped_files") to resume its shard exactly. One Adam optimizer serves the generator and the critics, as in the original, so
its bias correction counts every update; under `--precision=mixed_float16` it is wrapped in
Keras's dynamic loss scaling, whose state checkpoints keep under "loss_scale".

`model_dir` receives `model_config.json`, `train_config.json`, checkpoints `ckpt-<step>` (generator,
critics, optimizer, step) and TensorBoard logs under `train/` and `validation/`; `validation/` also
holds the held-out quality of the completed validation images (`inpainting.metrics`) next to
OpenCV's classical fills of the same holes, and the run's health (`inpainting.training.health`).
One run at a time uses it: the process that writes the checkpoints (the chief; today the only
process) holds an exclusive lock on `model_dir/.train.lock` (`inpainting.locks`) from the creation
of its `Trainer` to the end of `fit()`, and a second run in the same `model_dir` is refused. The
kernel releases the lock when the process dies, SIGKILL included. Signals and exit statuses are
`inpainting.training.stopping`'s, the console line `inpainting.training.progress`'s.
"""

import functools
import glob
import math
import os
import re
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from inpainting import classical, files, locks, metrics
from inpainting.checkpoints import reading, store
from inpainting.config import CONFIG_FILE, TRAIN_CONFIG_FILE, ModelConfig, TrainConfig
from inpainting.data import pipeline, sources
from inpainting.errors import TrainingError, mention
from inpainting.model import layers
from inpainting.model.critics import make_critics
from inpainting.model.generator import Generator
from inpainting.model.layers import upsample_nearest
from inpainting.training import distribution, losses
from inpainting.training.health import Health
from inpainting.training.progress import Progress
from inpainting.training.stopping import StopRequest


_DEFAULTS = TrainConfig()
LOCK_FILE = ".train.lock"
# Update stats that every replica computes alike (besides the gradient norms).
SAME_ON_EVERY_REPLICA = ("loss_scale", "update_skipped")
# The held-out metrics TensorBoard shows (of `inpainting.metrics.METRIC_NAMES`), under
# "heldout/<name>" for the model and "heldout/<name>_<method>" for the classical fills.
HELDOUT_METRICS = ("l1_hole", "l1_image", "psnr_hole", "psnr_image", "ssim_hole", "ssim_image")
BASELINE_METHODS = ("telea", "ns")

def configure_devices(config):
    """Splits the CPU into `config.cpu_devices` logical devices (must run before TF starts)."""
    if not config.cpu_devices:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * config.cpu_devices)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != config.cpu_devices:
            raise TrainingError(f"{{parameter}}={config.cpu_devices}: TensorFlow already started with "
                                f"{have} logical CPU device(s); set it before anything else runs",
                                parameter="cpu_devices") from None


def make_strategy(config):
    """The `tf.distribute` strategy named by `config.strategy` (see `inpainting.training.flags`)."""
    cluster = distribution.wants_multi_worker(config)
    if cluster is not None:  # first: before anything starts TensorFlow
        strategy = distribution.make_strategy(config, cluster)
        distribution.check_same_config(config, strategy)
        distribution.check_batch(config, strategy)
        return strategy
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    if config.strategy == "one_device" or (config.strategy == "auto" and len(gpus) < 2):
        return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else cpus[0])
    devices = gpus or cpus
    if config.batch_size % len(devices):
        raise TrainingError(f"{{parameter}}={config.batch_size} cannot be split evenly across "
                            f"{len(devices)} devices ({', '.join(devices)})", parameter="batch_size")
    return tf.distribute.MirroredStrategy(devices)


def _to_float(images):
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def _global_norm(grads):
    return tf.linalg.global_norm([g for g in grads if g is not None])


class Trainer:
    """Builds the networks, optimizer, data and checkpoints of one run; `fit()` trains.

    Args:
        config: a `TrainConfig`.
        strategy: a `tf.distribute.Strategy` (default: `make_strategy(config)`).

    The chief (the process that writes checkpoints; `strategy.extended.should_checkpoint`) locks
    `model_dir` from here to the end of `fit()` (or `close()`); TrainingError if another run holds it.

    Example:
        >>> Trainer(TrainConfig(model_dir="/tmp/run", max_steps=10)).fit()
    """

    def __init__(self, config, strategy=None):
        self.config = config
        self.strategy = strategy or make_strategy(config)
        check_dilated_conv(config)
        locks.make_directory(config.model_dir, "model_dir", TrainingError)
        self.chief = distribution.is_chief(self.strategy)
        self._lock = locks.DirectoryLock(config.model_dir, "train.py run", "model_dir", name=LOCK_FILE,
                                         error=TrainingError)
        self._lock_model_dir()
        try:
            self._set_up()
        except BaseException:
            self.close()
            raise

    def _lock_model_dir(self):
        if self.chief:
            self._lock.acquire()

    def close(self):
        """Releases the lock on `model_dir` (`fit()` does when it ends)."""
        self._lock.release()

    def _set_up(self):
        config = self.config
        self.model_config = config.model_config()
        self.objective = losses.make_objective(config)
        self._check_model_dir()
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            self.generator = Generator(self.model_config, attention=config.attention, flow_dtype="float32")
            self.generator.build()
            self.critics = make_critics(self.model_config)
            self.critics.build()
            self.optimizer = keras.optimizers.Adam(config.learning_rate, beta_1=config.beta1,
                                                   beta_2=config.beta2,
                                                   epsilon=config.adam_epsilon)
            # mixed_float16: dynamic loss scaling around the same Adam. Checkpoints keep the Adam
            # under "optimizer" as every run does, and the scaler's state under "loss_scale".
            self.scaler = None
            if config.precision == "mixed_float16":
                self.scaler = keras.optimizers.LossScaleOptimizer(self.optimizer)
            (self.scaler or self.optimizer).build(self.generator.trainable_variables
                                                  + self.critics.trainable_variables)
            # --ema_decay: the average of the generator's weights, which checkpoints store as the
            # generator every tool loads (the trained weights as "trained_generator").
            self.average = None
            if config.ema_decay:
                self.average = Generator(self.model_config, attention=config.attention,
                                         flow_dtype="float32")
                self.average.build()
        self.saved_generator = self.generator if self.average is None else self.average
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # Unreadable files met so far: with the step it fixes where the data stream resumes.
        self.skipped_files = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_files")
        state = dict(critics=self.critics, optimizer=self.optimizer, step=self.step,
                     skipped_files=self.skipped_files)
        # A cluster whose workers read their own shards: each worker's count fixes where its
        # stream resumes (skipped_files is their sum).
        self.workers = distribution.num_workers(self.strategy)
        self.sharded = distribution.shards_input(config, self.strategy)
        self.worker_skipped_files = None
        if self.sharded:
            self.worker_skipped_files = tf.Variable(tf.zeros([self.workers], tf.int64),
                                                    trainable=False, name="worker_skipped_files")
            state["worker_skipped_files"] = self.worker_skipped_files
        if self.scaler is not None:
            state["loss_scale"] = tf.train.Checkpoint(scale=self.scaler.dynamic_scale,
                                                      good_steps=self.scaler.step_counter)
        self.checkpoint = tf.train.Checkpoint(**self._networks(), **state)
        self.manager = distribution.checkpoint_manager(
            self.checkpoint, config.model_dir, self.strategy, max_to_keep=config.keep_checkpoints,
            checkpoint_name=store.CHECKPOINT_NAME)
        self.restored = self._restore(state)
        # The flags win over a restored learning rate, so a resumed run can change it.
        self.optimizer.learning_rate.assign(config.learning_rate)
        # XLA compiles the per-replica updates; reading the iterator stays outside the cluster.
        self._critic_replica = tf.function(self._critic_update, jit_compile=True) \
            if config.xla else self._critic_update
        self._generator_replica = tf.function(self._generator_update, jit_compile=True) \
            if config.xla else self._generator_update
        self.critic_step = tf.function(self._critic_step)
        self.generator_step = tf.function(self._generator_step)
        self.average_step = tf.function(self._average_update)
        self._outputs = tf.function(lambda inputs: self.saved_generator(inputs))
        self.health = Health()
        self._baselines = None  # (validation batch, the classical fills' held-out metrics)

    # ---- set-up --------------------------------------------------------------------------------

    def _check_model_dir(self):
        # Without a checkpoint the folder holds no model (a run that failed before its first save):
        # its configuration files are rewritten by this run.
        path = os.path.join(self.config.model_dir, CONFIG_FILE)
        if os.path.isfile(path) and tf.train.latest_checkpoint(self.config.model_dir):
            existing = ModelConfig.load(self.config.model_dir)
            if existing != self.model_config:
                diff = ", ".join(f"{k}={v!r} (flags say {getattr(self.model_config, k)!r})"
                                 for k, v in existing.to_dict().items()
                                 if v != self.model_config.to_dict()[k])
                raise TrainingError(f"{{parameter}}={self.config.model_dir} holds a model with {diff}; "
                                    "use a new {parameter} or the flags of that run", parameter="model_dir")

    def _networks(self):
        """The generators by checkpoint key: with an average, it is "generator" and the trained
        weights "trained_generator"; without, the trained weights are "generator"."""
        if self.average is None:
            return {"generator": self.generator}
        return {"generator": self.average, "trained_generator": self.generator}

    def _restore(self, state):
        """Restores the latest checkpoint of model_dir, or init_checkpoint; returns what happened.

        A run that starts --ema_decay on a model_dir trained without it starts the average from
        the trained weights; one that leaves it out where the checkpoints hold an average is
        refused (resuming would drop the average).
        """
        latest = self.manager.latest_checkpoint
        if latest:
            missing = reading.missing_files(latest)
            if missing:
                raise TrainingError(f"cannot resume from {mention('model_dir')}={self.config.model_dir}: "
                                    f"{missing}, or use a new {mention('model_dir')}")
            averaged = "trained_generator" in store.stored_objects(latest)
            if averaged and self.average is None:
                raise TrainingError(f"{latest} holds an average of the generator's weights; resume with "
                                    f"{{parameter}} above 0 (e.g. that run's, in {TRAIN_CONFIG_FILE}), or "
                                    f"use a new {mention('model_dir')}", parameter="ema_decay")
            state, shards_note = self._worker_counts_stored(latest, state)
            # A checkpoint without an average holds the trained weights as "generator".
            average_starts = not averaged and self.average is not None
            networks = {"generator": self.generator} if average_starts else self._networks()
            checkpoint = self.checkpoint if not (average_starts or shards_note) else \
                tf.train.Checkpoint(**networks, **state)
            try:
                checkpoint.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as err:
                raise TrainingError(f"cannot resume from {latest}: {str(err).splitlines()[0]}; "
                                    "use a new {parameter}", parameter="model_dir") from None
            what = f"resumed from {latest} at step {int(self.step.numpy())}{shards_note}"
            if checkpoint is self.checkpoint:
                return what
            self.checkpoint.save_counter.assign(checkpoint.save_counter)
            if not average_starts:
                return what
            what += " (the average of the generator's weights starts there)"
        elif self.config.init_checkpoint:
            what = self._initialise_from(self.config.init_checkpoint)
        else:
            what = "started from random weights"
        if self.average is not None:
            self.average.set_weights(self.generator.get_weights())
        return what

    def _worker_counts_stored(self, latest, state):
        """(the state to restore, a note) for the per-worker counts of unreadable files: a
        checkpoint of the same number of sharded workers restores them; one without them (one
        process, --noshard_input) or of another number of workers starts every worker's shard of
        the stream afresh from the restored step, counting from 0."""
        if self.worker_skipped_files is None:
            return state, ""
        key = "worker_skipped_files/.ATTRIBUTES/VARIABLE_VALUE"
        shapes = tf.train.load_checkpoint(latest).get_variable_to_shape_map()
        if shapes.get(key) == [self.workers]:
            return state, ""
        state = {name: value for name, value in state.items() if name != "worker_skipped_files"}
        before = f"{shapes[key][0]} workers" if key in shapes else "one stream"
        return state, (f" (its input was read as {before}; each of the {self.workers} workers' "
                       f"shards starts there)")

    def _initialise_from(self, path):
        generator, critics = store.load_networks(path)
        source = generator.config
        self._check_init_config(source, path)
        self.generator.set_weights(generator.get_weights())
        with_critics = critics is not None and self._critics_fit(critics, source)
        if with_critics:
            self.critics.set_weights(critics.get_weights())
        what = "generator and critics" if with_critics else "generator (critics random)"
        return f"initialised the {what} from {path}"

    def _check_init_config(self, source, path):
        def describe(config, noun=""):
            return f"{config.version}{' guided' * config.guided}{noun} with cnum={config.cnum}"

        keys = ("version", "cnum", "guided")
        if any(getattr(source, k) != getattr(self.model_config, k) for k in keys):
            raise TrainingError(f"{{parameter}}={path} holds a {describe(source, ' model')}; the "
                                f"flags ask for {describe(self.model_config)}", parameter="init_checkpoint")

    def _critics_fit(self, critics, source):
        """Whether the weights of `critics` (of the init checkpoint) fit this run's critics: the v1
        critics' dense layers fix their input sizes, the SN-PatchGAN takes any size."""
        fit = [tuple(w.shape) for w in critics.weights] == [tuple(w.shape) for w in self.critics.weights]
        if not fit:
            logging.warning("init checkpoint critics take %s / %s inputs, this run %s / %s: the critics "
                            "start from random weights", source.image_size, source.local_size,
                            self.model_config.image_size, self.model_config.local_size)
        return fit

    # ---- the two updates -----------------------------------------------------------------------

    def _scaled(self, loss):
        """The loss the gradient is taken of: `loss` times the loss scale under mixed_float16."""
        return loss if self.scaler is None else self.scaler.scale_loss(loss)

    def _apply(self, loss, tape, variables, stats, update):
        """Gradients of `loss` (`_scaled`) for `variables`, applied by the shared optimizer.

        Adds to `stats` the gradient's norm (`<update>_grad_norm`, of the gradient summed over
        replicas, i.e. of the whole global batch) and, under loss scaling, `loss_scale` (after this
        update) and `update_skipped`: 1 where the scaled gradient overflowed, so the update was
        skipped and the scale halved (the norm is then not finite).
        """
        grads = tape.gradient(loss, variables)
        context = tf.distribute.get_replica_context()
        summed = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        norm = _global_norm(summed)
        if self.scaler is not None:
            norm = norm / self.scaler.dynamic_scale
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in summed if g is not None])
            # The scaler skips on its replica's own gradient: where another replica's overflowed,
            # make this one's not finite too, so that every replica skips the same update.
            poison = tf.where(finite, 0.0, math.nan)
            grads = [None if g is None else g + tf.cast(poison, g.dtype) for g in grads]
            self.scaler.apply(grads, variables)
            stats["update_skipped"] = 1.0 - tf.cast(finite, tf.float32)
            stats["loss_scale"] = tf.identity(self.scaler.dynamic_scale)
        else:
            self.optimizer.apply(grads, variables)
        stats[f"{update}_grad_norm"] = norm

    def _average(self, values):
        batch = self.config.batch_size
        return {key: tf.nn.compute_average_loss(value, global_batch_size=batch)
                for key, value in values.items()}

    def _inputs(self, batch):
        """(images in [-1, 1], mask, sketch or None) of a batch; the generator's input list."""
        images, mask = _to_float(batch["image"]), batch["mask"]
        sketch = batch["edge"] if self.model_config.guided else None
        return images, mask, sketch, [images, mask] + ([] if sketch is None else [sketch])

    def _critic_update(self, batch):
        images, mask, sketch, inputs = self._inputs(batch)
        refined = tf.cast(self.generator(inputs, training=True)["refined"], tf.float32)
        completed = losses.paste(images, tf.stop_gradient(refined), mask)
        variables = self.critics.trainable_variables
        with tf.GradientTape() as tape:
            # A training batch has one box (repeated along the batch): the fastest crop.
            terms = self.objective.critic_losses(
                self.critics, images, completed, mask, sketch=sketch, bbox=batch["bbox"][0],
                alpha_local=batch["alpha_local"], alpha_global=batch["alpha_global"])
            stats = self._average(terms)
            loss = self._scaled(stats["d_loss"])
        self._apply(loss, tape, variables, stats, "critic")
        stats["skipped_files"] = tf.reduce_max(batch["skipped"], keepdims=True)
        return stats

    def _generator_update(self, batch):
        images, mask, sketch, inputs = self._inputs(batch)
        variables = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.generator(inputs, training=True)
            outputs = {key: tf.cast(outputs[key], tf.float32) for key in ("coarse", "refined")}
            terms = self.objective.generator_losses(self.critics, images, outputs, mask, sketch=sketch,
                                                    bbox=batch["bbox"][0])
            stats = self._average(terms)
            loss = self._scaled(stats["g_loss"])
        self._apply(loss, tape, variables, stats, "generator")
        stats["skipped_files"] = tf.reduce_max(batch["skipped"], keepdims=True)
        return stats

    def _average_update(self, step):
        """Moves the average towards the trained weights after training step `step` (a float32
        tensor), with decay min(ema_decay, (1 + step) / (10 + step)) as
        `tf.train.ExponentialMovingAverage` with num_updates: early steps, whose weights are far
        from the later ones, are forgotten sooner."""
        decay = tf.minimum(self.config.ema_decay, (1.0 + step) / (10.0 + step))
        for average, weight in zip(self.average.weights, self.generator.weights):
            average.assign(decay * average + (1.0 - decay) * weight)

    def _run(self, update, iterator):
        per_replica = self.strategy.run(update, args=(next(iterator),))
        stats = {}
        for key, value in per_replica.items():
            if key == "skipped_files" and self.sharded:  # each worker's stream counts its own
                counts = tf.reshape(self.strategy.gather(value, axis=0), [self.workers, -1])
                self.worker_skipped_files.assign(tf.reduce_max(counts, axis=1))
                stats[key] = tf.reduce_sum(self.worker_skipped_files)
            elif key == "skipped_files":  # cumulative along the global batch: its largest is the total
                stats[key] = tf.reduce_max(self.strategy.gather(value, axis=0))
            elif key in SAME_ON_EVERY_REPLICA or key.endswith("grad_norm"):
                stats[key] = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
            else:
                stats[key] = self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
        return stats

    def _critic_step(self, iterator):
        return self._run(self._critic_replica, iterator)

    def _generator_step(self, iterator):
        return self._run(self._generator_replica, iterator)

    # ---- data ----------------------------------------------------------------------------------

    def training_data(self):
        """The distributed training batches, from the position of the restored step on: on a
        cluster with sharded input each worker's own part of them."""
        if self.sharded:
            counts = self.worker_skipped_files.numpy()
            return distribution.distribute_shards(
                self.strategy, lambda shard: self.batches(shard, int(counts[shard.index])),
                self.config.batch_size)
        return distribution.distribute(self.strategy, self.batches())

    def batches(self, shard=sources.WHOLE, skipped_before=None):
        """The training batches (`shard`'s part of them) from the restored step on, after
        `skipped_before` unreadable files (default: the restored count)."""
        c = self.config
        images = functools.partial(
            pipeline.image_dataset, sources.parse_dataset(c.dataset), image_size=c.image_size,
            preprocess=c.preprocess, flip=c.flip, seed=c.seed, training=True,
            data_dir=c.data_dir or None, download=c.download, shard=shard)
        return pipeline.training_batches(
            images, batch_size=c.batch_size, image_size=c.image_size, box_size=c.box_size,
            max_delta=c.max_delta, margins=c.margins, seed=c.seed, mask_dir=c.mask_dir or None,
            free_form=c.free_form_masks, strokes=self._strokes(), edges=c.guided,
            start_batch=int(self.step.numpy()) * c.batches_per_step,
            skipped_before=int(self.skipped_files.numpy()) if skipped_before is None
            else skipped_before, shard=shard)

    def decoded_images(self, step):
        """The images each worker has decoded for the batches of `step` steps: its part of them
        and the unreadable files it met (with unsharded input every worker decodes them all)."""
        c = self.config
        if not self.sharded:
            return [step * c.batches_per_step * c.batch_size + int(self.skipped_files.numpy())] \
                * self.workers
        part = step * c.batches_per_step * c.batch_size // self.workers
        return [part + int(count) for count in self.worker_skipped_files.numpy()]

    def _strokes(self):
        """The brush strokes' widths of this run, as the data pipeline takes them."""
        low, high = self.config.stroke_width
        return {"min_width": low, "max_width": high}

    def validation_batch(self):
        """The fixed validation images, boxes and masks, as one batch of numpy arrays."""
        c = self.config
        source = sources.parse_dataset(c.validation_dataset or c.dataset)
        images = pipeline.image_dataset(source, image_size=c.image_size, preprocess=c.preprocess,
                                        flip=False, seed=c.seed, training=False,
                                        data_dir=c.data_dir or None, download=c.download)
        batches = pipeline.validation_batches(images, count=c.validation_images, image_size=c.image_size,
                                              box_size=c.box_size, mask_dir=c.mask_dir or None,
                                              free_form=c.free_form_masks, strokes=self._strokes(),
                                              edges=c.guided)
        for batch in batches.take(1):
            return {key: value.numpy() for key, value in batch.items()}
        raise TrainingError(f"no readable validation image in "
                            f"{c.validation_dataset or c.dataset}")

    # ---- summaries -----------------------------------------------------------------------------

    def validate(self, batch, writer, step):
        """Writes validation losses, held-out metrics, health and the image grid.

        Scalars: the reconstruction losses; `heldout/<metric>` (`HELDOUT_METRICS`, means over the
        batch) of the completed images (the refined output rounded to 8 bits in the holes, the
        images elsewhere) and `heldout/<metric>_<method>` of OpenCV's fills of the same holes
        (`BASELINE_METHODS`; computed once for a batch, so they draw flat lines); `health/*`
        (`Health.check`). Image: the grid input | masked | coarse | refined | flow.

        Args:
            batch: the validation batch of numpy arrays (`validation_batch()`).
            writer: a `tf.summary` writer.
            step: the training step the values are written at.

        Returns:
            The grid, float32 [B, H, 5 * W, 3] in [0, 1] (before clipping).
        """
        images, mask, _, inputs = self._inputs({key: tf.constant(value) for key, value in batch.items()})
        outputs = self._outputs(inputs)
        outputs = {key: tf.cast(value, tf.float32) for key, value in outputs.items()}
        terms = self.objective.reconstruction_losses(images, outputs, mask, bbox=batch["bbox"])
        factor = self.model_config.image_size[0] // outputs["flow"].shape[1]
        columns = [images, images * (1.0 - mask) + mask, outputs["coarse"],
                   losses.paste(images, outputs["refined"], mask),
                   upsample_nearest(outputs["flow"], factor)]
        grid = tf.concat([(c + 1.0) / 2.0 for c in columns], axis=2)
        originals, holes = np.asarray(batch["image"], np.uint8), np.asarray(batch["mask"])[..., 0] > 0.5
        refined = (outputs["refined"].numpy().astype(np.float64) + 1.0) * 127.5
        scalars = {f"heldout/{key}": value
                   for key, value in heldout_metrics(refined, originals, holes).items()}
        scalars.update(self.baseline_metrics(batch))
        health, warnings = self.health.check(step, refined, originals, holes)
        scalars.update(health)
        if self.chief:
            for line in warnings:
                print(f"warning: {line}", file=sys.stderr, flush=True)
        with writer.as_default(step=step):
            for key, value in terms.items():
                tf.summary.scalar(key, tf.reduce_mean(value))
            for key, value in scalars.items():
                tf.summary.scalar(key, value)
            tf.summary.image("input | masked | coarse | refined | flow", tf.clip_by_value(grid, 0, 1),
                             max_outputs=len(batch["image"]))
        return grid

    def baseline_metrics(self, batch):
        """{"heldout/<metric>_<method>": mean} of OpenCV's fills of the validation batch's holes,
        computed at the first call for a batch and reused (the validation batch is fixed)."""
        if self._baselines is None or self._baselines[0] is not batch:
            originals = np.asarray(batch["image"], np.uint8)
            holes = np.asarray(batch["mask"])[..., 0] > 0.5
            values = {}
            for method in BASELINE_METHODS:
                filled = np.stack([classical.inpaint(image, hole, method)
                                   for image, hole in zip(originals, holes)])
                values.update((f"heldout/{key}_{method}", value)
                              for key, value in heldout_metrics(filled, originals, holes).items())
            self._baselines = (batch, values)
        return dict(self._baselines[1])

    # ---- the loop ------------------------------------------------------------------------------

    def fit(self):
        """Trains up to `max_steps` (or `max_minutes`, or a stop request) and saves a checkpoint.

        Releases the lock on `model_dir` when it ends.

        Returns:
            {"step": the last step, "status": "finished" or why it stopped, "checkpoint": prefix,
             "signal": "SIGTERM" or "SIGINT" when a signal stopped the run, else None}.

        Raises:
            TrainingError: a loss or gradient became NaN or infinite (the last checkpoint is kept),
                the data ran out, or another run holds `model_dir`.
        """
        self._lock_model_dir()
        try:
            return self._fit()
        finally:
            self.close()

    def _fit(self):
        c = self.config
        if distribution.is_chief(self.strategy):  # the other workers only train and save
            self.generator.config.save(c.model_dir)
            c.save(c.model_dir)
        logging.info("training configuration: %s", c.to_dict())
        changed = [f"{key}={value}" for key, value in c.to_dict().items()
                   if value != getattr(_DEFAULTS, key)]
        print(f"configuration (all values in {os.path.join(c.model_dir, TRAIN_CONFIG_FILE)}): "
              f"{' '.join(changed) or 'the defaults'}", flush=True)
        print(f"{self.restored}; model_dir {c.model_dir}", flush=True)
        iterator = self.training_data()
        validation = self.validation_batch()
        train_writer = distribution.summary_writer(self.strategy, os.path.join(c.model_dir, "train"))
        validation_writer = distribution.summary_writer(self.strategy,
                                                        os.path.join(c.model_dir, "validation"))
        deadline = time.monotonic() + 60 * c.max_minutes if c.max_minutes else math.inf
        progress = Progress(int(self.step.numpy()), c.max_steps, c.log_every,
                            images_per_step=c.batch_size * c.batches_per_step, deadline=deadline)
        stop = StopRequest()
        vote = distribution.StopVote(self.strategy)  # a cluster stops after the same step
        step = int(self.step.numpy())
        saved = self.manager.latest_checkpoint
        status, stopped_by = "finished", None
        try:
            with stop.installed():
                while step < c.max_steps:
                    late = f"--max_minutes={c.max_minutes:g}" if time.monotonic() > deadline else None
                    reason = vote(stop.requested or late)
                    if reason:
                        # This task's time limit, or a signal here or on another worker ("SIGTERM
                        # on another worker"), or another worker's time limit.
                        stopped_by = reason.split()[0] if reason.startswith(("SIGTERM", "SIGINT")) else None
                        status = f"stopped after {reason}" if reason == late else f"stopped by {reason}"
                        break
                    stats = self.train_step(iterator, step + 1)
                    step += 1
                    self.step.assign(step)
                    self.skipped_files.assign(int(stats["skipped_files"]))
                    self.health.record(stats)
                    if step % c.checkpoint_every == 0:
                        saved = self.manager.save(checkpoint_number=step)
                    progress.update(step, stats)
                    if step % c.summary_every == 0 or step == c.max_steps:
                        _write_scalars(train_writer, step, stats, progress.images_per_second,
                                       self.optimizer.learning_rate, self._decoded_scalars(step))
                    if step % c.validation_every == 0 or step == c.max_steps:
                        self.validate(validation, validation_writer, step)
        except KeyboardInterrupt:
            status, stopped_by = "stopped by a second interrupt", "SIGINT"
        if step > store.checkpoint_step(saved):
            saved = self.manager.save(checkpoint_number=step)
        train_writer.flush()
        validation_writer.flush()
        if self.workers > 1:
            decoded = self.decoded_images(step)
            logging.info("images decoded by each worker: %s", decoded)
            print("images decoded by each worker (its part of the batches and its unreadable files): "
                  + ", ".join(f"worker {k} {n}" for k, n in enumerate(decoded)), flush=True)
        print(f"{status} at step {step}; checkpoint {saved}; TensorBoard logs in {c.model_dir} "
              f"(tensorboard --logdir {c.model_dir})", flush=True)
        return {"step": step, "status": status, "checkpoint": saved, "signal": stopped_by}

    def _decoded_scalars(self, step):
        """TensorBoard's `decoded_images/worker_<k>` of a cluster (none for one process)."""
        if self.workers == 1:
            return {}
        return {f"decoded_images/worker_{k}": n for k, n in enumerate(self.decoded_images(step))}

    def train_step(self, iterator, step):
        """One training step on batches of `iterator`: `critic_steps` critic updates, then the
        generator update (and, with --ema_decay, the average's); their stats as floats (the last
        critic update's; under loss scaling `update_skipped` counts the step's skipped updates).

        Args:
            iterator: distributed training batches (`training_data()`).
            step: the number of this step, for messages and the average's decay.

        Raises:
            TrainingError: a value is NaN or infinite, or the data ran out.
        """
        stats, skipped = {}, 0.0
        try:
            for update in ["critic"] * self.config.critic_steps + ["generator"]:
                stats.update(self.checked_update(update, iterator, step))
                skipped += stats.get("update_skipped", 0.0)
        except tf.errors.OutOfRangeError:
            raise TrainingError(f"step {step}: the training data ran out; no image of {{parameter}}="
                                f"{self.config.dataset} could be read (see the skipped-file warnings)",
                                parameter="dataset") from None
        if self.average is not None:
            self.average_step(tf.constant(step, tf.float32))
        if "update_skipped" in stats:
            stats["update_skipped"] = skipped
        return stats

    def replica_update(self, update):
        """The per-replica function of the "critic" or "generator" update, which `strategy.run`
        runs on each replica's batch (a dict as `training_data()` gives): e.g. to trace its graph."""
        return self._critic_update if update == "critic" else self._generator_update

    def checked_update(self, update, iterator, step=None):
        """Runs one "critic" or "generator" update on the next batch of `iterator`; its stats as
        floats, checked to be finite (TrainingError naming `step` if not)."""
        run = self.critic_step if update == "critic" else self.generator_step
        return _checked(run(iterator), step, update)


def _checked(stats, step, update):
    """The stats as floats; TrainingError if any is NaN or infinite (nothing is saved then), but
    for the gradient norm of an update the loss scaling skipped (`update_skipped`)."""
    values = {key: float(value) for key, value in stats.items()}
    skipped = values.get("update_skipped", 0.0) > 0
    for key, value in values.items():
        if not math.isfinite(value) and not (skipped and key.endswith("grad_norm")):
            raise TrainingError(f"step {step}: {key} is {value} in the {update} update; training stopped "
                                "without saving, the last checkpoint is kept (lower "
                                f"{mention('learning_rate')}, or check the data)")
    return values


def heldout_metrics(filled, originals, holes):
    """Means over a batch of the `HELDOUT_METRICS` of completed images.

    Args:
        filled: float [B, H, W, 3] in 0..255, a method's fill (only its holes' pixels count).
        originals: uint8 [B, H, W, 3], the real images.
        holes: bool [B, H, W], the holes.

    Returns:
        {metric: mean over the images} (`inpainting.metrics.image_metrics` of each image completed
        by `metrics.compose`, as `inpainting.evaluate` measures); a hole metric is averaged over
        the images with a hole, NaN if none has one.
    """
    rows = [metrics.image_metrics(metrics.compose(original, fill, hole), original, hole)
            for fill, original, hole in zip(filled, originals, holes)]
    return {name: metrics.mean_of(row[name] for row in rows) for name in HELDOUT_METRICS}


def _write_scalars(writer, step, stats, images_per_second, learning_rate, extra=None):
    with writer.as_default(step=step):
        for key, value in {**stats, **(extra or {})}.items():
            tf.summary.scalar(key, value)
        tf.summary.scalar("images_per_second", images_per_second)
        tf.summary.scalar("learning_rate", float(keras.ops.convert_to_numpy(learning_rate)))


def disk_full_error(model_dir, err):
    """The TrainingError of a run that filled the disk of `model_dir` (`err` says so), after removing
    the partial checkpoint TensorFlow leaves (`ckpt-<step>_temp/`); the complete checkpoints stay."""
    for path in glob.glob(os.path.join(glob.escape(model_dir), f"{store.CHECKPOINT_NAME}-*_temp")):
        shutil.rmtree(path, ignore_errors=True)
    free = files.free_space(model_dir)
    latest = tf.train.latest_checkpoint(model_dir)
    saving = re.search(rf"\b({store.CHECKPOINT_NAME}-\d+)(_temp)?\b", str(err))
    what = f" while saving checkpoint {saving.group(1)}" if saving else ""
    if saving and latest:  # the same variables as the last complete one
        size = sum(os.path.getsize(path) for path in glob.glob(glob.escape(latest) + ".*"))
        what += f", which needs about {files.describe_size(size)}"
    resume = f"it resumes from {latest}, which is complete" if latest else "no checkpoint was saved yet"
    return TrainingError(f"{{parameter}}={model_dir}: the disk is full{what} "
                         f"({files.describe_size(free or 0)} free); free some space there or move "
                         f"{{parameter}} to a larger disk, then run the same command again: {resume}",
                         parameter="model_dir")


def check_dilated_conv(config):
    """Refuses a run whose dilated convolutions cannot train: `INPAINTING_DILATED_CONV` set to an
    unknown formulation, or to `native` where TensorFlow has no gradient kernel for them in the
    run's compute dtype (CPUs without oneDNN, float16 on any CPU), which would fail at the first
    generator update."""
    try:
        formulation = layers.dilated_conv_formulation()
    except ValueError as err:
        raise TrainingError(str(err)) from None
    dtype = keras.mixed_precision.Policy(config.precision).compute_dtype
    if formulation == "native" and not layers.native_dilated_gradients(dtype):
        raise TrainingError(
            f"{layers.DILATED_CONV_VARIABLE}=native: TensorFlow has no gradient kernel for dilated "
            f"convolutions in {dtype} here (its CPU kernels have one only with oneDNN on, for float32 "
            "and bfloat16; oneDNN is off without AVX-512 or with TF_ENABLE_ONEDNN_OPTS=0), so the "
            f"first generator update would fail; unset {layers.DILATED_CONV_VARIABLE} (the default, "
            "auto, takes their gradient from the space-to-batch formulation here) or set it to "
            "space_to_batch")


def emulated_bfloat16(config):
    """Whether `config` asks for bfloat16 where TensorFlow only emulates it: on CPUs without oneDNN
    (no AVX-512, or TF_ENABLE_ONEDNN_OPTS=0), which also lack the dilated convolutions' gradient
    kernels, and no GPU."""
    return (config.precision == "mixed_bfloat16" and not tf.config.list_physical_devices("GPU")
            and not layers.native_dilated_gradients())


def train(config):
    """Runs one training job described by a `TrainConfig`; returns `Trainer.fit()`'s result
    (`stopping.exit_status` turns it into train.py's exit status)."""
    configure_devices(config)
    if emulated_bfloat16(config):
        print("warning: --precision=mixed_bfloat16 without oneDNN (this CPU has no AVX-512, or "
              "TF_ENABLE_ONEDNN_OPTS=0): TensorFlow emulates bfloat16 here, which trains about 9x "
              "slower than --precision=float32 (README: Benchmarks); use float32 for speed",
              file=sys.stderr, flush=True)
    if config.precision == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        print("warning: --precision=mixed_float16 without a GPU: TensorFlow's CPU kernels compute "
              "float16 slowly (it is meant for GPUs without bfloat16); use float32, or "
              "mixed_bfloat16 on a CPU with AVX-512", file=sys.stderr, flush=True)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(config)
    keras.mixed_precision.set_global_policy(config.precision)
    try:
        with distribution.peer_failures(config, strategy):
            with distribution.chief_output(strategy):
                result = Trainer(config, strategy).fit()
            return distribution.finish(result, strategy)
    except (OSError, tf.errors.OpError) as err:
        if not files.disk_full(err):
            raise
        raise disk_full_error(config.model_dir, err) from None
    finally:
        keras.mixed_precision.set_global_policy("float32")
