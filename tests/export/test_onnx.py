"""Tests of the ONNX model: a valid graph of default-domain ops that ONNX Runtime's CPU provider runs,
agreeing with the SavedModel; the ONNX runner in the command-line tools; bad .onnx files."""

import os

import cv2
import numpy as np
import pytest

from conftest import load_reference, photo_with_box, run_module
from inpainting import imageio
from inpainting.checkpoints import tf1
from inpainting.errors import ExportError
from inpainting.export import job, saved_model
from inpainting.export import onnx as onnx_lib
from inpainting.inference import runners

pytest.importorskip("tf2onnx", reason="the ONNX tests need inpainting[onnx] (tf2onnx, onnx, onnxruntime)")
pytest.importorskip("onnxruntime", reason="the ONNX tests need inpainting[onnx] (tf2onnx, onnx, onnxruntime)")

TOLERANCE = 0.05  # on 0..255: the same float32 math in another runtime
FLOW_LEVELS = 1  # 1/255: float64 colouring with a series arctangent instead of the library's


def _assert_agree(onnx_runner, saved_runner, rgb, mask, sketch=None, what=""):
    got, expected = onnx_runner.run(rgb, mask, sketch=sketch), saved_runner.run(rgb, mask, sketch=sketch)
    assert np.abs(got.filled - expected.filled).max() <= TOLERANCE, what
    np.testing.assert_array_equal(got.filled[mask == 0], rgb[mask == 0].astype(np.float32), err_msg=what)
    flow = np.abs(got.flow.astype(int) - expected.flow.astype(int))
    assert flow.max() <= FLOW_LEVELS, what


# Contextual attention's memory budget of the tiny export: at 37x53 (a 5 x 7 grid) the score
# matrix fits and the attention runs in one piece; at 64x80 (8 x 10) it runs in row blocks of 2
# grid rows (`attention.block_rows_for`), in an ONNX Loop.
BUDGET_MB = 0.08


def _ops(graph):
    """The op types of an ONNX graph and of its subgraphs (the branches of If, the bodies of Loop)."""
    ops = set()
    for node in graph.node:
        ops.add(node.op_type)
        for attribute in node.attribute:
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                ops |= _ops(subgraph)
    return ops


