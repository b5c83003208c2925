"""Tests of inpainting.checkpoints.reading: checkpoint prefixes from folders and state files."""

import numpy as np
import pytest

from conftest import write_tf1_checkpoint
from inpainting.checkpoints import reading
from inpainting.errors import CheckpointError


def test_resolve_prefix(tmp_path):
    a = write_tf1_checkpoint(tmp_path / "one", {"x": np.zeros(2, np.float32)}, state_file=None)
    assert reading.resolve_prefix(tmp_path / "one") == a
    assert reading.resolve_prefix(a) == a and reading.resolve_prefix(a + ".index") == a
    write_tf1_checkpoint(tmp_path / "two", {"x": np.zeros(2, np.float32)}, "snap-1", None)
    write_tf1_checkpoint(tmp_path / "two", {"x": np.zeros(2, np.float32)}, "snap-2", None)
    with pytest.raises(CheckpointError, match="several checkpoints .*snap-1, snap-2"):
        reading.resolve_prefix(tmp_path / "two")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no \\*.index file"):
        reading.resolve_prefix(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        reading.resolve_prefix(tmp_path / "missing")
