"""Shared test helpers: the reference folder, its extracted checkpoints, and small utilities."""

import os
import pathlib
import tarfile

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = pathlib.Path(
    os.environ.get("INPAINTING_REFERENCE", REPO.parent / "shared" / "reference" / "deepfill"))


def reference_path(*parts):
    """Path of a file in the DeepFill reference folder; skips the test when the folder is absent."""
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not found: {path} (the ../shared/reference/deepfill folder is absent)")
    return path


def load_reference(*parts):
    """The arrays of one reference npz file, as a dict."""
    with np.load(reference_path(*parts)) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def official_checkpoint(tmp_path_factory):
    """Extracts a reference TF1 checkpoint once per session; returns a function version -> ckpt folder."""
    extracted = {}

    def get(version="v1"):
        if version not in extracted:
            archive = reference_path(version, "checkpoint.tar.xz")
            target = tmp_path_factory.mktemp(f"official_{version}")
            with tarfile.open(archive) as tar:
                tar.extractall(target, filter="data")
            extracted[version] = target / "ckpt"
        return extracted[version]

    return get
