"""Training end to end on a tiny model: files written, exact resume, NaN handling, strategies.

The tests of the training numerics (an update and its exact resume in each version, a strategy,
each precision) are marked onednn_modes: `make test` runs them again in the other oneDNN mode.
The rest (signals, locks, stop rules, loading, validation files) is machinery above the kernels
and runs once."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import DELETED_CHECKPOINT, REPO, assert_user_error, fill_disk, with_a_deleted_checkpoint
from inpainting import classical, locks, metrics
from inpainting.checkpoints import store
from inpainting.checkpoints.tf1 import load_official_critics, load_official_generator
from inpainting.config import ModelConfig, TrainConfig
from inpainting.data import masks, pipeline, sources
from inpainting.errors import ConfigError, TrainingError
from inpainting.model import layers
from inpainting.model.critics import Critics
from inpainting.model.generator import Generator
from inpainting.training import health, stopping
from inpainting.training import trainer as training

TINY = dict(cnum=4, image_size=(64, 64), box_size=(32, 32), max_delta=(8, 8), batch_size=2,
            critic_steps=2, validation_images=2, summary_every=1, validation_every=2,
            checkpoint_every=2, log_every=1, deterministic=True)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Seven small smooth photos-like PNGs of different sizes."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(7):
        h, w = 72 + 8 * i, 96 - 4 * i
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        image = np.stack([np.sin(6 * x + i), np.cos(5 * y - i), np.sin(3 * (x + y))], axis=-1)
        image = (127.5 * (image + 1) + rng.normal(0, 8, image.shape)).clip(0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"img{i}.png"), image)
    return folder


def tiny_config(model_dir, folder, **overrides):
    return TrainConfig(model_dir=str(model_dir), dataset=f"folder:{folder}", **{**TINY, **overrides})


def checkpoint_values(prefix):
    """Every saved tensor of a checkpoint (weights, optimizer slots, step), by key."""
    reader = tf.train.load_checkpoint(str(prefix))
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if not key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


def interrupted_copy(model_dir, copy, step):
    """`copy`: the run folder `model_dir` as a run interrupted after checkpoint `step` left it (the
    later checkpoints' files gone, the state file naming ckpt-<step>). Resuming it must give the
    uninterrupted run's later checkpoints."""
    shutil.copytree(model_dir, copy)
    state = tf.train.get_checkpoint_state(str(copy))
    kept = [path for path in state.all_model_checkpoint_paths if int(path.rsplit("-", 1)[1]) <= step]
    for name in os.listdir(copy):
        if name.startswith("ckpt-") and int(name[5:].split(".")[0]) > step:
            os.remove(os.path.join(copy, name))
    tf.compat.v1.train.update_checkpoint_state(str(copy), os.path.join(copy, f"ckpt-{step}"),
                                               [os.path.join(copy, os.path.basename(path)) for path in kept])
    assert tf.train.latest_checkpoint(str(copy)) == os.path.join(copy, f"ckpt-{step}")


def read_events(folder):
    """{tag: {step: value}} of all summaries under `folder` (images as their PNG-encoded tensors)."""
    events = {}
    for name in os.listdir(folder):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            for value in event.summary.value:
                events.setdefault(value.tag, {})[event.step] = tf.make_ndarray(value.tensor)
    return events


@pytest.mark.onednn_modes
def test_trains_writes_its_files_and_resumes_exactly(tmp_path, image_folder):
    full_config = tiny_config(tmp_path / "full", image_folder, max_steps=4)
    training.configure_devices(full_config)
    tf.config.experimental.enable_op_determinism()
    trainer = training.Trainer(full_config)
    assert trainer.fit() == {"step": 4, "status": "finished",
                             "checkpoint": str(tmp_path / "full" / "ckpt-4"), "signal": None}
    assert trainer.critic_step.experimental_get_tracing_count() == 1
    assert trainer.generator_step.experimental_get_tracing_count() == 1

    full = tmp_path / "full"
    assert ModelConfig.load(full) == ModelConfig(cnum=4, image_size=(64, 64), local_size=(32, 32))
    assert TrainConfig(**{k: v for k, v in __import__("json").load(
        open(full / "train_config.json")).items()}) == full_config
    state = tf.train.get_checkpoint_state(str(full))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-2", "ckpt-4"]
    scalars = read_events(full / "train")
    for tag in ("d_loss", "d_local", "d_global", "gp", "g_loss", "g_adversarial", "l1", "ae",
                "real_local", "fake_local", "real_global", "fake_global", "critic_grad_norm",
                "generator_grad_norm", "images_per_second", "learning_rate", "skipped_files"):
        assert sorted(scalars[tag]) == [1, 2, 3, 4], tag
    assert float(scalars["learning_rate"][4]) == pytest.approx(1e-4)
    assert float(scalars["skipped_files"][4]) == 0.0
    validation = read_events(full / "validation")
    grid_tag = "input | masked | coarse | refined | flow"
    assert sorted(validation[grid_tag]) == [2, 4]
    # Image summaries hold [width, height, png...]: five 64x64 panels side by side.
    assert validation[grid_tag][4][:2].tolist() == [b"320", b"64"]
    assert sorted(validation["l1"]) == [2, 4]

    part = tiny_config(tmp_path / "part", image_folder, max_steps=2)
    assert training.train(part)["step"] == 2
    resumed = training.train(tiny_config(tmp_path / "part", image_folder, max_steps=4))
    assert resumed["checkpoint"] == str(tmp_path / "part" / "ckpt-4")
    expected = checkpoint_values(full / "ckpt-4")
    got = checkpoint_values(tmp_path / "part" / "ckpt-4")
    assert expected.keys() == got.keys() and len(expected) > 100
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-6, err_msg=key)
    # The trained model is usable by every tool, its critics too (for --init_checkpoint), though
    # their variables are keyed under "optimizer/", which tracks them along a shorter path.
    generator, critics = store.load_networks(full)
    np.testing.assert_array_equal(generator.conv1.kernel.numpy(),
                                  expected["generator/conv1/kernel/.ATTRIBUTES/VARIABLE_VALUE"])
    assert not any(key.startswith("critics/") for key in expected)
    trained = Critics(full_config.model_config())
    trained.build()
    tf.train.Checkpoint(critics=trained).read(str(full / "ckpt-4")).expect_partial()
    assert len(critics.weights) == len(trained.weights) > 10
    for got, want in zip(critics.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(got, want)


V2 = dict(version="v2", guided=True, cnum=8, critic_steps=1)


@pytest.mark.onednn_modes
def test_v2_guided_trains_and_resumes_exactly(tmp_path, image_folder):
    full_config = tiny_config(tmp_path / "full", image_folder, max_steps=3, **V2)
    training.configure_devices(full_config)
    tf.config.experimental.enable_op_determinism()
    assert full_config.beta2 == 0.999 and full_config.free_form_masks  # v2's own defaults
    assert training.train(full_config)["step"] == 3
    full = tmp_path / "full"
    assert ModelConfig.load(full) == ModelConfig(version="v2", cnum=8, guided=True, image_size=(64, 64),
                                                 local_size=(32, 32))
    scalars = read_events(full / "train")
    for tag in ("d_loss", "real", "fake", "g_loss", "g_adversarial", "ae", "critic_grad_norm",
                "generator_grad_norm"):
        assert sorted(scalars[tag]) == [1, 2, 3], tag
    assert "gp" not in scalars and "l1" not in scalars
    training.train(tiny_config(tmp_path / "part", image_folder, max_steps=2, **V2))
    resumed = training.train(tiny_config(tmp_path / "part", image_folder, max_steps=3, **V2))
    assert resumed["checkpoint"] == str(tmp_path / "part" / "ckpt-3")
    expected = checkpoint_values(full / "ckpt-3")
    got = checkpoint_values(tmp_path / "part" / "ckpt-3")
    assert expected.keys() == got.keys()
    u_keys = [key for key in expected if key.endswith("/u/.ATTRIBUTES/VARIABLE_VALUE")]
    assert len(u_keys) == 6  # the power-iteration vectors are checkpointed
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-6, err_msg=key)
    generator = store.load_generator(full)
    assert generator.config.guided


