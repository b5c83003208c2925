"""Tests of inpainting.files: whole files, replaced only when asked."""

import pytest

from inpainting import files


def test_files_are_written_whole_and_replaced_only_when_asked(tmp_path):
    path = tmp_path / "new" / "summary.json"
    files.write_json(path, {"b": 1, "a": [1.5]})
    assert path.read_text() == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}\n'
    with pytest.raises(FileExistsError, match="summary.json: file exists"):
        files.write_text(path, "other", overwrite=False)
    assert path.read_text().startswith('{\n  "a"')
    files.write_bytes(path, b"\x00\x01", overwrite=True)
    assert path.read_bytes() == b"\x00\x01"
    # A write that fails leaves neither a partial file nor a temporary one behind.
    with pytest.raises(TypeError):
        files.write_bytes(path, "not bytes")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]
