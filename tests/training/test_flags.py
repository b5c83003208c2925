"""The training flags, the shipped configs and train.py's command line."""

import subprocess
import sys

import pytest
from absl import flags as absl_flags

from conftest import REPO, assert_user_error
from inpainting.config import TrainConfig
from inpainting.errors import ConfigError
from inpainting.training import flags

CONFIGS = sorted((REPO / "configs").glob("*.cfg"))


def parse(*argv):
    values = absl_flags.FlagValues()
    flags.define_flags(values)
    values(["train.py", *argv])
    return flags.config_from_flags(values)


def test_every_field_is_a_flag_with_the_same_default():
    assert parse() == TrainConfig()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_configs_parse_and_say_how_to_run_them(path):
    config = parse(f"--flagfile={path}")
    header = path.read_text().split("\n--", 1)[0]
    assert f"python train.py --flagfile=configs/{path.name}" in header
    for topic in ("Data:", "Hardware:", "Time:"):
        assert topic in header, topic
    assert config.model_dir == f"runs/{path.stem}"


def test_release_configs_hold_the_original_hyper_parameters():
    expected = dict(image_size=(256, 256), box_size=(128, 128), max_delta=(32, 32), margins=(0, 0),
                    batch_size=16, critic_steps=5, learning_rate=1e-4, beta1=0.5, beta2=0.9,
                    adam_epsilon=1e-8, coarse_weight=1.2, l1_weight=1.2, ae_weight=1.2,
                    gan_weight=0.001, global_gan_weight=1.0, gradient_penalty=10.0,
                    discount_gamma=0.9, cnum=32, padding="same")
    preprocess = {"places2": "crop", "imagenet": "crop", "dtd": "crop", "celeba_hq": "resize"}
    for name, mode in preprocess.items():
        config = parse(f"--flagfile={REPO / 'configs' / (name + '.cfg')}")
        assert {key: getattr(config, key) for key in expected} == expected, name
        assert config.preprocess == mode and config.dataset.startswith("tfds:"), name


def test_v2_configs_hold_the_original_v2_hyper_parameters():
    expected = dict(version="v2", cnum=48, image_size=(256, 256), box_size=(128, 128),
                    max_delta=(32, 32), free_form_masks=True, batch_size=16, critic_steps=1,
                    learning_rate=1e-4, beta1=0.5, beta2=0.999, coarse_weight=1.0, ae_weight=1.0,
                    gan_weight=1.0, padding="same")
    for name, guided in (("places2_v2", False), ("celeba_hq_v2", False), ("places2_v2_guided", True)):
        config = parse(f"--flagfile={REPO / 'configs' / (name + '.cfg')}")
        assert {key: getattr(config, key) for key in expected} == expected, name
        assert config.guided == guided, name
    # Without a config, --version=v2 alone gives the same per-version values.
    bare = parse("--version=v2")
    assert {key: getattr(bare, key) for key in ("cnum", "critic_steps", "beta2", "free_form_masks")} == {
        "cnum": 48, "critic_steps": 1, "beta2": 0.999, "free_form_masks": True}


