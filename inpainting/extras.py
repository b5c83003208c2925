"""The optional parts of the package, and the pip extra that installs what each needs.

A plain `pip install inpainting` trains, converts checkpoints and inpaints. The web page
(`python -m inpainting.serve`) needs `inpainting[serve]`; TF Serving's warm-up requests and running
TFLite models need `inpainting[export]`; ONNX models (`export.py --onnx`, running .onnx files) need
`inpainting[onnx]`; the test suite needs `inpainting[test]`, which has both.
"""

import importlib

EXTRAS = ("serve", "export", "onnx", "test")


def require(module, extra, purpose):
    """Imports `module`, or says which extra installs it.

    Args:
        module: the module to import, e.g. "starlette".
        extra: the extra of this package that depends on it, one of `EXTRAS`.
        purpose: what needs it, e.g. "python -m inpainting.serve".

    Returns:
        The module.

    Raises:
        ImportError: it is not installed; the message says how to install it.
    """
    if extra not in EXTRAS:
        raise ValueError(f"extra must be one of {', '.join(EXTRAS)}, got {extra!r}")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = err.name or module
        raise ImportError(f"{purpose} needs the Python module {missing}, which is not installed: "
                          f"pip install 'inpainting[{extra}]' (or pip install -e '.[{extra}]' in a "
                          "checkout)", name=missing) from None
