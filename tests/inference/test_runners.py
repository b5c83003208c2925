"""The runners' one contract: a checkpoint, its SavedModel and its TFLite model run alike."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import box_mask, photo
from inpainting.checkpoints import store
from inpainting.errors import CheckpointError, ImageError
from inpainting.export import job, saved_model, tflite
from inpainting.inference import runners
from inpainting.inference.inpainter import Inpainter

# The SavedModel and TFLite fp32 run the checkpoint's float32 math in other graphs.
TOLERANCE = 0.05


@pytest.fixture(scope="module")
def three_runners(tiny_checkpoint, tmp_path_factory):
    """{kind: runner} of the tiny checkpoint, its SavedModel and its fp32 TFLite model."""
    generator = store.load_generator(tiny_checkpoint)

    def extra(directory):  # what the export job adds: the model config and a TFLite model
        generator.config.save(os.path.join(directory, "assets.extra"))
        tflite.write_models(generator, directory, quantizations=("fp32",))

    directory = saved_model.export_saved_model(generator, tmp_path_factory.mktemp("runners") / "tiny",
                                               warmup=False, extra=extra)
    return {"checkpoint": runners.load(tiny_checkpoint), "saved_model": runners.load(directory),
            "tflite": runners.load(os.path.join(directory, tflite.model_file("fp32")), threads=2)}


def test_every_runner_returns_the_same_result_type(three_runners):
    rgb, mask = photo(37, 53, seed=4), box_mask(37, 53, 9, 12, 15, 22)  # not multiples of 8
    for kind, runner in three_runners.items():
        assert runner.kind == kind
        assert (runner.guided, runner.version) == (False, "v1"), kind
        result = runner.run(rgb, mask, name="photo.png")
        assert type(result) is runners.Result, kind
        assert (result.filled.dtype, result.filled.shape) == (np.float32, (37, 53, 3)), kind
        assert (result.flow.dtype, result.flow.shape) == (np.uint8, (37, 53, 3)), kind
        filled, flow = result  # a tuple too
        np.testing.assert_array_equal(runner(rgb, mask), filled)
        # The input outside the hole, exactly.
        np.testing.assert_array_equal(filled[mask == 0], rgb[mask == 0].astype(np.float32))


@pytest.mark.parametrize("size, box", [((37, 53), (9, 12, 15, 22)), ((48, 64), (4, 30, 30, 20))])
def test_the_three_forms_of_a_model_agree(three_runners, size, box):
    rgb, mask = photo(*size, seed=5), box_mask(*size, *box)
    results = {kind: runner.run(rgb, mask) for kind, runner in three_runners.items()}
    expected = results["checkpoint"]
    hole = mask > 0
    assert (expected.filled[hole] != rgb[hole]).any(axis=1).mean() > 0.9  # the hole is filled
    for kind in ("saved_model", "tflite"):
        assert np.abs(results[kind].filled - expected.filled).max() <= TOLERANCE, kind
    np.testing.assert_array_equal(results["saved_model"].flow, expected.flow)
    # TFLite colours the flow in float32: where a level rounds the other way, one level apart.
    difference = np.abs(results["tflite"].flow.astype(int) - expected.flow)
    assert difference.max() <= 1 and (difference > 0).mean() < 0.1


def test_every_runner_refuses_a_sketch_for_a_model_that_is_not_guided(three_runners):
    rgb, mask = photo(24, 32), box_mask(24, 32, 8, 8, 8, 8)
    for kind, runner in three_runners.items():
        with pytest.raises(ImageError, match="^lines.png: a sketch was given but this model is not guided"):
            runner.run(rgb, mask, "lines.png", sketch=mask)


@pytest.fixture(scope="module")
def export_dir(tiny_checkpoint, tmp_path_factory):
    """An export folder holding the tiny model as version 10 and an empty version folder 2."""
    directory = tmp_path_factory.mktemp("runners") / "export"
    job.export(tiny_checkpoint, directory, version=10, warmup=False)
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
    expected = Inpainter(store.load_generator(tiny_checkpoint))(rgb, mask)
    prefix = store.latest_prefix(tiny_checkpoint)
    for path in (tiny_checkpoint, prefix):  # the folder, or a checkpoint prefix in it
        runner = runners.load(path)
        assert isinstance(runner, runners.CheckpointRunner) and runner.kind == "checkpoint"
        assert runner.path == os.fspath(path) and runner.version == "v1" and not runner.guided
    filled, flow = runner.run(rgb, mask.astype(np.uint8))  # any {0, 1} mask type
    hole = mask > 0
    # The inpainter's fill inside the hole, the input outside it.
    np.testing.assert_array_equal(filled[hole], expected["filled"][hole])
    np.testing.assert_array_equal(filled[~hole], rgb[~hole].astype(np.float32))
    np.testing.assert_array_equal(flow, expected["flow"])
    assert flow.dtype == np.uint8 and filled.dtype == np.float32
    np.testing.assert_array_equal(runner(rgb, mask), filled)
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
