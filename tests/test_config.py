"""Tests of the frozen model configuration."""

import json

import pytest

from inpainting.config import ConfigError, ModelConfig


def test_json_round_trip(tmp_path):
    config = ModelConfig(cnum=16, padding="reflect", image_size=(128, 192), local_size=(64, 64))
    config.save(tmp_path)
    assert ModelConfig.load(tmp_path) == config
    assert json.loads((tmp_path / "model_config.json").read_text())["image_size"] == [128, 192]


@pytest.mark.parametrize("kwargs,message", [
    ({"version": "v3"}, "version must be one of v1"),
    ({"padding": "REFELECT"}, "padding must be one of"),
    ({"cnum": 5}, "cnum must be an even integer"),
    ({"image_size": (100, 256)}, "multiples of 16"),
    ({"local_size": (512, 512)}, "larger than image_size"),
])
def test_invalid_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**kwargs)


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a checkpoint directory"):
        ModelConfig.load(tmp_path)
    (tmp_path / "model_config.json").write_text('{"version": "v1", "widht": 3}')
    with pytest.raises(ConfigError, match=r"unknown model config keys \['widht'\]"):
        ModelConfig.load(tmp_path)
    (tmp_path / "model_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        ModelConfig.load(tmp_path)


@pytest.mark.onednn_modes
def test_v2_config_rules():
    with pytest.raises(ConfigError, match="guided .* only for version v2"):
        ModelConfig(guided=True)
    with pytest.raises(ConfigError, match="multiple of 4"):
        ModelConfig(version="v2", cnum=6)
    assert ModelConfig.from_dict(ModelConfig(version="v2", cnum=48, guided=True).to_dict()).guided
