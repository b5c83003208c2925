"""Tests of inpainting.runners: which runner a path gives, and what the checkpoint and SavedModel
runners return (the TFLite runner is tested in test_tflite.py)."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import box_mask, photo
from inpainting import checkpoints, runners, serving
from inpainting.errors import CheckpointError, ImageError
from inpainting.inference import Inpainter


@pytest.fixture(scope="module")
def export_dir(tiny_checkpoint, tmp_path_factory):
    """An export folder holding the tiny model as version 10 and an empty version folder 2."""
    directory = tmp_path_factory.mktemp("runners") / "export"
    serving.export(tiny_checkpoint, directory, version=10, warmup=False)
    os.makedirs(directory / "2")
    return directory


def _image():
    rgb = photo(30, 41, seed=3)
    return rgb, box_mask(30, 41, 6, 10, 12, 16)


def test_a_missing_path_is_named(tmp_path):
    for path in (tmp_path / "nothing", tmp_path / "ckpt-5"):
        with pytest.raises(CheckpointError, match=rf"^{path}: no such file or directory$"):
            runners.load(path)


def test_checkpoint_runner_is_the_inpainter(tiny_checkpoint):
    rgb, mask = _image()
    expected = Inpainter(checkpoints.load_generator(tiny_checkpoint))(rgb, mask)
    prefix = checkpoints.latest_prefix(tiny_checkpoint)
    for path in (tiny_checkpoint, prefix):  # the folder, or a checkpoint prefix in it
        runner = runners.load(path)
        assert isinstance(runner, runners.CheckpointRunner) and runner.kind == "checkpoint"
        assert runner.path == os.fspath(path) and runner.version == "v1" and not runner.guided
    filled, flow = runner.run(rgb, mask.astype(np.uint8))  # any {0, 1} mask type
    np.testing.assert_array_equal(filled, expected["filled"])
    np.testing.assert_array_equal(flow, expected["flow"])
    assert flow.dtype == np.uint8 and filled.dtype == np.float32
    np.testing.assert_array_equal(runner(rgb, mask), expected["filled"])
    with pytest.raises(ImageError, match="^photo.png: a sketch was given but this model is not guided"):
        runner.run(rgb, mask, "photo.png", sketch=mask)


def test_saved_model_runner_of_the_latest_version(tiny_checkpoint, export_dir):
    runner = runners.load(export_dir)  # versions 2 and 10: the largest number, not the last name
    assert isinstance(runner, runners.SavedModelRunner) and runner.kind == "saved_model"
    assert runner.path == os.path.join(export_dir, "10")
    assert runner.version == "v1" and not runner.guided
    rgb, mask = _image()
    filled, flow = runner.run(rgb, mask)
    hole = mask > 0
    # The input outside the hole, the network's fill inside it.
    np.testing.assert_array_equal(filled[~hole], rgb[~hole].astype(np.float32))
    expected_filled, expected_flow = runners.load(tiny_checkpoint).run(rgb, mask)
    assert np.abs(filled[hole] - expected_filled[hole]).max() <= 0.05
    assert flow.dtype == np.uint8 and np.abs(flow.astype(int) - expected_flow).max() <= 1
    np.testing.assert_array_equal(runner(rgb, mask), filled)
    with pytest.raises(ImageError, match="^photo.png: a sketch was given but this model is not guided"):
        runner.run(rgb, mask, "photo.png", sketch=mask)


def test_saved_model_without_its_config_or_signature(export_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(export_dir / "10", bare)
    os.remove(bare / "assets.extra" / "model_config.json")
    assert runners.load(bare).version is None
    module = tf.Module()
    module.double = tf.function(lambda x: {"y": 2 * x}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "other"), signatures={"serving_default": module.double})
    with pytest.raises(CheckpointError, match=rf"^{tmp_path / 'other'}: this SavedModel has no 'inpaint' "
                                              r"signature; export it with export.py$"):
        runners.load(tmp_path / "other")
