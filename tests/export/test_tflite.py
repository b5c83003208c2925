"""Tests of the TFLite models: built-in ops only, dynamic and fixed sizes, and agreement with the
SavedModel in the LiteRT interpreter (ai-edge-litert)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import load_reference, photo_with_box, run_module
from inpainting import evaluate, imageio
from inpainting.checkpoints import store, tf1
from inpainting.errors import CheckpointError, ExportError
from inpainting.export import job, signatures, tflite
from inpainting.inference import runners

# fp32 runs the same float32 math; fp16 rounds the weights to 11 significant bits.
FP32_TOLERANCE = 0.05
FP16_TOLERANCE = 1.0


@pytest.fixture(scope="module")
def tiny_models(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint exported with its TFLite models; returns the version folder."""
    return job.export(tiny_checkpoint, tmp_path_factory.mktemp("tflite") / "tiny", tflite=True,
                          warmup=False)


def _no_flex(ops):
    assert not [op for op in ops if op.lower().startswith("flex") or op == "CUSTOM"], ops


def test_models_use_builtin_ops_only(tiny_models):
    for quantization in tflite.QUANTIZATIONS:
        ops = tflite.op_names(os.path.join(tiny_models, tflite.model_file(quantization)))
        _no_flex(ops)
        # The network really is in there: convolutions, the attention's matmul and the flow's atan2.
        assert {"CONV_2D", "BATCH_MATMUL", "ATAN2", "DEPTH_TO_SPACE"} <= set(ops), ops


@pytest.mark.parametrize("size", [(37, 53), (64, 80)])
def test_dynamic_size_models_match_the_saved_model(tiny_models, size):
    rgb, mask = photo_with_box(*size)
    expected = runners.load(tiny_models)(rgb, mask)
    fp32 = runners.load(os.path.join(tiny_models, "model_fp32.tflite"), threads=2)
    assert np.abs(fp32(rgb, mask) - expected).max() <= FP32_TOLERANCE
    fp16 = runners.load(os.path.join(tiny_models, "model_fp16.tflite"), threads=2)
    assert np.abs(fp16(rgb, mask) - expected).max() <= FP16_TOLERANCE
    int8 = runners.load(os.path.join(tiny_models, "model_int8_dynamic.tflite"), threads=2)
    result = int8(rgb, mask)
    assert result.shape == rgb.shape
    np.testing.assert_array_equal(result[mask == 0], rgb[mask == 0])


def test_evaluation_of_checkpoint_saved_model_and_tflite_agree(tiny_checkpoint, tiny_models, tmp_path):
    samples = [evaluate.Sample(f"{i}", *photo_with_box(40 + 8 * i, 48, seed=i)) for i in range(2)]
    methods = {"checkpoint": runners.load(tiny_checkpoint), "saved_model": runners.load(tiny_models),
               "tflite": runners.load(os.path.join(tiny_models, "model_fp32.tflite"))}
    assert [m.kind for m in methods.values()] == ["checkpoint", "saved_model", "tflite"]
    _, summary = evaluate.evaluate(methods, samples)
    means = {name: summary[name]["mean"] for name in methods}
    for name in ("saved_model", "tflite"):  # 8-bit results: at most a rounding step apart
        assert abs(means[name]["l1_hole"] - means["checkpoint"]["l1_hole"]) < 0.01
    # The command line takes a .tflite file for --checkpoint.
    images, masks = tmp_path / "images", tmp_path / "masks"
    for sample in samples:
        imageio.write_image(images / f"{sample.name}.png", sample.rgb[..., ::-1])
        imageio.write_image(masks / f"{sample.name}.png", (sample.mask * 255).astype(np.uint8))
    result = run_module("inpainting.evaluate", "--checkpoint", os.path.join(tiny_models, "model_fp32.tflite"),
                        "--images", images, "--masks", masks, "--output_dir", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert report["settings"]["runner"] == "tflite"
    assert report["methods"]["model"]["mean"]["l1_hole"] == pytest.approx(means["tflite"]["l1_hole"], abs=1e-9)


def test_sizes_of_the_three_files(tiny_models):
    size = {q: os.path.getsize(os.path.join(tiny_models, tflite.model_file(q))) for q in tflite.QUANTIZATIONS}
    assert size["int8_dynamic"] < size["fp16"] < size["fp32"]


def test_fixed_size_model(tiny_checkpoint, tmp_path):
    generator = store.load_generator(tiny_checkpoint)
    path = tmp_path / "fixed.tflite"
    path.write_bytes(tflite.convert(generator, "fp32", size=(40, 56)))
    runner = runners.load(path)
    assert runner.fixed_size == (40, 56)
    rgb, mask = photo_with_box(40, 56)
    expected = signatures.ServingModule(generator).inpaint(tf.constant(rgb[None], tf.float32),
                                                        tf.constant(mask[None, :, :, None]))
    assert np.abs(runner(rgb, mask) - expected["inpainted"].numpy()[0]).max() <= FP32_TOLERANCE
    with pytest.raises(ExportError, match=r"takes 56x40 images only \(exported with tflite_size\); got 40x40"):
        runner(*photo_with_box(40, 40))


def test_an_op_without_builtin_fails_naming_it(tmp_path):
    class Determinant(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 3, 3], tf.float32, name="image")])
        def inpaint(self, image):
            return {"inpainted": tf.linalg.det(image)}

    module = Determinant()
    tf.saved_model.save(module, str(tmp_path), signatures={"inpaint": module.inpaint})
    with pytest.raises(ExportError, match="not TFLite built-ins: MatrixDeterminant; they would need "
                                          "the Flex delegate"):
        tflite.convert_saved_model(str(tmp_path))