@pytest.mark.onednn_modes
def test_v2_mirrored_matches_one_device(tmp_path, image_folder):
    # In a process of its own: two MirroredStrategy instances in one process share collective keys
    # (the v1 test below has one). The critic's power-iteration vectors are updated inside the
    # replicas, so they must agree too.
    script = f"""
import numpy as np, tensorflow as tf
from test_trainer import TINY, V2, checkpoint_values
from inpainting.config import TrainConfig
from inpainting.training import trainer as training
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
results = {{}}
for name, strategy in (("one", "one_device"), ("two", "mirrored")):
    settings = dict(TINY, **V2, max_steps=1, batch_size=4, adam_epsilon=1e-3, deterministic=False)
    config = TrainConfig(model_dir=r"{tmp_path}/" + name, dataset=r"folder:{image_folder}",
                         strategy=strategy, **settings)
    training.Trainer(config).fit()
    results[name] = checkpoint_values(r"{tmp_path}/" + name + "/ckpt-1")
assert results["one"].keys() == results["two"].keys()
print(max(float(np.abs(results["two"][k] - v).max()) for k, v in results["one"].items()))
"""
    # The script imports this module (from its folder) and conftest (from the working folder).
    path = os.pathsep.join(filter(None, [str(REPO / "tests" / "training"), os.environ.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            cwd=REPO / "tests", env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.split()[-1]) <= 1e-5


def test_v2_flag_rules(tmp_path, image_folder):
    with pytest.raises(ConfigError, match="^gradient_penalty: is a term of the v1 loss"):
        tiny_config(tmp_path, image_folder, gradient_penalty=5.0, **V2)
    with pytest.raises(ConfigError, match="guided .* only for version v2"):
        tiny_config(tmp_path, image_folder, guided=True)
    # A mask folder gives the holes: v2's brush strokes are off unless asked for, which is an error.
    assert not tiny_config(tmp_path, image_folder, mask_dir=str(image_folder), **V2).free_form_masks
    with pytest.raises(ConfigError, match="^free_form_masks: cannot be combined with mask_dir"):
        tiny_config(tmp_path, image_folder, mask_dir=str(image_folder), free_form_masks=True, **V2)


def test_stroke_width_sets_the_brush_strokes_of_the_holes(tmp_path, image_folder):
    """The validation holes are the box united with the fixed strokes of --stroke_width's widths."""
    def validation_mask(**overrides):
        config = tiny_config(tmp_path / str(len(overrides)), image_folder, free_form_masks=True,
                             **overrides)
        return config, training.Trainer(config).validation_batch()

    config, thin = validation_mask(stroke_width="2,4")
    assert config.stroke_width == (2, 4)
    _, default = validation_mask()
    stream = pipeline.image_dataset(f"folder:{image_folder}", image_size=(64, 64), training=False)
    [boxes] = pipeline.validation_batches(stream, count=2, image_size=(64, 64), box_size=(32, 32)
                                          ).as_numpy_iterator()
    seed = sources.stream_seed(0, pipeline.VALIDATION_STROKES)
    for batch, widths in ((thin, dict(min_width=2, max_width=4)), (default, {})):
        strokes = masks.brush_stroke_mask((64, 64), seed, masks.StrokeConfig(**widths)).numpy()
        np.testing.assert_array_equal(batch["mask"], np.maximum(boxes["mask"], strokes[None]))
    assert boxes["mask"].sum() < thin["mask"].sum() < default["mask"].sum()


def _read_generator(prefix, key, config):
    """The weights of the generator stored under `key` ("generator" or "trained_generator") of the
    training checkpoint at `prefix`, as `Generator.get_weights()` lists them."""
    generator = Generator(config)
    generator.build()
    tf.train.Checkpoint(**{key: generator}).read(str(prefix)).expect_partial()
    return generator.get_weights()


def test_ema_decay_keeps_an_average_that_the_tools_load_and_resumes_exactly(tmp_path, image_folder):
    config = tiny_config(tmp_path / "full", image_folder, max_steps=2, checkpoint_every=1, ema_decay=0.5)
    training.configure_devices(config)
    tf.config.experimental.enable_op_determinism()
    trainer = training.Trainer(config)
    np.testing.assert_array_equal(trainer.average.conv1.kernel.numpy(), trainer.generator.conv1.kernel.numpy())
    expected = trainer.generator.get_weights()
    trainer.fit()
    # After step t the average is decay * average + (1 - decay) * trained, decay = min(0.5,
    # (1 + t) / (10 + t)), from the initial weights: 2/11 after step 1, 1/4 after step 2.
    model = config.model_config()
    for step in (1, 2):
        prefix = tmp_path / "full" / f"ckpt-{step}"
        decay = min(0.5, (1 + step) / (10 + step))
        trained = _read_generator(prefix, "trained_generator", model)
        expected = [decay * a + (1 - decay) * w for a, w in zip(expected, trained)]
        average = _read_generator(prefix, "generator", model)
        assert len(average) == len(trained) > 50
        for got, want in zip(average, expected):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert max(np.abs(a - w).max() for a, w in zip(average, trained)) > 1e-6
    assert store.stored_objects(prefix) >= {"generator", "trained_generator", "critics", "optimizer"}
    # Every tool loads the average; the critics come with it.
    generator, critics = store.load_networks(tmp_path / "full")
    for got, want in zip(generator.get_weights(), average):
        np.testing.assert_array_equal(got, want)
    assert critics is not None
    # Resuming restores both the trained weights and the average.
    interrupted_copy(tmp_path / "full", tmp_path / "part", 1)
    training.train(tiny_config(tmp_path / "part", image_folder, max_steps=2, checkpoint_every=1, ema_decay=0.5))
    want, got = (checkpoint_values(d / "ckpt-2") for d in (tmp_path / "full", tmp_path / "part"))
    assert got.keys() == want.keys()
    for key in got:
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-6, err_msg=key)


def test_ema_decay_can_start_on_a_resumed_run_but_not_be_dropped(tmp_path, image_folder):
    training.train(tiny_config(tmp_path, image_folder, max_steps=1))
    trainer = training.Trainer(tiny_config(tmp_path, image_folder, max_steps=2, ema_decay=0.9))
    assert trainer.restored == (f"resumed from {tmp_path / 'ckpt-1'} at step 1 (the average of the "
                                "generator's weights starts there)")
    for average, trained in zip(trainer.average.weights, trainer.generator.weights):
        np.testing.assert_array_equal(average.numpy(), trained.numpy())
    trainer.fit()
    assert "trained_generator" in store.stored_objects(tmp_path / "ckpt-2")
    assert "trained_generator" not in store.stored_objects(tmp_path / "ckpt-1")
    with pytest.raises(TrainingError) as err:
        training.Trainer(tiny_config(tmp_path, image_folder, max_steps=3))
    assert err.value.describe(flags=True) == (
        f"{tmp_path / 'ckpt-2'} holds an average of the generator's weights; resume with --ema_decay "
        "above 0 (e.g. that run's, in train_config.json), or use a new --model_dir")
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt-2")


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, image_folder):
    model_dir = tmp_path / "run"
    training.train(tiny_config(model_dir, image_folder, max_steps=1, checkpoint_every=1))
    before = checkpoint_values(model_dir / "ckpt-1")
    # A learning rate of 1e30 sends the critic's weights to ~1e30: the next update overflows.
    with pytest.raises(TrainingError, match=r"^step 2: \w+ is (nan|inf|-inf) in the critic update; "
                                            r"training stopped without saving"):
        training.train(tiny_config(model_dir, image_folder, max_steps=5, checkpoint_every=1,
                                   learning_rate=1e30))
    assert tf.train.latest_checkpoint(str(model_dir)) == str(model_dir / "ckpt-1")
    after = checkpoint_values(model_dir / "ckpt-1")
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
        assert np.all(np.isfinite(value)), key
    store.load_generator(model_dir)


