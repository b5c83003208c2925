"""Tests of the original-checkpoint import (inpainting.checkpoints.tf1) and its command line."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_user_error, run_module, write_tf1_checkpoint
from inpainting.checkpoints import reading, store, tf1
from inpainting.errors import CheckpointError

# Also run with the other oneDNN mode by `make test` (see pytest.ini).
pytestmark = pytest.mark.onednn_modes


@pytest.fixture(scope="module")
def reference_variables(official_checkpoint):
    return tf1.read_variables(official_checkpoint("v1"))


def test_reads_every_reference_tensor(reference_variables):
    assert len(reference_variables) == 104
    assert tf1.detect_version(reference_variables) == "v1"


def test_release_layout_with_slots_meta_and_renamed_state_file(tmp_path, reference_variables,
                                                               official_checkpoint):
    # What a released model looks like after a Google Drive download: optimizer slots, a .meta
    # file, `checkpoint` renamed to `checkpoint.txt`, and the authors' absolute path inside it.
    variables = dict(reference_variables)
    variables["inpaint_net/conv1/kernel/Adam"] = np.zeros_like(variables["inpaint_net/conv1/kernel"])
    variables["beta1_power"] = np.float32(0.5)
    variables["global_step"] = np.int64(1000)
    write_tf1_checkpoint(tmp_path, variables, state_file="checkpoint.txt",
                          recorded="/home/someone/model_logs/snap-0")
    (tmp_path / "snap-0.meta").write_bytes(b"\x00graph")
    loaded = tf1.load_official_generator(tmp_path)
    expected = tf1.load_official_generator(official_checkpoint("v1"))
    for a, b in zip(loaded.weights, expected.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_weights_are_permuted_from_bgr(reference_variables, official_checkpoint):
    generator = tf1.load_official_generator(official_checkpoint("v1"))
    layers = generator.conv_layers()
    original = reference_variables["inpaint_net/conv1/kernel"]
    np.testing.assert_array_equal(layers["conv1"].kernel.numpy()[:, :, :3], original[:, :, 2::-1])
    np.testing.assert_array_equal(layers["conv1"].kernel.numpy()[:, :, 3:], original[:, :, 3:])
    np.testing.assert_array_equal(layers["allconv17"].bias.numpy(),
                                  reference_variables["inpaint_net/allconv17/bias"][::-1])
    np.testing.assert_array_equal(layers["conv13_upsample"].conv.kernel.numpy(),
                                  reference_variables["inpaint_net/conv13_upsample/conv13_upsample_conv/kernel"])


def test_resolve_prefix(tmp_path):
    a = write_tf1_checkpoint(tmp_path / "one", {"x": np.zeros(2, np.float32)}, state_file=None)
    assert reading.resolve_prefix(tmp_path / "one") == a
    assert reading.resolve_prefix(a) == a and reading.resolve_prefix(a + ".index") == a
    write_tf1_checkpoint(tmp_path / "two", {"x": np.zeros(2, np.float32)}, "snap-1", None)
    write_tf1_checkpoint(tmp_path / "two", {"x": np.zeros(2, np.float32)}, "snap-2", None)
    with pytest.raises(tf1.CheckpointError, match="several checkpoints .*snap-1, snap-2"):
        reading.resolve_prefix(tmp_path / "two")
    (tmp_path / "empty").mkdir()
    with pytest.raises(tf1.CheckpointError, match="no \\*.index file"):
        reading.resolve_prefix(tmp_path / "empty")
    with pytest.raises(tf1.CheckpointError, match="no such checkpoint folder"):
        reading.resolve_prefix(tmp_path / "missing")


def test_wrong_version_shape_and_content_errors(tmp_path, reference_variables):
    v2_like = dict(reference_variables)
    v2_like["inpaint_net/xconv1/kernel"] = np.zeros((5, 5, 3, 48), np.float32)
    write_tf1_checkpoint(tmp_path / "v2", v2_like)
    with pytest.raises(tf1.CheckpointError, match=r"is a DeepFill v2 checkpoint .*, not v1; pass version=v2"):
        tf1.load_official_generator(tmp_path / "v2")
    wrong = dict(reference_variables)
    wrong["inpaint_net/conv5/kernel"] = np.zeros((3, 3, 128, 64), np.float32)
    write_tf1_checkpoint(tmp_path / "shape", wrong)
    with pytest.raises(tf1.CheckpointError, match=r"inpaint_net/conv5/kernel has shape \[3, 3, 128, 64\]"):
        tf1.load_official_generator(tmp_path / "shape")
    write_tf1_checkpoint(tmp_path / "other", {"resnet/conv1/kernel": np.zeros(3, np.float32)})
    with pytest.raises(tf1.CheckpointError, match="holds no DeepFill generator"):
        tf1.load_official_generator(tmp_path / "other")
    generator_only = {k: v for k, v in reference_variables.items() if k.startswith("inpaint_net")}
    write_tf1_checkpoint(tmp_path / "gen", generator_only)
    with pytest.raises(tf1.CheckpointError, match="holds no critics"):
        tf1.load_official_critics(tmp_path / "gen")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "snap-0.index").write_bytes(b"not a checkpoint index")
    with pytest.raises(tf1.CheckpointError, match="cannot read the checkpoint"):
        tf1.read_variables(tmp_path / "corrupt")


@pytest.mark.slow
def test_convert_command_line(tmp_path, official_checkpoint):
    output = tmp_path / "converted"
    result = run_module("inpainting.checkpoints.convert", f"--checkpoint={official_checkpoint('v1')}", f"--output={output}")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(output)) == ["checkpoint", "ckpt-0.data-00000-of-00001", "ckpt-0.index",
                                          "model_config.json"]
    converted = store.load_generator(output)
    expected = tf1.load_official_generator(official_checkpoint("v1"))
    for a, b in zip(converted.weights, expected.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    critics = tf.train.Checkpoint(critics=tf1.load_official_critics(official_checkpoint("v1")))
    names = {name for name, _ in tf.train.list_variables(str(output / "ckpt-0"))}
    assert any(name.startswith("critics/") for name in names)
    del critics
    # A second conversion into the same directory must not replace it.
    again = run_module("inpainting.checkpoints.convert", f"--checkpoint={official_checkpoint('v1')}", f"--output={output}")
    assert_user_error(again, "already holds a checkpoint", "--overwrite")


def test_convert_command_line_wrong_version(tmp_path, reference_variables):
    v2_like = dict(reference_variables)
    v2_like["inpaint_net/xconv1/kernel"] = np.zeros((5, 5, 3, 48), np.float32)
    write_tf1_checkpoint(tmp_path / "v2", v2_like)
    result = run_module("inpainting.checkpoints.convert", f"--checkpoint={tmp_path / 'v2'}", f"--output={tmp_path / 'out'}")
    assert_user_error(result, "DeepFill v2 checkpoint")
    assert not (tmp_path / "out").exists()
    # Only the error line, besides TensorFlow's C++ start-up notices (printed before logging is set up).
    lines = [line for line in result.stderr.splitlines()
             if not line.startswith("WARNING: All log messages before absl::InitializeLog()")
             and not re.match(r"[IE]0000 00:00:", line)]
    assert len(lines) <= 3, result.stderr


def test_convert_command_line_output_is_a_file(tmp_path, reference_variables):
    write_tf1_checkpoint(tmp_path / "original", reference_variables)
    (tmp_path / "notes.txt").write_text("mine")
    result = run_module("inpainting.checkpoints.convert", f"--checkpoint={tmp_path / 'original'}",
                        f"--output={tmp_path / 'notes.txt'}", "--overwrite")
    assert_user_error(result, f"{tmp_path / 'notes.txt'}: is a file", "--output must be a folder")
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_convert_command_line_refuses_its_own_folder(tmp_path, reference_variables, overwrite):
    original = tmp_path / "original"
    write_tf1_checkpoint(original, reference_variables)
    before = {name: (original / name).read_bytes() for name in os.listdir(original)}
    for output in (original, original / "snap-0"):
        result = run_module("inpainting.checkpoints.convert", f"--checkpoint={output}", f"--output={original}", *overwrite)
        assert_user_error(result, f"{original}: is the folder of the original checkpoint",
                          "choose another --output")
    assert {name: (original / name).read_bytes() for name in os.listdir(original)} == before


def test_version_mismatch_is_refused(v2_variables, tmp_path):
    write_tf1_checkpoint(tmp_path, v2_variables)
    with pytest.raises(CheckpointError, match="is a DeepFill v2 checkpoint .* pass version=v2"):
        tf1.load_official_generator(tmp_path, version="v1")