def test_bad_arguments(tiny_checkpoint, tmp_path):
    generator = store.load_generator(tiny_checkpoint)
    with pytest.raises(ExportError, match="quantization must be one of fp32, fp16, int8_dynamic"):
        tflite.convert(generator, "int4")
    with pytest.raises(ExportError, match="size must be HxW"):
        tflite.convert(generator, size=(0, 64))
    with pytest.raises(CheckpointError, match="no such TFLite file"):
        runners.load(tmp_path / "missing.tflite")


@pytest.mark.slow
def test_reference_v1_tflite_matches_saved_model(official_checkpoint, tmp_path, record_property):
    directory = job.export(official_checkpoint("v1"), tmp_path / "export", tflite=True, warmup=False)
    for quantization in tflite.QUANTIZATIONS:
        _no_flex(tflite.op_names(os.path.join(directory, tflite.model_file(quantization))))
    saved = runners.load(directory)
    models = {q: runners.load(os.path.join(directory, tflite.model_file(q)), threads=2)
              for q in tflite.QUANTIZATIONS}
    ref = load_reference("v1", "g_256x256_b1.npz")
    photo = ref["image_u8_bgr"][0][..., ::-1]
    cases = {"256x256": (photo, ref["mask"][0, :, :, 0]),
             "512x680": (np.tile(photo, (2, 3, 1))[:512, :680], photo_with_box(512, 680)[1])}
    for name, (rgb, mask) in cases.items():
        expected = saved(rgb, mask)
        diff = {q: np.abs(model(rgb, mask) - expected) for q, model in models.items()}
        assert diff["fp32"].max() <= FP32_TOLERANCE, name
        assert diff["fp16"].max() <= FP16_TOLERANCE, name
        record_property(f"int8_dynamic_mean_abs_diff_{name}", float(diff["int8_dynamic"].mean()))
        print(f"{name}: int8_dynamic mean abs diff {diff['int8_dynamic'].mean():.3f} "
              f"(max {diff['int8_dynamic'].max():.1f}) on 0..255")
        # Dynamic-range quantization changes the fill, not the kind of fill.
        assert diff["int8_dynamic"].mean() < 2.0, name


@pytest.mark.slow
@pytest.mark.onednn_modes
def test_guided_v2_exports_to_saved_model_and_builtin_tflite(v2_variables, tmp_path):
    import subprocess
    import sys

    from inpainting.export import saved_model
    from inpainting.inference.inpainter import Inpainter
    from inpainting.inference.runners import TFLiteRunner

    ref = load_reference("v2", "g_guided_256x256_b1.npz")
    generator = tf1.build_generator(dict(v2_variables, **{"inpaint_net/conv1/kernel": ref["guided_conv1_kernel"]}))
    directory = saved_model.export_saved_model(
        generator, tmp_path / "export", extra=lambda path: tflite.write_models(generator, path, quantizations=("fp32",)))
    rgb, mask, edge = ref["image_u8_bgr"][0][..., ::-1], ref["mask"][0, :, :, 0], ref["edge"][0, :, :, 0]
    filled = Inpainter(generator)(rgb, mask, sketch=edge)["filled"]
    expected = np.where(mask[..., None] > 0.5, filled, rgb.astype(np.float32))
    # The graph loader, in a fresh process, with the sketch input of the guided signature.
    for name, value in (("image", rgb[None]), ("mask", mask[None, :, :, None]), ("sketch", edge[None, :, :, None])):
        np.save(tmp_path / f"{name}.npy", value.astype(np.float32))
    inputs = ";".join(f"{name}={tmp_path / name}.npy" for name in ("image", "mask", "sketch"))
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "saved_model_cli"), "run", "--dir", directory,
         "--tag_set", "serve", "--signature_def", "inpaint", "--inputs", inputs, "--outdir", tmp_path / "out"],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.load(tmp_path / "out" / "inpainted.npy")[0]
    assert np.abs(served - expected).max() <= 0.05
    model = os.path.join(directory, tflite.model_file("fp32"))
    ops = tflite.op_names(model)
    assert not [op for op in ops if op.lower().startswith("flex")] and "LOGISTIC" in ops  # the gates
    out = TFLiteRunner(model).run(rgb, mask, sketch=edge)
    assert np.abs(out.filled - served).max() <= 0.05
    # The warm-up requests carry a sketch too, and the bytes signature takes sketch_bytes.
    loaded = tf.saved_model.load(directory)
    assert sorted(loaded.signatures["serving_default"].structured_input_signature[1]) == [
        "image_bytes", "mask_bytes", "sketch_bytes"]
