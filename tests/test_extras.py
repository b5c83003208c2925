"""A missing optional dependency names the extra that installs it."""

import subprocess
import sys

import pytest

from inpainting import extras


def test_require_returns_the_module_or_names_the_extra():
    assert extras.require("json", "serve", "reading JSON").dumps([1]) == "[1]"
    with pytest.raises(ImportError, match=r"^the page needs the Python module no_such_module_here, which is "
                                          r"not installed: pip install 'inpainting\[serve\]'") as err:
        extras.require("no_such_module_here", "serve", "the page")
    assert err.value.name == "no_such_module_here"
    with pytest.raises(ValueError, match="extra must be one of serve, export, onnx, test, got 'web'"):
        extras.require("json", "web", "the page")


def test_the_web_server_without_its_extra_says_how_to_install_it():
    # Python treats a module set to None in sys.modules as not installed.
    code = ("import runpy, sys; sys.modules['starlette'] = None; "
            "runpy.run_module('inpainting.serve', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ImportError: python -m inpainting.serve needs the Python module starlette, which is not installed: "
        "pip install 'inpainting[serve]' (or pip install -e '.[serve]' in a checkout)")


def test_running_a_tflite_model_without_litert_names_the_export_extra():
    code = ("import sys; sys.modules['ai_edge_litert'] = None\n"
            "from inpainting.inference import runners\n"
            "try:\n    runners.TFLiteRunner('model_fp32.tflite')\n"
            "except ImportError as err:\n    print(err)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == (
        "running a TFLite model needs the Python module ai_edge_litert, which is not installed: "
        "pip install 'inpainting[export]' (or pip install -e '.[export]' in a checkout)")