def test_mirrored_strategy_matches_one_device(tmp_path, image_folder):
    # Adam turns the rounding noise of a gradient that is mathematically ~0 (e.g. a bias whose
    # effect cancels between the real and fake halves) into a full step of size lr when
    # epsilon is 1e-8; epsilon 1e-3 keeps the update proportional to the gradient, so this
    # compares the gradients of the two runs.
    # With an average of the generator's weights, updated in cross-replica context.
    common = dict(max_steps=1, critic_steps=1, batch_size=4, adam_epsilon=1e-3, deterministic=False,
                  ema_decay=0.5)
    results = {}
    for name, strategy in (("one", "one_device"), ("two", "mirrored")):
        config = tiny_config(tmp_path / name, image_folder, strategy=strategy, cpu_devices=2, **common)
        training.configure_devices(config)
        trainer = training.Trainer(config)
        assert trainer.strategy.num_replicas_in_sync == (1 if name == "one" else 2)
        initial = [v.numpy() for v in trainer.generator.trainable_variables]
        trainer.fit()
        results[name] = checkpoint_values(tmp_path / name / "ckpt-1")
    # "generator" is the average, 2/11 of the initial weights and 9/11 of the trained ones.
    moved = results["one"]["generator/conv1/kernel/.ATTRIBUTES/VARIABLE_VALUE"] - initial[0]
    assert np.abs(moved).max() > 1e-6  # the step did change the weights
    for key, value in results["one"].items():
        np.testing.assert_allclose(results["two"][key], value, rtol=0, atol=1e-5, err_msg=key)
    # The held-out metrics are measured under either strategy.
    for name in ("one", "two"):
        validation = read_events(tmp_path / name / "validation")
        assert np.isfinite(float(validation["heldout/l1_hole"][1])), name
        assert float(validation["health/collapsed"][1]) == 0.0, name


def test_refuses_a_model_dir_of_another_model(tmp_path, image_folder, tiny_checkpoint):
    model_dir = tmp_path / "run"
    shutil.copytree(tiny_checkpoint, model_dir)
    with pytest.raises(TrainingError, match=r"holds a model with cnum=4 \(flags say 8\); use a new "
                                            r"model_dir"):
        training.Trainer(tiny_config(model_dir, image_folder, cnum=8))
    assert ModelConfig.load(model_dir).cnum == 4
    locks.DirectoryLock(model_dir, "test", "--model_dir", name=training.LOCK_FILE).acquire().release()


def test_resuming_where_the_state_file_names_a_deleted_checkpoint_says_so(tmp_path, image_folder,
                                                                          tiny_checkpoint):
    model_dir = with_a_deleted_checkpoint(tiny_checkpoint, tmp_path / "run")
    before = sorted(os.listdir(model_dir))
    with pytest.raises(TrainingError) as excinfo:
        training.Trainer(tiny_config(model_dir, image_folder))
    assert str(excinfo.value) == (f"cannot resume from model_dir={model_dir}: {DELETED_CHECKPOINT.format(model_dir)}, "
                                  "or use a new model_dir")
    assert excinfo.value.describe(flags=True).startswith(f"cannot resume from --model_dir={model_dir}: ")
    assert sorted(os.listdir(model_dir)) == sorted(before + [training.LOCK_FILE])
    store.load_generator(model_dir / "ckpt-5")