@pytest.fixture(scope="module")
def tiny_onnx(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint exported with model.onnx and an attention budget of BUDGET_MB; returns
    the version folder."""
    return job.export(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "tiny", onnx=True, warmup=False,
                      attention_memory_mb=BUDGET_MB)


def test_model_is_valid_and_uses_default_onnx_ops_only(tiny_onnx):
    import onnx

    model = onnx.load(os.path.join(tiny_onnx, onnx_lib.MODEL_FILE))
    onnx.checker.check_model(model, full_check=True)
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}
    ops = _ops(model.graph)
    # The network is in there: convolutions, the attention's matmul, the flow's upsampling, the
    # choice between the attention in one piece and in row blocks (a Loop); the flow's arctangent
    # is a series (the CPU provider has no float64 Atan).
    assert {"Conv", "MatMul", "DepthToSpace", "If", "Loop"} <= ops and "Atan" not in ops, ops
    # Batch, height and width are dynamic.
    for tensor in model.graph.input:
        dims = tensor.type.tensor_type.shape.dim
        assert [d.HasField("dim_value") for d in dims] == [False, False, False, True], tensor.name
    assert sorted(t.name for t in model.graph.output) == ["flow", "inpainted"]


@pytest.mark.onednn_modes
@pytest.mark.parametrize("size", [(37, 53), (64, 80)])
def test_onnx_runtime_matches_the_saved_model(tiny_onnx, tiny_checkpoint, size):
    from inpainting.model import attention

    runner = runners.load(os.path.join(tiny_onnx, onnx_lib.MODEL_FILE), threads=2)
    assert (runner.kind, runner.version, runner.guided) == ("onnx", "v1", False)
    rows = int(attention.block_rows_for(8, 10, BUDGET_MB))
    assert rows == 2 and int(attention.block_rows_for(5, 7, BUDGET_MB)) >= 5  # blocks at 64x80 only
    _assert_agree(runner, runners.load(tiny_onnx), *photo_with_box(*size), what=str(size))
    # The checkpoint computes the attention in one piece at these sizes.
    _assert_agree(runner, runners.load(tiny_checkpoint), *photo_with_box(*size), what=f"{size}, checkpoint")


def test_bad_onnx_files_get_one_line_errors(tiny_onnx, tmp_path):
    whole = open(os.path.join(tiny_onnx, onnx_lib.MODEL_FILE), "rb").read()
    truncated, other = tmp_path / "truncated.onnx", tmp_path / "photo.onnx"
    truncated.write_bytes(whole[:len(whole) // 2])
    imageio.write_image(other.with_suffix(".png"), np.zeros((8, 8, 3), np.uint8))
    other.write_bytes(other.with_suffix(".png").read_bytes())
    for path in (truncated, other):
        with pytest.raises(ExportError, match=r"not a readable ONNX model \(.*\); export one with export.py "
                                              r"--onnx") as err:
            runners.load(path)
        assert "\n" not in str(err.value)
    rgb, mask = photo_with_box(24, 24)
    imageio.write_image(tmp_path / "in.png", rgb[..., ::-1])
    imageio.write_image(tmp_path / "mask.png", (mask * 255).astype(np.uint8))
    result = run_module("inpainting.inpaint", "--checkpoint", truncated, "--image", tmp_path / "in.png",
                        "--mask", tmp_path / "mask.png", "--output", tmp_path / "out.png")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]  # after TensorFlow's start-up notices
    assert last == (f"error: {truncated}: not a readable ONNX model (INVALID_PROTOBUF : Protobuf parsing "
                    "failed.); export one with export.py --onnx"), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_inpaint_and_evaluate_take_an_onnx_model(tiny_onnx, tmp_path):
    import json

    model = os.path.join(tiny_onnx, onnx_lib.MODEL_FILE)
    rgb, mask = photo_with_box(40, 56)
    images, masks = tmp_path / "images", tmp_path / "masks"
    imageio.write_image(images / "a.png", rgb[..., ::-1])
    imageio.write_image(masks / "a.png", (mask * 255).astype(np.uint8))
    result = run_module("inpainting.inpaint", "--checkpoint", model, "--image", images / "a.png",
                        "--mask", masks / "a.png", "--output", tmp_path / "out.png")
    assert result.returncode == 0, result.stderr
    expected = np.rint(runners.load(model)(rgb, mask)).astype(np.uint8)
    np.testing.assert_array_equal(imageio.read_image(tmp_path / "out.png").rgb, expected)
    result = run_module("inpainting.evaluate", "--checkpoint", model, "--images", images, "--masks", masks,
                        "--output_dir", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert report["settings"]["runner"] == "onnx"


def test_serve_answers_with_an_onnx_model(tiny_onnx):
    pytest.importorskip("starlette", reason="serving needs inpainting[serve]")
    from starlette.testclient import TestClient

    from inpainting import serve

    runner = serve.load_runner(os.path.join(tiny_onnx, onnx_lib.MODEL_FILE))
    rgb, mask = photo_with_box(32, 48)
    png = {name: cv2.imencode(".png", array)[1].tobytes() for name, array in
           (("image", rgb[..., ::-1]), ("mask", (mask * 255).astype(np.uint8)))}
    with TestClient(serve.create_app(runner, max_pixels=4096, max_upload_bytes=2**20)) as client:
        health = client.get("/api/health").json()
        assert (health["kind"], health["version"]) == ("onnx", "v1")
        response = client.post("/api/inpaint", files={name: (f"{name}.png", data, "image/png")
                                                      for name, data in png.items()})
    assert response.status_code == 200, response.text
    result = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1]
    np.testing.assert_array_equal(result, np.rint(runner(rgb, mask)).astype(np.uint8))


@pytest.mark.slow  # one oneDNN mode: ONNX Runtime's side does not depend on it (the tiny models test both)
@pytest.mark.parametrize("version", ["v1", "v2", "guided_v2"])
def test_reference_models_match_the_saved_model(version, official_checkpoint, v2_variables, tmp_path):
    if version == "guided_v2":
        ref = load_reference("v2", "g_guided_256x256_b1.npz")
        guided_conv1 = {"inpaint_net/conv1/kernel": ref["guided_conv1_kernel"]}
        generator = tf1.build_generator(dict(v2_variables, **guided_conv1))
        sketch = ref["edge"][0, :, :, 0]
    else:
        ref = load_reference(version, "g_256x256_b1.npz")
        generator = tf1.build_generator(tf1.read_variables(official_checkpoint(version)))
        sketch = None
    directory = saved_model.export_saved_model(generator, tmp_path / "export", warmup=False,
                                               extra=lambda path: onnx_lib.write_model(generator, path))
    saved = runners.load(directory)
    runner = runners.load(os.path.join(directory, onnx_lib.MODEL_FILE), threads=2)
    assert runner.guided == (sketch is not None)
    photo = ref["image_u8_bgr"][0][..., ::-1]
    _assert_agree(runner, saved, photo, ref["mask"][0, :, :, 0], sketch, "256x256")
    odd = photo_with_box(203, 317)
    _assert_agree(runner, saved, np.tile(photo, (1, 2, 1))[:203, :317], odd[1], what="203x317")
    if version == "v1":  # the large size once: it costs the most
        big = np.tile(photo, (2, 3, 1))[:512, :680]
        _assert_agree(runner, saved, big, photo_with_box(512, 680)[1], what="512x680")


def test_series_arctangent_matches_atan2_with_signed_zeros():
    import tensorflow as tf

    from inpainting.model import flow

    grid = np.arange(-30, 31, dtype=np.float64) / 7.0
    y, x = (a.ravel() for a in np.meshgrid(grid, grid))
    y = np.concatenate([y, [0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 2.0, -2.0]])
    x = np.concatenate([x, [0.0, -0.0, -0.0, 0.0, -3.0, -3.0, 0.0, -0.0]])
    got = flow.atan2_series(tf.constant(y), tf.constant(x)).numpy()
    expected = np.arctan2(y, x)
    assert np.abs(got - expected).max() <= 1e-15
    np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))
    np.testing.assert_array_equal(got[-8:], expected[-8:])  # -pi for (-0, -0), pi/2 for (2, 0), ...