@pytest.mark.parametrize("overrides, message", [
    (dict(batch_size=0), "batch_size: must be a positive integer, got 0"),
    (dict(image_size="264"), "image_size must be (height, width), multiples of 16, got (264, 264)"),
    (dict(box_size="96x300"), "box_size: 96x300 plus margins 0x0 on each side does not fit"),
    (dict(image_size="two"), "image_size must be a size like 256 or 256x384"),
    (dict(beta2=1.0), "beta2: must be in [0, 1), got 1.0"),
    (dict(discount_gamma=0.0), "discount_gamma: must be in (0, 1], got 0.0"),
    (dict(max_delta=200), "max_delta: (200, 200) is larger than box_size (128, 128)"),
    (dict(precision="float8"), "precision: must be one of float32, mixed_bfloat16, mixed_float16, got 'float8'"),
    (dict(stroke_width="6,20"), "stroke_width: sets the width of free-form brush strokes, which this "
                                "run does not draw; add free_form_masks"),
    (dict(stroke_width="20,6", free_form_masks=True), "stroke_width: must be MIN,MAX with 1 <= MIN < MAX"),
    (dict(stroke_width="0,6", free_form_masks=True), "stroke_width: must be MIN,MAX with 1 <= MIN < MAX"),
    (dict(stroke_width="6", free_form_masks=True), "stroke_width must be two whole numbers MIN,MAX"),
    (dict(ema_decay=1.0), "ema_decay: must be in [0, 1) (0: no average"),
    (dict(ema_decay=-0.5), "ema_decay: must be in [0, 1) (0: no average"),
    (dict(box_size="256", image_size="240"), "box_size: 256x256 plus margins 0x0 on each side does not "
                                             "fit in image_size 240x240"),
])
def test_invalid_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**overrides)
    assert str(err.value).startswith(message)
    assert "--" not in str(err.value)


def _train_cli(*args):
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], capture_output=True,
                          text=True, cwd=REPO, timeout=600)


def test_cli_errors_are_one_line(tmp_path):
    result = _train_cli(f"--model_dir={tmp_path}", "--box_size=96x300")
    assert_user_error(result, "--box_size: 96x300 plus --margins 0x0")
    result = _train_cli(f"--model_dir={tmp_path}", "--cnum=4", "--image_size=64", "--box_size=32",
                        "--max_delta=8", "--dataset=folder:/no/such/folder")
    assert_user_error(result, "/no/such/folder")
    assert not (tmp_path / "checkpoint").exists()


@pytest.mark.parametrize("argv, overrides, library, command_line", [
    (["--max_steps=0"], dict(max_steps=0), "max_steps: must be a positive integer, got 0",
     "--max_steps: must be a positive integer, got 0"),
    # Checked by ModelConfig, whose local_size is the box_size field.
    (["--box_size=24", "--max_delta=8"], dict(box_size=24, max_delta=8),
     "box_size must be (height, width), multiples of 16, got (24, 24)",
     "--box_size must be (height, width), multiples of 16, got (24, 24)"),
    # A message that mentions another field besides the one it concerns.
    (["--version=v2", "--gradient_penalty=5"], dict(version="v2", gradient_penalty=5.0),
     "gradient_penalty: is a term of the v1 loss; DeepFill v2 has no such term (leave it out with "
     "version=v2)", "--gradient_penalty: is a term of the v1 loss; DeepFill v2 has no such term "
     "(leave it out with --version=v2)"),
], ids=["max_steps", "box_size", "gradient_penalty"])
def test_the_library_names_the_field_and_train_py_the_flag(tmp_path, argv, overrides, library,
                                                           command_line):
    with pytest.raises(ConfigError) as err:
        TrainConfig(model_dir=str(tmp_path), **overrides)
    assert str(err.value) == library
    result = _train_cli(f"--model_dir={tmp_path}", *argv)
    assert_user_error(result, command_line)
    assert f"error: {command_line}\n" in result.stderr


def test_help_documents_the_flags():
    result = _train_cli("--helpfull")  # absl exits with status 1 after printing the help
    assert "Traceback" not in result.stderr, result.stderr
    for flag in ("--dataset", "--mask_dir", "--critic_steps", "--max_minutes", "--strategy",
                 "--precision", "--init_checkpoint", "--validation_dataset"):
        assert flag in result.stdout, flag
    help_text = " ".join(_train_cli("--help").stdout.split())
    for status in ("0 finished, or stopped by --max_minutes", "1 an error",
                   "143 (128 + SIGTERM) stopped by SIGTERM after saving its checkpoint",
                   "130 (128 + SIGINT) stopped by Ctrl-C after saving"):
        assert status in help_text, status
