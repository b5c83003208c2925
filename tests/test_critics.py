"""Tests of the v1 WGAN critics."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import load_reference
from inpainting.checkpoints import tf1
from inpainting.config import ModelConfig
from inpainting.model.critics import Critics

# Also run with the other oneDNN mode by `make test` (see pytest.ini).
pytestmark = pytest.mark.onednn_modes


def test_matches_original(official_checkpoint):
    ref = load_reference("v1", "discriminator.npz")
    critics = tf1.load_official_critics(official_checkpoint("v1"))
    out = critics([ref["local_input"][..., ::-1], ref["global_input"][..., ::-1]])
    for key, expected in (("local", ref["dout_local"]), ("global", ref["dout_global"])):
        got = out[key].numpy()
        assert got.shape == expected.shape == (2, 1)
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()  # measured 1.9e-5


def test_parameter_count_matches_original():
    critics = Critics(ModelConfig())
    critics.build()
    assert critics.local.count_params() + critics.global_.count_params() == 7_072_770


def test_small_config_shapes_and_error():
    critics = Critics(ModelConfig(image_size=(64, 48), local_size=(32, 16)))
    out = critics([tf.zeros([3, 32, 16, 3]), tf.zeros([3, 64, 48, 3])])
    assert out["local"].shape == out["global"].shape == (3, 1)
    with pytest.raises(ValueError, match=r"expects inputs of size \(32, 16\)"):
        critics([tf.zeros([3, 32, 32, 3]), tf.zeros([3, 64, 48, 3])])


def test_is_linear_in_the_head():
    # With the head's bias at zero and an all-zero input, every layer outputs its bias path only:
    # two identical inputs give identical scores, and scores change with the input.
    critics = Critics(ModelConfig(image_size=(32, 32), local_size=(16, 16)))
    a = critics([tf.zeros([1, 16, 16, 3]), tf.zeros([1, 32, 32, 3])])
    b = critics([tf.ones([1, 16, 16, 3]), tf.ones([1, 32, 32, 3])])
    assert np.abs(a["local"] - b["local"]).max() > 0 and np.abs(a["global"] - b["global"]).max() > 0
