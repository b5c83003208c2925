"""Tests of the evaluation tool: the library function on fake methods, OpenCV baselines, the CLI."""

import csv
import io
import json
import math

import cv2
import numpy as np
import pytest

from conftest import assert_user_error, box_mask, run_module
from inpainting import evaluate, imageio, metrics
from inpainting.evaluate import COLUMNS, Sample
from inpainting.inference import runners


def _photo(rng, height=32, width=40):
    """A smooth colour image with some texture, so inpainting methods give different results."""
    rows, cols = np.mgrid[0:height, 0:width]
    base = np.stack([120 + 80 * np.sin(cols / 6), 90 + 3 * rows, 200 - 2 * cols], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _strict_json(text):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_center_mask_box():
    mask = evaluate.center_mask((256, 256))
    assert mask.dtype == np.float32 and mask.shape == (256, 256)
    assert mask[64:192, 64:192].all() and mask.sum() == 128 * 128  # rows and columns 64..191
    # Odd sizes: 33 // 2 = 16 rows from row (33 - 16) // 2 = 8; 41 // 2 = 20 columns from 10.
    rows, cols = np.nonzero(evaluate.center_mask((33, 41)))
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (8, 23, 10, 29)


def test_evaluate_with_fake_methods():
    rng = np.random.default_rng(3)
    target = _photo(rng)
    hole = box_mask(32, 40, 4, 6, 10, 16)  # 160 of 1280 pixels
    calls = []

    def gray(rgb, mask):
        calls.append("gray")
        return np.full(rgb.shape, 127.6, np.float32)  # rounds to 128

    def echo(rgb, mask):  # returns what it was given: the hole must arrive blanked to 0
        assert mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
        return rgb.astype(np.float32)

    def wild(rgb, mask):  # out of range: clipped to 0..255
        return np.where(np.arange(40) % 2 == 0, -20.0, 300.0)[None, :, None] * np.ones((32, 1, 3))

    samples = [Sample("with_hole.png", target, hole),
               Sample("no_hole.png", target, np.zeros((32, 40), np.float32))]
    progress = io.StringIO()
    rows, summary = evaluate.evaluate({"gray": gray, "echo": echo, "wild": wild}, iter(samples),
                                      total=2, progress=progress)
    assert [(row["image"], row["method"]) for row in rows] == [
        (image, method) for image in ("with_hole.png", "no_hole.png")
        for method in ("gray", "echo", "wild")]
    assert all(tuple(row) == COLUMNS for row in rows)
    assert calls == ["gray"]  # methods are not run on an image without a hole
    in_hole = target[hole > 0.5].astype(np.float64)
    gray_row, echo_row, wild_row = rows[:3]
    assert gray_row["hole_fraction"] == 160 / 1280
    assert gray_row["l1_hole"] == pytest.approx(100 * np.abs(128 - in_hole).mean() / 255, rel=1e-12)
    assert echo_row["l1_hole"] == pytest.approx(100 * in_hole.mean() / 255, rel=1e-12)
    clipped = np.where(np.arange(40) % 2 == 0, 0, 255)[None, :, None] * np.ones((32, 1, 3))
    result = np.where(hole[:, :, None] > 0.5, clipped, target)
    assert wild_row["l2_hole"] == pytest.approx(metrics.l2_error(result, target, hole), rel=1e-12)
    assert wild_row["tv_image"] == pytest.approx(metrics.total_variation(result), rel=1e-12)
    for row in rows[:3]:  # pixels outside the hole are the target's: no error there
        assert row["l1_image"] == pytest.approx(row["l1_hole"] * 160 / 1280, rel=1e-12)
        assert row["l2_image"] == pytest.approx(row["l2_hole"] * 160 / 1280, rel=1e-12)
        assert row["psnr_image"] == pytest.approx(row["psnr_hole"] + 10 * math.log10(8), rel=1e-12)
    for row in rows[3:]:  # no hole: the image is its own result
        assert row["hole_fraction"] == 0 and row["l1_image"] == 0 and row["psnr_image"] == math.inf
        assert row["ssim_image"] == pytest.approx(1, abs=1e-12)
        assert all(math.isnan(row[name]) for name in metrics.METRIC_NAMES if name.endswith("_hole"))
    assert summary["gray"]["images"] == 2 and summary["gray"]["images_with_hole"] == 1
    assert summary["gray"]["mean"]["l1_hole"] == gray_row["l1_hole"]  # no-hole image left out
    assert summary["gray"]["mean"]["l1_image"] == pytest.approx(gray_row["l1_image"] / 2, rel=1e-12)
    assert summary["gray"]["mean"]["hole_fraction"] == 160 / 1280 / 2
    assert summary["gray"]["mean"]["psnr_image"] == math.inf
    lines = progress.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("[1/2] with_hole.png  hole 12.5%")
    assert f"gray {gray_row['l1_hole']:.2f}%" in lines[0] and "no hole" in lines[1]


def test_baselines_keep_colour_channels():
    # A uniform colour far from gray: OpenCV fills it back, which fails if RGB and BGR are mixed up.
    rgb = np.empty((32, 40, 3), np.uint8)
    rgb[:] = (200, 30, 90)
    hole = box_mask(32, 40, 8, 10, 12, 16)
    for name in evaluate.BASELINES:
        filled = evaluate.baseline(name)(rgb, hole)
        assert filled.dtype == np.float32 and filled.shape == (32, 40, 3)
        assert np.abs(filled[hole > 0.5] - (200, 30, 90)).max() <= 5, name  # swapped: 110 off
    with pytest.raises(ValueError, match="telea, ns"):
        evaluate.baseline("fast")


def test_model_and_baselines_differ(tiny_checkpoint):
    rng = np.random.default_rng(4)
    target = _photo(rng)
    hole = box_mask(32, 40, 6, 8, 14, 18)
    methods = {"model": runners.load(tiny_checkpoint), "telea": evaluate.baseline("telea"),
               "ns": evaluate.baseline("ns", radius=5)}
    rows, summary = evaluate.evaluate(methods, [Sample("x", target, hole)])
    l1 = {row["method"]: row["l1_hole"] for row in rows}
    assert len(set(l1.values())) == 3, l1
    # The baselines are cv2.inpaint on the BGR image with the 8-bit mask.
    bgr = np.ascontiguousarray(target[:, :, ::-1])
    expected = cv2.inpaint(bgr, (hole * 255).astype(np.uint8), 5, cv2.INPAINT_NS)[:, :, ::-1]
    assert rows[2]["l1_hole"] == metrics.l1_error(expected, target, hole)
    assert summary["model"]["mean"]["l1_hole"] == l1["model"]


def test_summary_json_is_strict_json_and_table(tmp_path):
    summary = {"m": {"images": 2, "images_with_hole": 0,
                     "mean": {column: 1.5 for column in COLUMNS[2:]}}}
    summary["m"]["mean"].update(l1_hole=math.nan, psnr_image=math.inf)
    path = tmp_path / "summary.json"
    evaluate.write_summary(str(path), summary, {"checkpoint": "c"})
    data = _strict_json(path.read_text())
    assert data["settings"] == {"checkpoint": "c"}
    assert data["methods"]["m"]["mean"]["l1_hole"] is None
    assert data["methods"]["m"]["mean"]["psnr_image"] is None
    assert data["methods"]["m"]["mean"]["l2_hole"] == 1.5 and data["methods"]["m"]["images"] == 2
    table = evaluate.format_table(summary).splitlines()
    assert table[0].split() == ["m"] and table[1].split() == ["images", "2"]
    assert table[3].split() == ["l1_hole", "-"] and "inf" in table[8]


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def _read_csv(path):
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, [dict(zip(header, row)) for row in reader]


def _number(cell):
    return math.nan if cell == "" else float(cell)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Images 32x40 (three with masks, one without) and their masks."""
    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("evaluate")
    images = {name: _photo(rng) for name in ("a.png", "b.png", "sub/c.png", "z.png")}
    for name, rgb in images.items():
        _write(root / "images" / name, rgb[:, :, ::-1])
    irregular = np.zeros((32, 40), np.uint8)
    irregular[:12, 25:] = 255  # touches the top and right borders
    irregular[20:30, 5:9] = 255
    masks = {"a.png": (box_mask(32, 40, 10, 12, 12, 14) * 255).astype(np.uint8),
             "b.png": np.zeros((32, 40), np.uint8),  # no hole
             "sub/c.png": irregular}  # z.png has none: --limit=3 must stop before it
    for name, mask in masks.items():
        _write(root / "masks" / name, mask)
    return root, images, {name: mask / 255.0 for name, mask in masks.items()}


@pytest.mark.slow
def test_cli_masks_folder_with_baselines(tmp_path, tiny_checkpoint, folders):
    root, images, masks = folders
    out = tmp_path / "out"
    result = run_module("inpainting.evaluate", f"--checkpoint={tiny_checkpoint}",
                        f"--images={root / 'images'}", f"--masks={root / 'masks'}",
                        f"--output_dir={out}", "--baseline=telea,ns", "--limit=3")
    assert result.returncode == 0, result.stderr
    header, rows = _read_csv(out / "per_image.csv")
    assert tuple(header) == COLUMNS
    names = ["a.png", "b.png", "sub/c.png"]
    assert [(row["image"], row["method"]) for row in rows] == [
        (name, method) for name in names for method in ("model", "telea", "ns")]
    values = [{column: _number(row[column]) for column in COLUMNS[2:]} for row in rows]
    # Same numbers as the library on the same inputs; baselines exactly, the model up to the
    # rounding of its float output (the two processes may schedule TensorFlow differently).
    methods = {"model": runners.load(tiny_checkpoint), "telea": evaluate.baseline("telea", 3),
               "ns": evaluate.baseline("ns", 3)}
    samples = [Sample(name, images[name], masks[name]) for name in names]
    expected, _ = evaluate.evaluate(methods, samples)
    for got, want in zip(values, expected):
        tolerance = 0.01 if want["method"] == "model" else 0
        for column in COLUMNS[2:]:
            assert got[column] == pytest.approx(want[column], abs=tolerance, nan_ok=True), column
    for got, row in zip(values, rows):
        fraction = got["hole_fraction"]
        assert fraction == masks[row["image"]].mean()
        if fraction == 0:  # b.png: the input is the result
            assert got["l1_image"] == 0 and got["psnr_image"] == math.inf and row["l1_hole"] == ""
            continue
        # Outside the hole every method returns the input: image errors are hole errors diluted.
        assert got["l1_image"] == pytest.approx(got["l1_hole"] * fraction, rel=1e-9)
        assert got["l2_image"] == pytest.approx(got["l2_hole"] * fraction, rel=1e-9)
        assert got["psnr_image"] == pytest.approx(got["psnr_hole"] - 10 * math.log10(fraction),
                                                  rel=1e-9)
    for name in ("a.png", "sub/c.png"):
        l1 = [got["l1_hole"] for got, row in zip(values, rows) if row["image"] == name]
        assert len(set(l1)) == 3, (name, l1)

    summary = _strict_json((out / "summary.json").read_text())
    assert summary["settings"] == {
        "checkpoint": str(tiny_checkpoint), "runner": "checkpoint", "images": str(root / "images"),
        "mask_mode": "folder", "mask_path": str(root / "masks"), "baseline_radius": 3, "limit": 3}
    assert set(summary["methods"]) == {"model", "telea", "ns"}
    for method, entry in summary["methods"].items():
        mine = [got for got, row in zip(values, rows) if row["method"] == method]
        assert entry["images"] == 3 and entry["images_with_hole"] == 2
        for column in COLUMNS[2:]:
            finite = [got[column] for got in mine if not math.isnan(got[column])]
            if column == "psnr_image":  # b.png is reproduced exactly: the mean is inf -> null
                assert entry["mean"][column] is None
            else:
                assert entry["mean"][column] == pytest.approx(np.mean(finite), rel=1e-12), column
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [line.split()[0] for line in progress] == ["[1/3]", "[2/3]", "[3/3]"]
    table = result.stdout.splitlines()
    assert table[0].split() == ["model", "telea", "ns"]
    assert table[1].split() == ["images", "3", "3", "3"]


@pytest.mark.slow
def test_cli_center_mask_and_overwrite(tmp_path, tiny_checkpoint, folders):
    root, images, _ = folders
    single = _write(tmp_path / "one" / "a.png", images["a.png"][:, :, ::-1])
    out = tmp_path / "out"
    args = [f"--checkpoint={tiny_checkpoint}", f"--images={single.parent}", "--mask=center",
            f"--output_dir={out}", "--baseline=ns", "--baseline_radius=5"]
    result = run_module("inpainting.evaluate", *args)
    assert result.returncode == 0, result.stderr
    _, rows = _read_csv(out / "per_image.csv")
    assert [row["method"] for row in rows] == ["model", "ns"]
    # The ns numbers pin down the box and the radius: rows 8..23, columns 10..29 of 32x40.
    box = box_mask(32, 40, 8, 10, 16, 20)
    expected, _ = evaluate.evaluate({"ns": evaluate.baseline("ns", 5)},
                                    [Sample("a.png", images["a.png"], box)])
    assert {column: _number(rows[1][column]) for column in COLUMNS[2:]} == \
        {column: expected[0][column] for column in COLUMNS[2:]}
    assert float(rows[0]["hole_fraction"]) == 0.25
    settings = _strict_json((out / "summary.json").read_text())["settings"]
    assert settings["mask_mode"] == "center" and settings["mask_path"] is None
    assert settings["baseline_radius"] == 5 and settings["limit"] is None

    before = {name: (out / name).read_bytes() for name in ("per_image.csv", "summary.json")}
    again = run_module("inpainting.evaluate", *args)
    assert_user_error(again, "per_image.csv: exists", "--overwrite")
    assert before == {name: (out / name).read_bytes() for name in before}


def test_cli_mask_file_of_the_wrong_size(tmp_path, folders):
    root, _, _ = folders
    mask = _write(tmp_path / "mask.png", np.full((20, 24), 255, np.uint8))
    result = run_module("inpainting.evaluate", "--checkpoint=unused", f"--images={root / 'images'}",
                        f"--mask={mask}", f"--output_dir={tmp_path / 'out'}")
    assert_user_error(result, f"{mask}: mask is 24x20 but", "a.png is 40x32", "--masks=DIR")
    assert not (tmp_path / "out").exists()


def test_cli_input_errors(tmp_path, folders):
    root, _, _ = folders
    common = ["--checkpoint=unused", "--mask=center", f"--output_dir={tmp_path / 'out'}"]
    missing = run_module("inpainting.evaluate", f"--images={tmp_path / 'nothing'}", *common)
    assert_user_error(missing, f"{tmp_path / 'nothing'}: no such directory")
    _write(tmp_path / "small" / "tiny.png", np.zeros((8, 30, 3), np.uint8))
    small = run_module("inpainting.evaluate", f"--images={tmp_path / 'small'}", *common)
    assert_user_error(small, "tiny.png: 30x8 is too small to evaluate", "11x11")
    unknown = run_module("inpainting.evaluate", f"--images={root / 'images'}", *common,
                         "--baseline=telea,fast")
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert "--baseline: unknown method fast; choose from telea, ns" in unknown.stderr


def test_cli_missing_masks_folder_is_named(tmp_path, folders):
    root, _, _ = folders
    common = ["--checkpoint=unused", f"--images={root / 'images'}", f"--output_dir={tmp_path / 'out'}"]
    missing = run_module("inpainting.evaluate", *common, f"--masks={tmp_path / 'nothing'}")
    assert_user_error(missing, f"--masks={tmp_path / 'nothing'}: no such folder")
    _write(tmp_path / "file.png", np.zeros((32, 40), np.uint8))
    a_file = run_module("inpainting.evaluate", *common, f"--masks={tmp_path / 'file.png'}")
    assert_user_error(a_file, f"--masks={tmp_path / 'file.png'}: not a folder", "--mask=FILE")
    assert not (tmp_path / "out").exists()
