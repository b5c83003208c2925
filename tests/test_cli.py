"""The library's errors name parameters; the command-line tools name them as flags."""

import pickle

import pytest

from inpainting import cli
from inpainting.errors import (CheckpointError, ConfigError, ExportError, InpaintingError,
                               TrainingError, mention)


def test_an_error_names_the_parameter_for_python_and_the_flag_for_the_command_line():
    err = ExportError("{parameter} must be a positive integer, got 0", parameter="version")
    assert str(err) == "version must be a positive integer, got 0"
    assert err.describe(flags=True) == "--version must be a positive integer, got 0"
    assert err.describe(flags=True, flag_names={"version": "model_version"}) == (
        "--model_version must be a positive integer, got 0")
    assert cli.message(err) == "--version must be a positive integer, got 0"


def test_an_error_without_a_parameter_keeps_its_message_and_its_braces():
    err = CheckpointError("ckpt: {not a placeholder} is damaged")
    assert str(err) == err.describe(flags=True) == "ckpt: {not a placeholder} is damaged"
    assert isinstance(err, ValueError)


def test_an_error_names_the_other_parameters_it_mentions_the_same_way():
    err = ConfigError(f"{{parameter}} 96 plus {mention('margins')} 0 does not fit in {mention('size')} 64",
                      parameter="box_size")
    assert str(err) == "box_size 96 plus margins 0 does not fit in size 64"
    assert err.describe(flags=True, flag_names={"size": "image_size"}) == (
        "--box_size 96 plus --margins 0 does not fit in --image_size 64")
    lone = TrainingError(f"lower {mention('learning_rate')}, or {{not a placeholder}}")
    assert str(lone) == "lower learning_rate, or {not a placeholder}"
    assert cli.message(lone) == "lower --learning_rate, or {not a placeholder}"


def test_a_pickled_error_keeps_its_message():
    err = pickle.loads(pickle.dumps(InpaintingError("{parameter} is wrong", parameter="size")))
    assert str(err) == "size is wrong"


@pytest.mark.parametrize("error, printed", [
    (ExportError("{parameter} exists", parameter="export_dir"), "error: --export_dir exists"),
    (FileNotFoundError("photo.png: no such file"), "error: photo.png: no such file"),
])
def test_user_errors_print_one_line_and_exit_with_status_1(capsys, error, printed):
    with pytest.raises(SystemExit) as stop, cli.user_errors():
        raise error
    assert stop.value.code == 1
    assert capsys.readouterr().err == printed + "\n"


def test_user_errors_let_programming_errors_through():
    with pytest.raises(TypeError), cli.user_errors():
        raise TypeError("a bug")
