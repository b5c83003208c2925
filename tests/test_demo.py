"""Tests of `python -m inpainting.demo`, the second half of `make demo` (its picture, `before_after`,
is also tested in training/test_trainer.py)."""

import os
import shutil

import cv2
import numpy as np

from conftest import assert_user_error, run_module
from inpainting import imageio
from inpainting.checkpoints import store
from inpainting.data import sources
from inpainting.demo import before_after


def test_demo_writes_the_picture_of_the_held_out_photo_and_says_where_things_are(tiny_checkpoint, tmp_path):
    model_dir = tmp_path / "demo"
    shutil.copytree(tiny_checkpoint, model_dir)
    prefix = store.latest_prefix(model_dir)
    result = run_module("inpainting.demo", f"--model_dir={model_dir}", "--size=64")
    assert result.returncode == 0, result.stderr
    photo = sources.held_out_sample_paths()[0]
    output = model_dir / f"demo_step{store.checkpoint_step(prefix)}.png"
    assert result.stdout.splitlines() == [
        f"held-out photo: {photo} (never seen in training)",
        f"checkpoint:     {prefix}",
        f"TensorBoard:    tensorboard --logdir {model_dir}",
        f"before/after:   {output}  (masked | filled | original | attention flow)",
    ]
    # The short side is 64 pixels; four panels with three 4-pixel gaps.
    height, width = cv2.imread(photo).shape[:2]
    small_width = round(width * 64 / min(height, width))
    picture = cv2.imread(str(output))[..., ::-1]
    assert picture.shape == (64, 4 * small_width + 3 * 4, 3)
    expected = before_after(store.load_generator(prefix), imageio.read_image(photo).rgb, 64)
    assert np.abs(picture.astype(int) - expected).max() <= 1
    # Run again, it replaces its own picture.
    os.utime(output, (0, 0))
    again = run_module("inpainting.demo", f"--model_dir={model_dir}", "--size=64")
    assert again.returncode == 0, again.stderr
    assert os.stat(output).st_mtime > 0


def test_demo_without_a_trained_model_says_so(tmp_path):
    result = run_module("inpainting.demo", f"--model_dir={tmp_path}")
    assert_user_error(result, f"{tmp_path} is not a checkpoint directory of this project")
    assert os.listdir(tmp_path) == []
