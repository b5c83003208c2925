"""Packaging for `inpainting`: DeepFill v1/v2 generative image inpainting in TensorFlow 2 / Keras 3."""

import setuptools

setuptools.setup(
    name="inpainting",
    version="0.1.0",
    description="DeepFill v1/v2 generative image inpainting in TensorFlow 2 / Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["inpainting", "inpainting.*"]),
    # The page of `python -m inpainting.serve`.
    package_data={"inpainting": ["web/*"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow==2.21.*",
        "tensorflow-datasets>=4.9,<4.10",
        # tensorflow-datasets 4.9 imports it but does not declare it on Python >= 3.10.
        "importlib_resources",
        "numpy",
        # Gaussian filtering for the evaluation's SSIM.
        "scipy",
        "opencv-python-headless",
        "absl-py",
        # tf.summary needs it to write events; it also gives the `tensorboard` command.
        "tensorboard",
        # The `samples` dataset is the photos shipped inside the scikit-image wheel.
        "scikit-image",
    ],
    extras_require={
        # python -m inpainting.serve: the web page and its JSON API.
        "serve": ["starlette", "uvicorn", "python-multipart"],
        # export.py: TF Serving's PredictionLog protos for the warm-up file; running TFLite models
        # (export checks, evaluation and serving of .tflite files).
        "export": ["tensorflow-serving-api==2.21.*", "ai-edge-litert"],
        # export.py --onnx and running .onnx models. tf2onnx 1.17 converts TensorFlow 2.21 graphs and
        # works with its protobuf; onnxruntime 1.32 runs opset 17 on the CPU execution provider.
        "onnx": ["tf2onnx>=1.17,<1.18", "onnx>=1.17", "onnxruntime>=1.20"],
        # httpx: Starlette's TestClient; playwright: drives Debian's chromium in the page's test.
        "test": ["pytest", "httpx", "playwright", "inpainting[serve,export,onnx]"],
    },
)
