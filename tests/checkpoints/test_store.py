"""Tests of this project's checkpoint directories."""

import json
import os
import re
import shutil

import cv2
import numpy as np
import pytest
import tensorflow as tf

from conftest import (DELETED_CHECKPOINT, REPO, assert_user_error, box_mask, run_module,
                      with_a_deleted_checkpoint, write_tf1_checkpoint)
from inpainting.checkpoints import store, tf1
from inpainting.config import ConfigError, ModelConfig
from inpainting.errors import CheckpointError
from inpainting.model.generator import Generator

# Also run with the other oneDNN mode by `make test` (see pytest.ini).
pytestmark = pytest.mark.onednn_modes


def _tiny(seed):
    tf.keras.utils.set_random_seed(seed)
    generator = Generator(ModelConfig(cnum=4))
    generator.build()
    return generator


def test_round_trip_restores_every_weight(tmp_path):
    generator = _tiny(1)
    prefix = store.save(tmp_path / "m", generator, step=12)
    assert prefix.endswith("ckpt-12")
    loaded = store.load_generator(tmp_path / "m")
    assert loaded.config == generator.config
    for a, b in zip(loaded.weights, generator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    from_prefix = store.load_generator(prefix)
    np.testing.assert_array_equal(from_prefix.weights[0].numpy(), generator.weights[0].numpy())


def test_save_never_replaces_silently(tmp_path):
    store.save(tmp_path, _tiny(1))
    first = store.load_generator(tmp_path).weights[0].numpy()
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        store.save(tmp_path, _tiny(2))
    np.testing.assert_array_equal(store.load_generator(tmp_path).weights[0].numpy(), first)
    store.save(tmp_path, _tiny(2), overwrite=True)
    assert np.abs(store.load_generator(tmp_path).weights[0].numpy() - first).max() > 0


def test_load_errors(tmp_path):
    ModelConfig(cnum=4).save(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        store.load_generator(tmp_path / "empty")
    store.save(tmp_path / "m", _tiny(1))
    config = json.loads((tmp_path / "m" / "model_config.json").read_text())
    config["cnum"] = 8
    (tmp_path / "m" / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"holds a v1 generator \(cnum 4\) but .* describes a v1 "
                                              r"generator \(cnum 8\)"):
        store.load_generator(tmp_path / "m")
    (tmp_path / "m" / "model_config.json").write_text('{"version": "v9"}')
    with pytest.raises(ConfigError, match="version must be one of"):
        store.load_generator(tmp_path / "m")
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        store.load_generator(tmp_path / "nothing")


def test_a_state_file_naming_a_deleted_checkpoint_is_explained(tiny_checkpoint, tmp_path):
    model = with_a_deleted_checkpoint(tiny_checkpoint, tmp_path / "model")
    with pytest.raises(CheckpointError) as excinfo:
        store.load_generator(model)
    assert str(excinfo.value) == f"{model}: {DELETED_CHECKPOINT.format(model)}; or give one of them as the checkpoint prefix"
    store.load_generator(model / "ckpt-5")  # the prefix of one it holds loads


def test_loads_original_checkpoints_directly(official_checkpoint):
    generator = store.load_generator(official_checkpoint("v1"))
    assert generator.config.cnum == 32 and generator.config.image_size == (256, 256)


def _stderr_lines(result):
    """stderr without TensorFlow's C++ start-up notices, which are printed before logging is set up."""
    return [line for line in result.stderr.splitlines()
            if not line.startswith("WARNING: All log messages before absl::InitializeLog()")
            and not re.match(r"[IE]0000 00:00:", line)]


@pytest.fixture(scope="module")
def truncated_checkpoint(tiny_checkpoint, tmp_path_factory):
    """A copy of the tiny checkpoint whose .data file lost its second half (an interrupted copy)."""
    directory = tmp_path_factory.mktemp("truncated") / "model"
    shutil.copytree(tiny_checkpoint, directory)
    (data,) = directory.glob("ckpt-0.data-*")
    os.truncate(data, data.stat().st_size // 2)
    return directory


TRUNCATED = ("ckpt-0: the checkpoint is damaged or truncated", "copy it again")


def test_truncated_checkpoint_is_named(truncated_checkpoint):
    with pytest.raises(CheckpointError) as excinfo:
        store.load_generator(truncated_checkpoint)
    message = str(excinfo.value)
    assert message.startswith(f"{truncated_checkpoint / 'ckpt-0'}: ") and "\n" not in message
    for fragment in TRUNCATED:
        assert fragment in message


def test_truncated_checkpoint_inpaint_cli(truncated_checkpoint, tmp_path):
    cv2.imwrite(str(tmp_path / "img.png"), np.full((30, 41, 3), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "mask.png"), (box_mask(30, 41, 5, 5, 10, 10) * 255).astype(np.uint8))
    result = run_module("inpainting.inpaint", f"--checkpoint={truncated_checkpoint}",
                        f"--image={tmp_path / 'img.png'}", f"--mask={tmp_path / 'mask.png'}",
                        f"--output={tmp_path / 'out.png'}")
    assert_user_error(result, str(truncated_checkpoint / "ckpt-0"), *TRUNCATED)
    assert not (tmp_path / "out.png").exists()


def test_truncated_checkpoint_export_cli(truncated_checkpoint, tmp_path):
    result = run_module("export", f"--checkpoint={truncated_checkpoint}",
                        f"--export_dir={tmp_path / 'exported'}", "--nowarmup", cwd=REPO)
    assert_user_error(result, str(truncated_checkpoint / "ckpt-0"), *TRUNCATED)
    assert not (tmp_path / "exported").exists()


def test_truncated_checkpoint_serve_loading(truncated_checkpoint):
    from inpainting import serve

    with pytest.raises(CheckpointError) as excinfo:
        serve.load_runner(str(truncated_checkpoint))
    assert str(excinfo.value).startswith(f"{truncated_checkpoint / 'ckpt-0'}: ")
    for fragment in TRUNCATED:
        assert fragment in str(excinfo.value)


def test_truncated_tf1_checkpoint(tmp_path):
    prefix = write_tf1_checkpoint(tmp_path / "tf1", {"inpaint_net/conv1/kernel": np.ones((5, 5, 5, 4),
                                                                                         np.float32)})
    (data,) = (tmp_path / "tf1").glob("snap-0.data-*")
    os.truncate(data, 100)
    with pytest.raises(CheckpointError) as excinfo:
        tf1.read_variables(tmp_path / "tf1")
    assert str(excinfo.value).startswith(f"{prefix}: the checkpoint is damaged or truncated")


def test_version_mismatch_is_one_line(tiny_checkpoint, tmp_path):
    # v1 weights (with critics) under a config that says v2: one error line, not a warning per
    # value that TensorFlow could not restore.
    directory = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, directory)
    config = json.loads((directory / "model_config.json").read_text())
    (directory / "model_config.json").write_text(json.dumps(dict(config, version="v2")))
    with pytest.raises(CheckpointError, match=r"holds a v1 generator \(cnum 4\) but .*model_config.json "
                                              r"describes a v2 generator \(cnum 4\)"):
        store.load_generator(directory)
    cv2.imwrite(str(tmp_path / "img.png"), np.full((30, 41, 3), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "mask.png"), (box_mask(30, 41, 5, 5, 10, 10) * 255).astype(np.uint8))
    result = run_module("inpainting.inpaint", f"--checkpoint={directory}", f"--image={tmp_path / 'img.png'}",
                        f"--mask={tmp_path / 'mask.png'}", f"--output={tmp_path / 'out.png'}")
    assert_user_error(result, "holds a v1 generator", "describes a v2 generator")
    assert len(_stderr_lines(result)) <= 3, result.stderr