def test_a_run_that_failed_before_its_first_checkpoint_left_no_model(tmp_path, image_folder):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    model_dir = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"^step 1: the training data ran out"):
        training.train(tiny_config(model_dir, broken, cnum=8, deterministic=False,
                                   validation_dataset=f"folder:{image_folder}"))
    assert ModelConfig.load(model_dir).cnum == 8 and tf.train.latest_checkpoint(str(model_dir)) is None
    # No checkpoint, no model: a rerun with other flags is accepted and rewrites the configuration.
    result = training.train(tiny_config(model_dir, image_folder, max_steps=1, deterministic=False))
    assert result["checkpoint"] == str(model_dir / "ckpt-1")
    assert ModelConfig.load(model_dir).cnum == 4
    saved = json.loads((model_dir / "train_config.json").read_text())
    assert (saved["cnum"], saved["dataset"]) == (4, f"folder:{image_folder}")


def test_init_checkpoint_from_this_project_and_from_the_original(tmp_path, image_folder,
                                                                 tiny_checkpoint, official_checkpoint):
    trainer = training.Trainer(tiny_config(tmp_path / "a", image_folder,
                                           init_checkpoint=str(tiny_checkpoint)))
    assert trainer.restored == f"initialised the generator and critics from {tiny_checkpoint}"
    critics = Critics(ModelConfig.load(tiny_checkpoint))
    critics.build()
    tf.train.Checkpoint(critics=critics).restore(
        tf.train.latest_checkpoint(str(tiny_checkpoint))).expect_partial()
    for ours, theirs in zip(trainer.critics.weights + trainer.generator.weights,
                            critics.weights + store.load_generator(tiny_checkpoint).weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())

    official = official_checkpoint("v1")
    trainer = training.Trainer(tiny_config(tmp_path / "b", image_folder, cnum=32, image_size=256,
                                           box_size=64, init_checkpoint=str(official)))
    assert trainer.restored == f"initialised the generator (critics random) from {official}"
    np.testing.assert_array_equal(trainer.generator.xconv1.kernel.numpy(),
                                  load_official_generator(official).xconv1.kernel.numpy())
    with pytest.raises(TrainingError, match="holds a v1 model with cnum=32; the flags ask for v1 with cnum=4"):
        training.Trainer(tiny_config(tmp_path / "c", image_folder, init_checkpoint=str(official)))


