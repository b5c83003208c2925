# `make demo`: create .venv if missing, install, train the demo model on the bundled sample photos
# and inpaint a held-out one. `make test`: install with the serve, export, onnx and test extras and run the whole suite.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: install demo test

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

# The test extra brings the serve, export and onnx extras (the web page, TF Serving's protos, LiteRT, tf2onnx and ONNX Runtime).
$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) train.py --flagfile=configs/demo.cfg
	$(PY) -m inpainting.demo --model_dir=runs/demo

# The web page's test drives Debian's chromium (Playwright's own browser downloads are not used):
# installed with apt-get only where it is missing and make runs as root; otherwise that test is skipped.
# TensorFlow computes with oneDNN on CPUs with AVX-512 and without it on the others (and with
# TF_ENABLE_ONEDNN_OPTS=0), with different kernels: the tests marked onednn_modes (numbers the kernels
# compute: the networks, losses, training updates and resumes) run a second time in the other mode.
test: $(VENV)/.installed-test
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; } || \
	    echo "note: chromium is missing and cannot be installed here (apt-get needs root): the web page's browser test is skipped"
	$(PY) -m pytest tests
	TF_ENABLE_ONEDNN_OPTS=$$($(PY) tests/onednn.py --other) $(PY) -m pytest -m onednn_modes tests
