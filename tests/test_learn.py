"""bench/learn.py: the split, the held-out masks, the charts, and a learning curve end to end."""

import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO, assert_user_error

sys.path.insert(0, str(REPO / "bench"))

import chart  # noqa: E402
import learn  # noqa: E402

SCRIPT = REPO / "bench" / "learn.py"
TINY_RECIPE = """\
--cnum=4
--image_size=64
--box_size=32
--max_delta=8
--batch_size=2
--critic_steps=1
--validation_images=2
--validation_every=1000
--summary_every=1000
--log_every=1
"""


def write_photos(folder, count):
    """`count` small photo-like PNGs: colour gradients with a disc, a frame and a little noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        h, w = 72 + 4 * (i % 5), 88 - 2 * (i % 7)
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        image = np.stack([np.sin(5 * x + i), np.cos(4 * y - 0.5 * i), np.sin(3 * (x + y) + i)], -1)
        image = (127.5 * (image + 1)).astype(np.uint8)
        color = tuple(int(v) for v in rng.integers(0, 255, 3))
        cv2.circle(image, (int(rng.integers(15, w - 15)), int(rng.integers(15, h - 15))),
                   int(rng.integers(6, 14)), color, -1)
        cv2.rectangle(image, (int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))),
                      (int(rng.integers(w // 2, w)), int(rng.integers(h // 2, h))), color[::-1], 2)
        image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"img{i:02d}.png"), image)


def run_learn(*args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)


def test_held_out_positions_are_every_kth_file_from_the_kth():
    assert learn.held_out_positions(14, 4) == [2, 5, 8, 11]
    assert learn.held_out_positions(10, 3) == [2, 5, 8]
    thousand = learn.held_out_positions(1000, 100)
    assert thousand == list(range(9, 1000, 10))
    assert learn.held_out_positions(2, 1) == [1]
    for count, held_out in ((5, 5), (5, 6), (5, 0)):
        with pytest.raises(learn.UsageError, match="needs at least"):
            learn.held_out_positions(count, held_out)


def test_square_is_the_centred_square_resized():
    rgb = np.random.default_rng(1).integers(0, 256, (60, 100, 3), dtype=np.uint8)
    np.testing.assert_array_equal(learn.square(rgb, 60), rgb[:, 20:80])
    np.testing.assert_array_equal(learn.square(rgb, 30),
                                  cv2.resize(rgb[:, 20:80], (30, 30), interpolation=cv2.INTER_AREA))
    tall = rgb.transpose(1, 0, 2)  # 100 x 60: rows 20..79
    np.testing.assert_array_equal(learn.square(tall, 90),
                                  cv2.resize(np.ascontiguousarray(tall[20:80]), (90, 90),
                                             interpolation=cv2.INTER_CUBIC))


def test_free_form_masks_are_fixed_per_photo_and_cover_10_to_50_percent():
    assert (learn.stroke_config(256).min_width, learn.stroke_config(256).max_width) == (12, 40)
    assert (learn.stroke_config(128).min_width, learn.stroke_config(128).max_width) == (6, 20)
    assert (learn.stroke_config(16).min_width, learn.stroke_config(16).max_width) == (1, 2)
    masks = {name: learn.free_form_mask(name, 64) for name in ("a.jpg", "b.jpg", "sub/c.png")}
    for name, mask in masks.items():
        assert mask.shape == (64, 64) and mask.dtype == np.float32
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert 0.1 <= mask.mean() <= 0.5, name
        np.testing.assert_array_equal(learn.free_form_mask(name, 64), mask)
    assert not np.array_equal(masks["a.jpg"], masks["b.jpg"])


def test_nice_ticks_and_their_labels():
    assert chart.nice_ticks(0, 1) == ([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], 0.2)
    ticks, step = chart.nice_ticks(13.2, 17.9)
    assert (ticks, step) == ([14, 15, 16, 17], 1)
    assert [chart.tick_text(t, step) for t in ticks] == ["14", "15", "16", "17"]
    assert chart.tick_text(0.25, 0.05) == "0.25"
    assert chart.tick_text(20000, 5000) == "20k"
    assert chart.tick_text(1_500_000, 500_000) == "1.5M"


def test_figure_draws_curves_and_levels(tmp_path):
    blue, orange = (200, 0, 0), (0, 128, 255)
    panel = chart.Panel("PSNR", "minutes", [chart.Curve("model", blue, [(1, 10.0), (2, None), (3, 14.0)])],
                        [chart.Level("telea", orange, 12.0), chart.Level("nan", orange, math.nan)])
    empty = chart.Panel("nothing yet", "minutes")
    image = chart.draw_figure([panel, empty, panel], 2, "title", [("model", blue, False)],
                              panel_size=(300, 200))
    assert image.shape == (chart.HEADER + 2 * 200, 600, 3)
    first = image[chart.HEADER:chart.HEADER + 200, :300]
    assert (first == blue).all(axis=2).sum() > 50
    assert (first == orange).all(axis=2).sum() > 200
    assert not (image[chart.HEADER:chart.HEADER + 200, 300:] == blue).all(axis=2).any()
    path = tmp_path / "figure.png"
    chart.write_png(str(path), image)
    np.testing.assert_array_equal(cv2.imread(str(path)), image)
    assert os.listdir(tmp_path) == ["figure.png"]


def test_learning_curve_end_to_end(tmp_path):
    write_photos(tmp_path / "photos", 14)
    (tmp_path / "tiny.cfg").write_text(TINY_RECIPE)
    result = run_learn("--config=tiny.cfg", "--images=photos", "--held_out=4", "--steps=4",
                       "--eval_every_steps=2", "--eval_size=64", "--output_dir=out", "--seed=3",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4
    assert [(r["step"], r["masks"]) for r in records] == [(2, "center"), (2, "free_form"),
                                                          (4, "center"), (4, "free_form")]
    keys = {"minutes", "step", "images_seen", "masks", "model", "telea", "ns", "config", "seed"}
    for record in records:
        assert keys <= set(record)
        assert record["images_seen"] == 2 * record["step"]
        assert (record["config"], record["seed"], record["held_out"]) == ("tiny.cfg", 3, 4)
        assert record["checkpoint"] == str(tmp_path / "out" / "model" / f"ckpt-{record['step']}")
        for method in ("model", "telea", "ns"):
            assert set(record[method]) == {"l1_hole", "l1_image", "psnr_hole", "psnr_image",
                                           "ssim_hole", "ssim_image"}
            for value in record[method].values():
                assert isinstance(value, float) and math.isfinite(value), (method, record[method])
    for kind in ("center", "free_form"):
        mine = [r for r in records if r["masks"] == kind]
        assert mine[0]["telea"] == mine[1]["telea"] and mine[0]["ns"] == mine[1]["ns"]
        assert mine[0]["telea"] != mine[0]["ns"]
        assert 0 < mine[0]["minutes"] <= mine[1]["minutes"]
    assert records[0]["telea"] != records[1]["telea"]  # the two kinds of holes differ

    out = tmp_path / "out"
    assert [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()] == records
    for name in ("learning_curve.png", "learning_curve_images.png"):
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] > 400 and image.shape[1] > 900, name
    grid = cv2.imread(str(out / "heldout_grid.png"))[:, :, ::-1]
    assert grid.shape == (chart.LABEL_HEIGHT + 4 * 2 * 64, 4 * 64, 3)
    # The first held-out photo with its centre hole: its last column is the photo, the first the
    # photo with a white hole, and the model's column keeps the photo outside the hole.
    original = learn.square(cv2.imread(str(tmp_path / "photos" / "img02.png"))[:, :, ::-1], 64)
    row = grid[chart.LABEL_HEIGHT:chart.LABEL_HEIGHT + 64]
    hole = np.zeros((64, 64), bool)
    hole[16:48, 16:48] = True
    np.testing.assert_array_equal(row[:, 192:], original)
    np.testing.assert_array_equal(row[:, :64][hole], 255)
    np.testing.assert_array_equal(row[:, 128:192][~hole], original[~hole])
    assert not np.array_equal(row[:, 64:128][hole], original[hole])  # Telea's fill

    # bench/grid.py draws the same from the command line, for any checkpoint and photos.
    result = subprocess.run([sys.executable, str(REPO / "bench" / "grid.py"), f"--checkpoint={out / 'model'}",
                             f"--images={out / 'held_out.flist'}", "--count=2", "--size=64", "--masks=center",
                             "--scale=2", f"--output={tmp_path / 'grid.png'}"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert result.returncode == 0, result.stderr
    drawn = cv2.imread(str(tmp_path / "grid.png"))[:, :, ::-1]
    assert drawn.shape == (chart.LABEL_HEIGHT + 2 * 128, 4 * 128, 3)
    np.testing.assert_array_equal(drawn[chart.LABEL_HEIGHT:, 384:][:128:2, ::2], original)
    np.testing.assert_array_equal(drawn[chart.LABEL_HEIGHT:, 256:384][:128:2, ::2],
                                  row[:, 128:192])  # the same checkpoint's fill
    for args, fragments in [(["--masks=boxes"], ["--masks=boxes", "center or free_form"]),
                            (["--images=nowhere"], ["--images=nowhere", "no such folder"]),
                            (["--checkpoint=nowhere"], ["--checkpoint"])]:
        failed = subprocess.run([sys.executable, str(REPO / "bench" / "grid.py"), f"--checkpoint={out / 'model'}",
                                 f"--images={out / 'held_out.flist'}", f"--output={tmp_path / 'bad.png'}", *args],
                                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                                cwd=tmp_path, timeout=300)
        assert_user_error(failed, *fragments)
        assert failed.returncode == 2
    assert not (tmp_path / "bad.png").exists()

    photos = sorted(str(tmp_path / "photos" / f"img{i:02d}.png") for i in range(14))
    training = (out / "train.flist").read_text().splitlines()
    held_out = (out / "held_out.flist").read_text().splitlines()
    assert held_out == [photos[i] for i in (2, 5, 8, 11)]
    assert not set(training) & set(held_out)
    assert sorted(training + held_out) == photos
    assert json.loads((out / "model" / "train_config.json").read_text())["dataset"] == \
        f"flist:{out / 'train.flist'}"


def test_usage_errors_are_one_line_with_status_2(tmp_path):
    write_photos(tmp_path / "photos", 3)
    (tmp_path / "tiny.cfg").write_text(TINY_RECIPE)
    common = ["--images=photos", "--config=tiny.cfg", "--steps=2", "--output_dir=out"]
    cases = [
        (["--images=nowhere", *common[1:]], ["--images=nowhere", "no such folder"]),
        ([*common, "--config=missing.cfg"], ["--config=missing.cfg", "no such file"]),
        ([*common, "--held_out=3"], ["--held_out=3 needs at least 4 images", "has 3"]),
        ([*common, "--", "--model_dir=elsewhere"], ["--model_dir after --", "--output_dir"]),
        ([*common, "--", "--cnum=zero"], ["tiny.cfg", "cnum"]),
        ([*common[:2], "--output_dir=out"], ["--minutes", "--steps"]),
    ]
    for args, fragments in cases:
        result = run_learn(*args, cwd=tmp_path)
        assert_user_error(result, *fragments)
        assert result.returncode == 2, result.stderr
    assert not (tmp_path / "out").exists()
