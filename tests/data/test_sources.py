"""Tests of inpainting.data.sources: the dataset specs (reading is tested through the pipeline)."""

import pytest

from inpainting.data import sources
from inpainting.data.sources import DataSource
from inpainting.errors import DataError


def _message(excinfo, *parts):
    text = str(excinfo.value)
    assert "\n" not in text
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"


@pytest.mark.parametrize("spec, expected", [
    ("flist:/data/train.flist", DataSource("flist", path="/data/train.flist")),
    ("folder:relative/dir", DataSource("folder", path="relative/dir")),
    ("tfds:dtd", DataSource("tfds", name="dtd")),
    ("tfds:celeb_a_hq/256:train[:90%]",
     DataSource("tfds", name="celeb_a_hq/256", split="train[:90%]")),
    ("samples", DataSource("samples")),
])
def test_parse_dataset_forms(spec, expected):
    assert sources.parse_dataset(spec) == expected
    assert str(expected) == spec
    assert sources.parse_dataset(expected) is expected


@pytest.mark.parametrize("spec, shown", [
    ("", "unknown form"), ("places2", "unknown form"), ("folder:", "unknown form"),
    ("samples:x", "unknown form"), ("http://example.com/x", "unknown form"),
    ("tfds:", "tfds:NAME[/CONFIG][:SPLIT]"), ("tfds:Bad Name", "lower-case TFDS name"),
])
def test_parse_dataset_rejects_other_forms(spec, shown):
    with pytest.raises(DataError) as excinfo:
        sources.parse_dataset(spec)
    _message(excinfo, repr(spec), shown)
    if shown == "unknown form":
        _message(excinfo, sources.SPEC_FORMS)
