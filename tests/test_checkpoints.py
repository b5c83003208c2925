"""Tests of this project's checkpoint directories."""

import json

import numpy as np
import pytest
import tensorflow as tf

from inpainting import checkpoints
from inpainting.config import ConfigError, ModelConfig
from inpainting.generator import Generator
from inpainting.tf1 import CheckpointError


def _tiny(seed):
    tf.keras.utils.set_random_seed(seed)
    generator = Generator(ModelConfig(cnum=4))
    generator.build()
    return generator


def test_round_trip_restores_every_weight(tmp_path):
    generator = _tiny(1)
    prefix = checkpoints.save(tmp_path / "m", generator, step=12)
    assert prefix.endswith("ckpt-12")
    loaded = checkpoints.load_generator(tmp_path / "m")
    assert loaded.config == generator.config
    for a, b in zip(loaded.weights, generator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    from_prefix = checkpoints.load_generator(prefix)
    np.testing.assert_array_equal(from_prefix.weights[0].numpy(), generator.weights[0].numpy())


def test_save_never_replaces_silently(tmp_path):
    checkpoints.save(tmp_path, _tiny(1))
    first = checkpoints.load_generator(tmp_path).weights[0].numpy()
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        checkpoints.save(tmp_path, _tiny(2))
    np.testing.assert_array_equal(checkpoints.load_generator(tmp_path).weights[0].numpy(), first)
    checkpoints.save(tmp_path, _tiny(2), overwrite=True)
    assert np.abs(checkpoints.load_generator(tmp_path).weights[0].numpy() - first).max() > 0


def test_load_errors(tmp_path):
    ModelConfig(cnum=4).save(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        checkpoints.load_generator(tmp_path / "empty")
    checkpoints.save(tmp_path / "m", _tiny(1))
    config = json.loads((tmp_path / "m" / "model_config.json").read_text())
    config["cnum"] = 8
    (tmp_path / "m" / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="cannot restore the generator"):
        checkpoints.load_generator(tmp_path / "m")
    (tmp_path / "m" / "model_config.json").write_text('{"version": "v9"}')
    with pytest.raises(ConfigError, match="version must be one of"):
        checkpoints.load_generator(tmp_path / "m")
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        checkpoints.load_generator(tmp_path / "nothing")


def test_loads_original_checkpoints_directly(official_checkpoint):
    generator = checkpoints.load_generator(official_checkpoint("v1"))
    assert generator.config.cnum == 32 and generator.config.image_size == (256, 256)
