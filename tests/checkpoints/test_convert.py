"""Tests of the conversion command (python -m inpainting.checkpoints.convert)."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_user_error, run_module, write_tf1_checkpoint
from inpainting.checkpoints import store, tf1

# Also run with the other oneDNN mode by `make test` (see pytest.ini).
pytestmark = pytest.mark.onednn_modes


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