def test_init_checkpoint_of_either_version_with_or_without_critics(tmp_path, image_folder,
                                                                   official_checkpoint):
    # An original v2 checkpoint: the SN-PatchGAN takes any image size, so its weights (and
    # power-iteration vectors) initialise the critic of a 64x64 run.
    official = official_checkpoint("v2")
    trainer = training.Trainer(tiny_config(tmp_path / "v2", image_folder, version="v2", cnum=48,
                                           critic_steps=1, init_checkpoint=str(official)))
    assert trainer.restored == f"initialised the generator and critics from {official}"
    expected = load_official_critics(official, version="v2")
    assert len(trainer.critics.weights) == len(expected.weights) == 18
    for ours, theirs in zip(trainer.critics.weights + trainer.generator.weights,
                            expected.weights + load_official_generator(official, version="v2").weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
    trainer.close()
    # A checkpoint of this project that holds no critics.
    keras.utils.set_random_seed(2)
    generator = Generator(ModelConfig(cnum=4, image_size=(64, 64), local_size=(32, 32)))
    generator.build()
    store.save(tmp_path / "alone", generator)
    trainer = training.Trainer(tiny_config(tmp_path / "v1", image_folder,
                                           init_checkpoint=str(tmp_path / "alone")))
    assert trainer.restored == f"initialised the generator (critics random) from {tmp_path / 'alone'}"
    for ours, theirs in zip(trainer.generator.weights, generator.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    trainer.close()


def _train_args(model_dir, folder, *extra):
    return [sys.executable, str(REPO / "train.py"), f"--model_dir={model_dir}", f"--dataset=folder:{folder}",
            "--cnum=4", "--image_size=64", "--box_size=32", "--max_delta=8", "--batch_size=2",
            "--critic_steps=1", "--log_every=1", "--checkpoint_every=3", "--validation_images=1", *extra]


def _start(model_dir, folder, *extra):
    return subprocess.Popen(_train_args(model_dir, folder, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1"))


def _run(model_dir, folder, *extra):
    return subprocess.run(_train_args(model_dir, folder, *extra), capture_output=True, text=True, cwd=REPO,
                          timeout=600, env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1"))


def _wait_for(process, text, timeout=300):
    lines, end = [], time.time() + timeout
    while time.time() < end:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    process.kill()
    raise AssertionError(f"{text!r} not printed; output:\n{''.join(lines)}")


@pytest.mark.slow
def test_sigterm_saves_and_sigkill_resumes(tmp_path, image_folder):
    run = _start(tmp_path, image_folder, "--max_steps=1000")
    _wait_for(run, "step 4/1000")
    run.send_signal(signal.SIGTERM)
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 143, output  # 128 + SIGTERM: a preempted job is not a finished one
    stopped = [line for line in output.splitlines() if line.startswith("stopped by SIGTERM at step ")]
    assert len(stopped) == 1, output
    step = int(stopped[0].split()[5].rstrip(";"))
    assert step >= 4 and tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / f"ckpt-{step}")

    run = _start(tmp_path, image_folder, "--max_steps=1000")
    _wait_for(run, f"resumed from {tmp_path / f'ckpt-{step}'} at step {step}")
    _wait_for(run, f"step {step + 4}/1000")  # past at least one periodic checkpoint
    run.kill()
    run.wait()
    last = int(tf.train.latest_checkpoint(str(tmp_path)).rsplit("-", 1)[1])
    assert last > step and last % 3 == 0

    run = _start(tmp_path, image_folder, f"--max_steps={last + 1}")
    output = run.communicate(timeout=300)[0]
    assert f"resumed from {tmp_path / f'ckpt-{last}'} at step {last}" in output, output
    assert f"finished at step {last + 1}; checkpoint {tmp_path / f'ckpt-{last + 1}'}" in output, output


@pytest.mark.slow
def test_a_second_run_in_a_model_dir_is_refused_while_the_first_runs(tmp_path, image_folder):
    first = _start(tmp_path, image_folder, "--max_steps=1000")
    third = None
    try:
        _wait_for(first, "step 1/1000 [")  # it holds the lock and has written its configuration
        second = _run(tmp_path, image_folder, "--max_steps=2", "--learning_rate=0.001")
        assert_user_error(second, f"--model_dir={tmp_path} is in use by another train.py run (pid "
                                  f"{first.pid} on ", "wait for it to end or stop it, or use another --model_dir")
        saved = json.loads((tmp_path / "train_config.json").read_text())
        assert (saved["max_steps"], saved["learning_rate"]) == (1000, 1e-4)
        assert first.poll() is None  # still training
        first.kill()  # SIGKILL: no handler runs, the kernel releases the lock
        first.wait(timeout=60)
        third = _start(tmp_path, image_folder, "--max_steps=1000")
        _wait_for(third, "/1000 [")  # accepted: it trains
        third.send_signal(signal.SIGINT)  # Ctrl-C: saves after the step, exits 130 = 128 + SIGINT
        output = third.communicate(timeout=300)[0]
        assert third.returncode == 130, output
        stopped = [line for line in output.splitlines() if line.startswith("stopped by SIGINT at step ")]
        assert len(stopped) == 1, output
        step = int(stopped[0].split()[5].rstrip(";"))
        assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / f"ckpt-{step}")
    finally:
        for process in (first, third):
            if process is not None:
                process.kill()
                process.wait()


def test_a_model_dir_that_is_a_file_is_an_error(tmp_path, image_folder):
    path = tmp_path / "run"
    path.write_text("my notes")
    result = _run(path, image_folder, "--max_steps=1")
    assert_user_error(result, f"--model_dir={path} is a file, not a folder; give a folder path")
    assert path.read_text() == "my notes"


NATIVE_REFUSED = ("INPAINTING_DILATED_CONV=native: TensorFlow has no gradient kernel for dilated convolutions "
                  "in {} here")
NATIVE_ADVICE = "; unset INPAINTING_DILATED_CONV (the default, auto, takes their gradient from the "


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_the_last_checkpoint(image_folder, small_disk):
    disk = small_disk("150m")  # one checkpoint of the tiny model (its critics: about 81 MB), not two
    model_dir = disk / "run"
    with pytest.raises(TrainingError) as excinfo:
        training.train(tiny_config(model_dir, image_folder, max_steps=2, checkpoint_every=1,
                                   critic_steps=1, deterministic=False))
    first = model_dir / "ckpt-1"
    resume = (f"; free some space there or move model_dir to a larger disk, then run the same command again: "
              f"it resumes from {first}, which is complete")
    assert re.fullmatch(rf"model_dir={re.escape(str(model_dir))}: the disk is full while saving checkpoint "
                        rf"ckpt-2, which needs about 8\d\.\d MB \(\d+\.\d MB free\){re.escape(resume)}",
                        str(excinfo.value)), str(excinfo.value)
    kept = ["checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index", "model_config.json", "train",
            "train_config.json", "validation"]
    assert sorted(name for name in os.listdir(model_dir) if name != training.LOCK_FILE) == kept  # no ckpt-2_temp
    assert tf.train.latest_checkpoint(str(model_dir)) == str(first)
    values = checkpoint_values(first)

    fill_disk(disk)  # train.py on a disk that is full before it starts
    result = _run(model_dir, image_folder, "--max_steps=3", "--checkpoint_every=1", "--cnum=4")
    assert result.returncode == 1
    assert_user_error(result, f"--model_dir={model_dir}: the disk is full (0 KB free)",
                      resume.replace("move model_dir", "move --model_dir"))
    assert sorted(name for name in os.listdir(model_dir) if name != training.LOCK_FILE) == kept
    assert all(np.array_equal(values[key], value) for key, value in checkpoint_values(first).items())
    assert store.load_generator(model_dir).config == ModelConfig.load(model_dir)
    assert TrainConfig(**json.loads((model_dir / "train_config.json").read_text())).max_steps == 2


@pytest.mark.onednn_modes  # its answer depends on the mode
def test_native_dilated_convolutions_are_refused_where_they_cannot_train(tmp_path, image_folder,
                                                                          monkeypatch):
    monkeypatch.setenv(layers.DILATED_CONV_VARIABLE, "native")
    with pytest.raises(TrainingError) as float16:  # no CPU kernel in either oneDNN mode
        training.Trainer(tiny_config(tmp_path / "half", image_folder, precision="mixed_float16"))
    assert str(float16.value).startswith(NATIVE_REFUSED.format("float16")) and NATIVE_ADVICE in str(float16.value)
    assert not (tmp_path / "half").exists()
    if layers.native_dilated_gradients():  # oneDNN on: TensorFlow's kernels train
        training.Trainer(tiny_config(tmp_path / "full", image_folder)).close()
    else:
        with pytest.raises(TrainingError, match="^" + re.escape(NATIVE_REFUSED.format("float32"))):
            training.Trainer(tiny_config(tmp_path / "full", image_folder))
    monkeypatch.setenv(layers.DILATED_CONV_VARIABLE, "fast")
    with pytest.raises(TrainingError, match="INPAINTING_DILATED_CONV must be one of .*got 'fast'"):
        training.Trainer(tiny_config(tmp_path / "fast", image_folder))


def test_train_py_refuses_native_dilated_convolutions_without_onednn(tmp_path, image_folder):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_ENABLE_ONEDNN_OPTS="0",
               INPAINTING_DILATED_CONV="native")
    result = subprocess.run(_train_args(tmp_path / "run", image_folder, "--max_steps=1"), capture_output=True,
                            text=True, cwd=REPO, timeout=600, env=env)
    assert result.returncode == 1
    assert_user_error(result, NATIVE_REFUSED.format("float32"), NATIVE_ADVICE)
    assert not (tmp_path / "run" / "model_config.json").exists()


def test_exit_status():
    assert stopping.exit_status({"signal": None, "status": "finished"}) == 0
    assert stopping.exit_status({"signal": "SIGTERM", "status": "stopped by SIGTERM"}) == 143
    assert stopping.exit_status({"signal": "SIGINT", "status": "stopped by a second interrupt"}) == 130


@pytest.mark.onednn_modes
def test_mixed_bfloat16_trains_with_float32_weights(tmp_path, image_folder, capfd):
    # In both oneDNN modes (make test's second pass); without oneDNN, bfloat16 is emulated and
    # the run says so once.
    from inpainting.model import layers

    losses = {}
    for precision in ("float32", "mixed_bfloat16"):
        model_dir = tmp_path / precision
        capfd.readouterr()
        training.train(tiny_config(model_dir, image_folder, max_steps=1, precision=precision,
                                   deterministic=False))
        warned = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning: ")]
        emulated = precision == "mixed_bfloat16" and not layers.native_dilated_gradients()
        assert warned == (["warning: --precision=mixed_bfloat16 without oneDNN (this CPU has no AVX-512, "
                           "or TF_ENABLE_ONEDNN_OPTS=0): TensorFlow emulates bfloat16 here, which trains "
                           "about 9x slower than --precision=float32 (README: Benchmarks); use float32 "
                           "for speed"] if emulated else [])
        losses[precision] = {tag: float(values[1]) for tag, values in read_events(model_dir / "train").items()
                             if tag in ("l1", "ae", "g_loss", "d_loss")}
        values = checkpoint_values(model_dir / "ckpt-1")
        assert values["generator/conv1/kernel/.ATTRIBUTES/VARIABLE_VALUE"].dtype == np.float32
    assert keras.mixed_precision.global_policy().name == "float32"  # reset after the run
    # Same weights and data; only the 16-bit convolutions differ.
    for tag, value in losses["float32"].items():
        assert losses["mixed_bfloat16"][tag] == pytest.approx(value, rel=0.05), tag


def test_mixed_float16_scales_the_loss_saves_the_scale_and_resumes_exactly(tmp_path, image_folder,
                                                                         capfd):
    capfd.readouterr()
    full = training.train(tiny_config(tmp_path / "full", image_folder, max_steps=2,
                                      precision="mixed_float16", checkpoint_every=1))
    assert full["step"] == 2 and keras.mixed_precision.global_policy().name == "float32"
    warned = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warned == ["warning: --precision=mixed_float16 without a GPU: TensorFlow's CPU kernels "
                      "compute float16 slowly (it is meant for GPUs without bfloat16); use float32, or "
                      "mixed_bfloat16 on a CPU with AVX-512"]
    scalars = read_events(tmp_path / "full" / "train")
    assert [float(scalars["loss_scale"][s]) for s in (1, 2)] == [2.0 ** 15] * 2
    assert [float(scalars["update_skipped"][s]) for s in (1, 2)] == [0.0, 0.0]
    expected = checkpoint_values(tmp_path / "full" / "ckpt-2")
    assert expected["loss_scale/scale/.ATTRIBUTES/VARIABLE_VALUE"] == 2.0 ** 15
    # Two critic updates and one generator update a step, none skipped.
    assert expected["loss_scale/good_steps/.ATTRIBUTES/VARIABLE_VALUE"] == 6
    assert expected["generator/conv1/kernel/.ATTRIBUTES/VARIABLE_VALUE"].dtype == np.float32
    # The Adam is where every run keeps it: a float32 run can resume a float16 one.
    assert expected["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 6
    assert not any("inner_optimizer" in key for key in expected)

    interrupted_copy(tmp_path / "full", tmp_path / "part", 1)
    training.train(tiny_config(tmp_path / "part", image_folder, max_steps=2, precision="mixed_float16",
                               checkpoint_every=1))
    got = checkpoint_values(tmp_path / "part" / "ckpt-2")
    assert expected.keys() == got.keys() and len(expected) > 100
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-6, err_msg=key)


@pytest.mark.onednn_modes
def test_mixed_float16_skips_an_overflowing_update_and_keeps_attention_and_losses_float32(
        tmp_path, image_folder):
    from layer_test import global_policy

    config = tiny_config(tmp_path, image_folder, max_steps=1, precision="mixed_float16")
    with global_policy("mixed_float16"):
        trainer = training.Trainer(config)
        try:
            iterator = trainer.training_data()
            batch_spec = iterator.element_spec
            # The graphs of both updates: 16-bit convolutions, float32 attention and losses.
            for update in ("critic", "generator"):
                graph = tf.function(trainer.replica_update(update)).get_concrete_function(batch_spec).graph
                ops = graph.get_operations()
                convs = {op.get_attr("T") for op in ops if op.type == "Conv2D"}
                assert convs == {tf.float16}
                attention = {op.get_attr("T") for op in ops if "contextual_attention" in op.name
                             and op.node_def.attr["T"].HasField("type") and op.type != "Cast"}
                assert attention == {tf.float32, tf.int32}
                assert {op.get_attr("T") for op in ops if op.type == "Softmax"} <= {tf.float32}
                assert all(spec.dtype == tf.float32 for spec in tf.nest.flatten(graph.structured_outputs)
                           if spec.dtype.is_floating)

            # A scale so large that the scaled gradient overflows float16: the update is skipped
            # (no weight or Adam state moves), the scale halves, and training goes on.
            before = [w.numpy() for w in trainer.generator.weights + trainer.optimizer.variables]
            trainer.scaler.dynamic_scale.assign(2.0 ** 40)
            stats = trainer.checked_update("generator", iterator, 1)
            assert stats["update_skipped"] == 1.0 and stats["loss_scale"] == 2.0 ** 39
            assert not math.isfinite(stats["generator_grad_norm"]) and math.isfinite(stats["g_loss"])
            after = [w.numpy() for w in trainer.generator.weights + trainer.optimizer.variables]
            for old, new in zip(before, after):
                np.testing.assert_array_equal(old, new)
            trainer.scaler.dynamic_scale.assign(2.0 ** 10)
            stats = trainer.checked_update("generator", iterator, 2)
            assert stats["update_skipped"] == 0.0 and stats["loss_scale"] == 2.0 ** 10
            assert math.isfinite(stats["generator_grad_norm"]) and stats["generator_grad_norm"] > 0
            assert int(trainer.optimizer.iterations.numpy()) == 1
            # A training step counts its skipped updates: each halved the scale once.
            trainer.scaler.dynamic_scale.assign(2.0 ** 40)
            stats = trainer.train_step(iterator, 3)
            assert stats["update_skipped"] >= 1
            assert stats["update_skipped"] == 40 - math.log2(stats["loss_scale"])
        finally:
            trainer.close()


def test_unreadable_data_stops_with_an_error(tmp_path, image_folder):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    (broken / "b.jpg").write_bytes(b"")
    with pytest.raises(TrainingError, match=r"^no readable validation image in folder:"):
        training.Trainer(tiny_config(tmp_path / "one", broken, deterministic=False)).fit()
    trainer = training.Trainer(tiny_config(tmp_path / "two", broken, deterministic=False,
                                           validation_dataset=f"folder:{image_folder}"))
    with pytest.raises(TrainingError, match=r"^step 1: the training data ran out; no image of "
                                            r"dataset=folder:.* could be read"):
        trainer.fit()
    assert tf.train.latest_checkpoint(str(tmp_path / "two")) is None


def test_demo_picture_keeps_the_photo_outside_the_hole(tiny_checkpoint):
    from inpainting.demo import before_after

    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, [40, 60, 3]).astype(np.uint8)
    picture = before_after(store.load_generator(tiny_checkpoint), photo, 40)
    assert picture.shape == (40, 4 * 60 + 3 * 4, 3) and picture.dtype == np.uint8
    masked, filled, original = (picture[:, i * 64:i * 64 + 60] for i in range(3))
    np.testing.assert_array_equal(original, photo)
    hole = np.zeros([40, 60], bool)
    hole[10:30, 15:45] = True
    np.testing.assert_array_equal(filled[~hole], photo[~hole])
    assert np.all(masked[hole] == 255) and np.array_equal(masked[~hole], photo[~hole])
    assert not np.array_equal(filled[hole], photo[hole])


# ---- validation: held-out metrics, classical baselines, health --------------------------------------

def _expected_heldout(filled, batch):
    """{metric: mean over the batch} of `filled` (0..255) pasted into the batch's holes, rounded to
    8 bits, computed here with `inpainting.metrics` image by image."""
    means = {}
    rows = []
    for fill, image, mask in zip(filled, batch["image"], batch["mask"][..., 0]):
        hole = mask > 0.5
        completed = image.copy()
        completed[hole] = np.clip(np.rint(fill[hole]), 0, 255).astype(np.uint8)
        rows.append(metrics.image_metrics(completed, image, mask))
    for name in training.HELDOUT_METRICS:
        means[name] = float(np.mean([row[name] for row in rows]))
    return means


@pytest.mark.parametrize("version", ["v1", "v2_guided"])
def test_validation_writes_heldout_metrics_baselines_and_health(tmp_path, image_folder, version):
    extra = V2 if version == "v2_guided" else {}
    config = tiny_config(tmp_path, image_folder, max_steps=2, validation_every=1, deterministic=False,
                         **extra)
    trainer = training.Trainer(config)
    trainer.fit()
    validation = read_events(tmp_path / "validation")
    assert set(training.HELDOUT_METRICS) == {"l1_hole", "l1_image", "psnr_hole", "psnr_image",
                                             "ssim_hole", "ssim_image"}
    assert set(training.HELDOUT_METRICS) <= set(metrics.METRIC_NAMES)
    for name in training.HELDOUT_METRICS:
        for tag in (f"heldout/{name}", f"heldout/{name}_telea", f"heldout/{name}_ns"):
            assert sorted(validation[tag]) == [1, 2], tag
            assert all(np.isfinite(float(value)) for value in validation[tag].values()), tag
        for method in ("telea", "ns"):  # computed once: flat lines
            assert validation[f"heldout/{name}_{method}"][1] == validation[f"heldout/{name}_{method}"][2]
    for tag in ("health/collapsed", "health/generator_collapsed", "health/critic_diverged"):
        assert [float(validation[tag][step]) for step in (1, 2)] == [0.0, 0.0], tag
    assert float(validation["health/real_hole_std"][1]) > health.COLLAPSE_MIN_REAL_STD
    assert float(validation["health/critic_loss_magnitude"][2]) > 0

    # The same numbers from the library, on the validation batch: OpenCV's fills, and the
    # generator's refined output after the last step (validated at step 2).
    batch = trainer.validation_batch()
    for method in ("telea", "ns"):
        filled = np.stack([classical.inpaint(image, mask[..., 0], method)
                           for image, mask in zip(batch["image"], batch["mask"])])
        for name, value in _expected_heldout(filled, batch).items():
            assert float(validation[f"heldout/{name}_{method}"][1]) == pytest.approx(value, rel=1e-6), \
                (method, name)
    inputs = [tf.cast(batch["image"], tf.float32) / 127.5 - 1.0, tf.constant(batch["mask"])]
    if version == "v2_guided":
        inputs.append(tf.constant(batch["edge"]))
    refined = (trainer.generator(inputs)["refined"].numpy().astype(np.float64) + 1.0) * 127.5
    for name, value in _expected_heldout(refined, batch).items():
        assert float(validation[f"heldout/{name}"][2]) == pytest.approx(value, rel=1e-4, abs=1e-4), name
    # The model is not the baseline.
    assert float(validation["heldout/l1_hole"][2]) != float(validation["heldout/l1_hole_telea"][2])


def test_collapse_rule_flags_a_constant_fill_only():
    rng = np.random.default_rng(5)
    originals = rng.integers(0, 256, [3, 32, 32, 3]).astype(np.uint8)
    holes = np.zeros([3, 32, 32], bool)
    holes[:, 8:24, 8:24] = True
    gray = np.full([3, 32, 32, 3], 127.5)
    red = np.zeros([3, 32, 32, 3])
    red[..., 0] = 250.0
    assert health.hole_spread(gray, holes) == 0.0 and health.hole_spread(red, holes) == 0.0
    assert health.generator_collapsed(gray, originals, holes)
    assert health.generator_collapsed(red, originals, holes)  # a constant colour is constant too
    # Nearly constant (spread 1 level) still is; a blurry but varied fill (the originals smoothed
    # and shrunk towards gray) is not.
    nearly = gray + rng.normal(0, 1.0, gray.shape)
    assert health.hole_spread(nearly, holes) == pytest.approx(1.0, rel=0.1)
    assert health.generator_collapsed(nearly, originals, holes)
    blurry = 127.5 + 0.5 * (cv2.blur(originals[0], (5, 5)).astype(np.float64) - 127.5)
    varied = np.broadcast_to(blurry, originals.shape)
    assert health.hole_spread(varied, holes) > health.COLLAPSE_STD
    assert not health.generator_collapsed(varied, originals, holes)
    assert not health.generator_collapsed(originals.astype(np.float64), originals, holes)
    # Flat validation images: a flat fill is right, not a collapse.
    flat = np.full_like(originals, 90)
    assert not health.generator_collapsed(gray, flat, holes)
    # The spread by hand: per channel the standard deviation over the holes' pixels of all images.
    two = np.zeros([2, 4, 4, 3])
    two[1] = [10.0, 20.0, 40.0]  # channel spreads 5, 10, 20 (half the images at 0, half at v)
    assert health.hole_spread(two, np.ones([2, 4, 4], bool)) == pytest.approx((5 + 10 + 20) / 3)
    assert np.isnan(health.hole_spread(two, np.zeros([2, 4, 4], bool)))


def test_critic_divergence_rule():
    assert not health.critic_diverged([])
    assert not health.critic_diverged([1e6])  # one interval: nothing to compare with
    # A tiny v1 run's healthy WGAN-GP critic loss (mean |d_loss| per 25 steps), and a hinge loss.
    assert not health.critic_diverged([35.6, 52.1, 60.7, 61.0, 56.3, 51.6, 45.5, 55.0, 49.9, 42.1])
    assert not health.critic_diverged([0.86, 0.56, 0.24, 0.44, 0.23, 0.25, 0.48, 0.28, 0.38, 0.21])
    # A loss that starts near 0 is compared with the floor, not with ~0.
    assert not health.critic_diverged([0.001, 0.5, 3.0, 20.0, 90.0])
    assert health.critic_diverged([0.001, 0.5, 3.0, 20.0, 101.0])
    # Growing by orders of magnitude; or no longer finite.
    assert health.critic_diverged([40.0, 55.0, 300.0, 2500.0, 4001.0])
    assert not health.critic_diverged([40.0, 55.0, 300.0, 2500.0, 3999.0])
    assert health.critic_diverged([40.0, math.inf]) and health.critic_diverged([40.0, math.nan])
    assert health.critic_early([0.2, 5.0]) == health.CRITIC_LOSS_FLOOR == 1.0
    assert health.critic_early([40.0, 5.0]) == 40.0


def test_health_warns_once_per_kind_and_reports_every_check():
    rng = np.random.default_rng(6)
    originals = rng.integers(0, 256, [2, 16, 16, 3]).astype(np.uint8)
    holes = np.zeros([2, 16, 16], bool)
    holes[:, 4:12, 4:12] = True
    constant = np.full([2, 16, 16, 3], 127.5)
    varied = originals.astype(np.float64)
    watcher = health.Health()
    start = health.COLLAPSE_FROM_STEP
    for value in (2.0, -3.0):  # first interval: mean |d_loss| 2.5
        watcher.record({"d_loss": value, "g_loss": 1e9})
    scalars, warnings = watcher.check(start - 10, constant, originals, holes)
    # Before COLLAPSE_FROM_STEP a constant fill is how a fresh v2 generator starts: no flag.
    assert warnings == [] and scalars["health/collapsed"] == 0.0
    assert scalars["health/refined_hole_std"] == 0.0
    assert scalars["health/critic_loss_magnitude"] == 2.5
    watcher.record({"d_loss": 5.0})
    scalars, warnings = watcher.check(start, varied, originals, holes)
    assert warnings == [] and scalars["health/collapsed"] == 0.0
    watcher.record({"d_loss": 5.0})
    scalars, warnings = watcher.check(start + 10, constant, originals, holes)
    assert scalars["health/collapsed"] == scalars["health/generator_collapsed"] == 1.0
    assert scalars["health/critic_diverged"] == 0.0
    assert len(warnings) == 1 and warnings[0].startswith(
        f"step {start + 10}: the generator has collapsed: its fill of the validation holes is nearly "
        "constant (standard deviation 0 of 255 levels, the real pixels' ")
    assert warnings[0].endswith("try a lower --learning_rate, check that the training images are varied "
                                "and readable, or restart from an earlier ckpt-<step> with "
                                "--init_checkpoint in a new --model_dir")
    watcher.record({"d_loss": -251.0})  # 100.4x the first interval's 2.5
    scalars, warnings = watcher.check(start + 20, constant, originals, holes)
    assert scalars["health/generator_collapsed"] == scalars["health/critic_diverged"] == 1.0
    assert warnings == [f"step {start + 20}: the critic loss is diverging: its mean magnitude since the "
                        "last validation is 251, 100x that of the first interval (2.5); try a lower "
                        "--learning_rate, or check the data"]
    # Each kind is told once; the scalars keep saying what holds (a recovered fill reads 0).
    watcher.record({"d_loss": 300.0})
    scalars, warnings = watcher.check(start + 30, varied, originals, holes)
    assert warnings == [] and scalars["health/generator_collapsed"] == 0.0
    assert scalars["health/collapsed"] == scalars["health/critic_diverged"] == 1.0


def test_a_collapsed_generator_is_flagged_once_and_the_run_goes_on(tmp_path, image_folder, capfd):
    trainer = training.Trainer(tiny_config(tmp_path, image_folder, deterministic=False))
    try:
        batch = trainer.validation_batch()
        writer = tf.summary.create_file_writer(str(tmp_path / "validation"))
        step = health.COLLAPSE_FROM_STEP
        capfd.readouterr()
        trainer.validate(batch, writer, step)  # random weights fill with varied values
        # The refinement's last layer zeroed: its output is clip(0) = 0 everywhere, a flat gray.
        last = trainer.generator.allconv17
        for weight in (last.kernel, last.bias):
            weight.assign(tf.zeros_like(weight))
        for offset in (2, 4):
            trainer.validate(batch, writer, step + offset)
        writer.flush()
        warned = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning: ")]
        assert len(warned) == 1, warned
        assert warned[0].startswith(f"warning: step {step + 2}: the generator has collapsed: its fill of "
                                    "the validation holes is nearly constant (standard deviation 0 of "
                                    "255 levels")
        assert "lower --learning_rate" in warned[0]
        validation = read_events(tmp_path / "validation")
        assert [float(validation["health/collapsed"][s]) for s in (step, step + 2, step + 4)] == [0, 1, 1]
        assert float(validation["health/refined_hole_std"][step]) > health.COLLAPSE_STD
        # The held-out metrics still measure the gray fill; the run could go on training.
        assert np.isfinite(float(validation["heldout/l1_hole"][step + 4]))
        stats = trainer.train_step(trainer.training_data(), 1)
        assert math.isfinite(stats["g_loss"])
    finally:
        trainer.close()
