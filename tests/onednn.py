"""Whether TensorFlow computes with oneDNN in this process: `python tests/onednn.py [--other]`.

Prints 1 (on) or 0 (off), the value of TF_ENABLE_ONEDNN_OPTS that gives this mode, or with
`--other` the value that gives the other one. TensorFlow turns oneDNN on by default only on CPUs
with AVX-512; TF_ENABLE_ONEDNN_OPTS overrides that.
"""

import os
import sys


def onednn_enabled():
    """Whether oneDNN's kernels are on in this process (imports TensorFlow)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


if __name__ == "__main__":
    enabled = onednn_enabled()
    print(int(enabled != ("--other" in sys.argv[1:])))
