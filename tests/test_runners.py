"""The runners' one contract: a checkpoint, its SavedModel and its TFLite model run alike."""

import os

import numpy as np
import pytest

from conftest import box_mask, photo
from inpainting.checkpoints import store
from inpainting.errors import ImageError
from inpainting.export import saved_model, tflite
from inpainting.inference import runners

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
