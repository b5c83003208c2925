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


@pytest.mark.parametrize("field,value,message", [
    ("version", 1, "version must be one of v1, v2, got 1"),
    ("version", None, "version must be one of v1, v2, got None"),
    ("cnum", "32", "cnum must be an even integer >= 2, got '32'"),
    ("cnum", 32.0, "cnum must be an even integer >= 2, got 32.0"),
    ("cnum", True, "cnum must be an even integer >= 2, got True"),
    ("padding", ["same"], "padding must be one of same, reflect, symmetric, got ['same']"),
    ("image_size", 256, "image_size must be (height, width), two whole numbers that are multiples of "
                        "16, got 256"),
    ("image_size", "x", "image_size must be (height, width), two whole numbers that are multiples of "
                        "16, got 'x'"),
    ("image_size", [256.5, 256], "image_size must be (height, width), two whole numbers that are "
                                 "multiples of 16, got [256.5, 256]"),
    ("image_size", [256, "x"], "image_size must be (height, width), two whole numbers"),
    ("image_size", [256, 256, 256], "image_size must be (height, width), two whole numbers"),
    ("image_size", [250, 256], "image_size must be (height, width), multiples of 16, got (250, 256)"),
    ("local_size", {"h": 128}, "local_size must be (height, width), two whole numbers"),
    ("local_size", [512, 512], "local_size (512, 512) is larger than image_size (256, 256)"),
    ("guided", "yes", "guided must be true or false, got 'yes'"),
])
def test_every_stored_field_is_checked_by_type_and_value(tmp_path, field, value, message):
    values = ModelConfig().to_dict()
    values[field] = value
    path = tmp_path / "model_config.json"
    path.write_text(json.dumps(values))
    with pytest.raises(ConfigError) as excinfo:
        ModelConfig.load(tmp_path)
    text = str(excinfo.value)
    assert text.startswith(f"{path}: {message}") and "\n" not in text, text
    assert text.endswith("or use the folder the checkpoint came from"), text


@pytest.mark.onednn_modes
def test_v2_config_rules():
    with pytest.raises(ConfigError, match="guided .* only for version v2"):
        ModelConfig(guided=True)
    with pytest.raises(ConfigError, match="multiple of 4"):
        ModelConfig(version="v2", cnum=6)
    assert ModelConfig.from_dict(ModelConfig(version="v2", cnum=48, guided=True).to_dict()).guided
