"""Tests of the original-checkpoint import (inpainting.checkpoints.tf1)."""

import numpy as np
import pytest

from conftest import write_tf1_checkpoint
from inpainting.checkpoints import tf1
from inpainting.errors import CheckpointError

# Also run with the other oneDNN mode by `make test` (see pytest.ini).
pytestmark = pytest.mark.onednn_modes


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


def test_version_mismatch_is_refused(v2_variables, tmp_path):
    write_tf1_checkpoint(tmp_path, v2_variables)
    with pytest.raises(CheckpointError, match="is a DeepFill v2 checkpoint .* pass version=v2"):
        tf1.load_official_generator(tmp_path, version="v1")
