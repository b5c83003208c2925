"""Tests of the inpaint command line: single images and folders, pixels outside the hole untouched,
and its errors (the library it runs is tested in inference/test_inpainter.py)."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from conftest import assert_user_error, box_mask, load_reference, run_module, write_tf1_checkpoint
from inpainting.checkpoints import tf1


def _write(path, array):
    assert cv2.imwrite(str(path), array)
    return path


@pytest.mark.slow
def test_cli_folder_of_mixed_images(tmp_path, tiny_checkpoint):
    rng = np.random.default_rng(1)
    images, masks = tmp_path / "images", tmp_path / "masks"
    (images / "sub").mkdir(parents=True)
    masks_sub = masks / "sub"
    masks_sub.mkdir(parents=True)
    cases = {
        "odd.jpg": rng.integers(0, 256, size=(301, 457, 3), dtype=np.uint8),
        "gray.png": rng.integers(0, 256, size=(64, 80), dtype=np.uint8),
        "sub/rgba.png": rng.integers(0, 256, size=(48, 40, 4), dtype=np.uint8),
        "deep.png": rng.integers(0, 65536, size=(56, 72, 3), dtype=np.uint16),
    }
    holes = {}
    for name, pixels in cases.items():
        _write(images / name, pixels)
        height, width = pixels.shape[:2]
        holes[name] = box_mask(height, width, height // 3, width // 4, height // 3, width // 2)
        _write(masks / (os.path.splitext(name)[0] + ".png"), (holes[name] * 255).astype(np.uint8))
    result = run_module("inpainting.inpaint", f"--checkpoint={tiny_checkpoint}", f"--image_dir={images}",
                        f"--mask_dir={masks}", f"--output_dir={tmp_path / 'out'}",
                        f"--flow_dir={tmp_path / 'flow'}")
    assert result.returncode == 0, result.stderr
    for name, original in cases.items():
        stem = os.path.splitext(name)[0] + ".png"
        source = cv2.imread(str(images / name), cv2.IMREAD_UNCHANGED)  # jpg: the decoded pixels
        out = cv2.imread(str(tmp_path / "out" / stem), cv2.IMREAD_UNCHANGED)
        assert out.shape == source.shape and out.dtype == source.dtype, name
        keep = holes[name] == 0
        np.testing.assert_array_equal(out[keep], source[keep], err_msg=name)
        assert np.any(out[~keep] != source[~keep]), name
        flow = cv2.imread(str(tmp_path / "flow" / stem))
        assert flow.shape[:2] == source.shape[:2], name
    assert "[4/4]" in result.stderr


@pytest.mark.slow
def test_cli_single_image_matches_library(tmp_path, official_checkpoint):
    ref = load_reference("v1", "g_256x384_b1.npz")
    bgr = ref["image_u8_bgr"][0]
    mask = ref["mask"][0, :, :, 0]
    _write(tmp_path / "photo.png", bgr)
    _write(tmp_path / "mask.png", (mask * 255).astype(np.uint8))
    result = run_module("inpainting.inpaint", f"--checkpoint={official_checkpoint('v1')}",
                        f"--image={tmp_path / 'photo.png'}", f"--mask={tmp_path / 'mask.png'}",
                        f"--output={tmp_path / 'out.png'}", f"--flow={tmp_path / 'flow.png'}")
    assert result.returncode == 0, result.stderr
    out = cv2.imread(str(tmp_path / "out.png"))
    expected = np.clip(np.rint((ref["x_stage2"][0] + 1) * 127.5), 0, 255)
    hole = mask > 0
    assert np.abs(out[hole].astype(float) - expected[hole]).max() <= 1
    np.testing.assert_array_equal(out[~hole], bgr[~hole])
    flow = cv2.imread(str(tmp_path / "flow.png"))[..., ::-1]
    expected_flow = np.rint((ref["offset_flow"][0] + 1) * 127.5).astype(np.uint8)
    np.testing.assert_array_equal(flow[::4, ::4], expected_flow)


@pytest.fixture()
def files(tmp_path):
    _write(tmp_path / "img.png", np.full((30, 41, 3), 128, np.uint8))
    _write(tmp_path / "mask.png", (box_mask(30, 41, 5, 5, 10, 10) * 255).astype(np.uint8))
    _write(tmp_path / "small_mask.png", np.zeros((30, 40), np.uint8))
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return tmp_path


@pytest.mark.parametrize("image,mask,fragments", [
    ("img.png", "small_mask.png", ["small_mask.png", "40x30", "41x30"]),
    ("missing.png", "mask.png", ["missing.png", "no such file"]),
    ("corrupt.png", "mask.png", ["corrupt.png", "cannot decode"]),
])
def test_cli_input_errors(files, tiny_checkpoint, image, mask, fragments):
    result = run_module("inpainting.inpaint", f"--checkpoint={tiny_checkpoint}", f"--image={files / image}",
                        f"--mask={files / mask}", f"--output={files / 'out.png'}")
    assert_user_error(result, *fragments)
    assert not (files / "out.png").exists()


def test_cli_never_replaces_existing_output(files, tiny_checkpoint):
    (files / "out.png").write_bytes(b"precious")
    args = [f"--checkpoint={tiny_checkpoint}", f"--image={files / 'img.png'}", f"--mask={files / 'mask.png'}"]
    assert_user_error(run_module("inpainting.inpaint", *args, f"--output={files / 'out.png'}"),
                      "exists", "--overwrite")
    assert (files / "out.png").read_bytes() == b"precious"
    assert_user_error(run_module("inpainting.inpaint", *args, f"--output={files / 'img.png'}", "--overwrite"),
                      "replace an input")


def test_cli_bad_checkpoint(files):
    result = run_module("inpainting.inpaint", f"--checkpoint={files / 'nothing'}", f"--image={files / 'img.png'}",
                        f"--mask={files / 'mask.png'}", f"--output={files / 'out.png'}")
    assert_user_error(result, "nothing", "no such checkpoint")


@pytest.mark.parametrize("image_size", [256, "x"])
def test_cli_model_config_of_a_wrong_type(files, tiny_checkpoint, image_size):
    model = files / "model"
    shutil.copytree(tiny_checkpoint, model)
    values = json.loads((model / "model_config.json").read_text())
    (model / "model_config.json").write_text(json.dumps(dict(values, image_size=image_size)))
    result = run_module("inpainting.inpaint", f"--checkpoint={model}", f"--image={files / 'img.png'}",
                        f"--mask={files / 'mask.png'}", f"--output={files / 'out.png'}")
    assert_user_error(result, f"{model / 'model_config.json'}: image_size must be (height, width), two "
                              f"whole numbers that are multiples of 16, got {image_size!r}")
    assert not (files / "out.png").exists()


def test_cli_flag_misuse(files, tiny_checkpoint):
    result = run_module("inpainting.inpaint", f"--checkpoint={tiny_checkpoint}", f"--image={files / 'img.png'}")
    assert result.returncode != 0 and "--image needs --mask" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_checkpoint_that_fits_no_network(files, official_checkpoint):
    # v1 weights with a v2-shaped stage 2 input: read as v2, whose other layers do not fit.
    variables = tf1.read_variables(official_checkpoint("v1"))
    variables["inpaint_net/xconv1/kernel"] = np.zeros((5, 5, 3, 48), np.float32)
    write_tf1_checkpoint(files / "v2", variables)
    result = run_module("inpainting.inpaint", f"--checkpoint={files / 'v2'}", f"--image={files / 'img.png'}",
                        f"--mask={files / 'mask.png'}", f"--output={files / 'out.png'}")
    assert_user_error(result, "inpaint_net/conv2_downsample/kernel has shape [3, 3, 32, 64], expected "
                              "[3, 3, 16, 64]")
    assert not (files / "out.png").exists()


def _folder(root, names, size=(30, 41)):
    """Images (distinct grey levels) named `names` in `root`; returns {name: pixels}."""
    root.mkdir(parents=True, exist_ok=True)
    pixels = {}
    for i, name in enumerate(names):
        pixels[name] = np.full((*size, 3), 40 + 30 * i, np.uint8)
        _write(root / name, pixels[name])
    return pixels


def test_cli_folder_outputs_that_collide_are_refused(files, tiny_checkpoint, tmp_path):
    _folder(tmp_path / "images", ["a.jpg", "a.png", "b.png"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"precious")
    result = run_module("inpainting.inpaint", f"--checkpoint={tiny_checkpoint}",
                        f"--image_dir={tmp_path / 'images'}", f"--mask={files / 'mask.png'}",
                        f"--output_dir={out}", "--overwrite")
    assert_user_error(result, f"{out / 'a.png'}: would be written twice", "a.jpg", "a.png")
    assert sorted(os.listdir(out)) == ["a.png"] and (out / "a.png").read_bytes() == b"precious"


def test_cli_flow_that_is_the_output_is_refused(files, tiny_checkpoint, tmp_path):
    args = [f"--checkpoint={tiny_checkpoint}", f"--mask={files / 'mask.png'}", "--overwrite"]
    (tmp_path / "same.png").write_bytes(b"precious")
    single = run_module("inpainting.inpaint", *args, f"--image={files / 'img.png'}",
                        f"--output={tmp_path / 'same.png'}", f"--flow={tmp_path / 'same.png'}")
    assert_user_error(single, f"{tmp_path / 'same.png'}: would be written twice", "output", "flow")
    assert (tmp_path / "same.png").read_bytes() == b"precious"
    _folder(tmp_path / "images", ["a.png"])
    folder = run_module("inpainting.inpaint", *args, f"--image_dir={tmp_path / 'images'}",
                        f"--output_dir={tmp_path / 'out'}", f"--flow_dir={tmp_path / 'out'}")
    assert_user_error(folder, f"{tmp_path / 'out' / 'a.png'}: would be written twice")
    assert not (tmp_path / "out").exists()


def test_cli_folder_goes_on_after_unreadable_images(files, tiny_checkpoint, tmp_path):
    images = tmp_path / "images"
    good = _folder(images, ["b.png", "d.png", "e.png"])
    (images / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # the first image fails
    (images / "c.jpg").write_bytes(b"not a jpeg")
    result = run_module("inpainting.inpaint", f"--checkpoint={tiny_checkpoint}", f"--image_dir={images}",
                        f"--mask={files / 'mask.png'}", f"--output_dir={tmp_path / 'out'}")
    assert_user_error(result, "2 of 5 images failed")
    failures = [line for line in result.stderr.splitlines() if "cannot decode" in line]
    assert len(failures) == 2, result.stderr
    assert "a.png" in failures[0] and "c.jpg" in failures[1]
    assert sorted(os.listdir(tmp_path / "out")) == ["b.png", "d.png", "e.png"]
    keep = box_mask(30, 41, 5, 5, 10, 10) == 0
    for name, pixels in good.items():
        out = cv2.imread(str(tmp_path / "out" / name))
        np.testing.assert_array_equal(out[keep], pixels[keep])


def test_cli_output_folders_inside_the_image_folder_are_not_inputs(files, tiny_checkpoint, tmp_path):
    images = tmp_path / "images"
    _folder(images, ["a.png", "b.jpg"])
    args = [f"--checkpoint={tiny_checkpoint}", f"--image_dir={images}", f"--mask={files / 'mask.png'}",
            f"--output_dir={images / 'filled'}", f"--flow_dir={images / 'flows'}"]
    first = run_module("inpainting.inpaint", *args)
    assert first.returncode == 0, first.stderr
    second = run_module("inpainting.inpaint", *args, "--overwrite")
    assert second.returncode == 0, second.stderr
    assert "[2/2]" in second.stderr and "[3/" not in second.stderr
    assert sorted(os.listdir(images)) == ["a.png", "b.jpg", "filled", "flows"]
    assert sorted(os.listdir(images / "filled")) == sorted(os.listdir(images / "flows")) == ["a.png", "b.png"]


def test_cli_animated_image_is_refused(files, tiny_checkpoint, tmp_path):
    frames = [np.full((30, 41, 3), level, np.uint8) for level in (50, 200)]
    animation = cv2.Animation()
    animation.frames, animation.durations = frames, [100, 100]
    ok, data = cv2.imencodeanimation(".gif", animation)
    assert ok
    (tmp_path / "anim.gif").write_bytes(data.tobytes())
    result = run_module("inpainting.inpaint", f"--checkpoint={tiny_checkpoint}",
                        f"--image={tmp_path / 'anim.gif'}", f"--mask={files / 'mask.png'}",
                        f"--output={tmp_path / 'out.png'}")
    assert_user_error(result, "anim.gif: has 2 frames", "save the frame you want")
    assert not (tmp_path / "out.png").exists()


def test_cli_missing_mask_folder_is_named(files, tiny_checkpoint, tmp_path):
    _folder(tmp_path / "images", ["a.png"])
    result = run_module("inpainting.inpaint", f"--checkpoint={tiny_checkpoint}",
                        f"--image_dir={tmp_path / 'images'}", f"--mask_dir={tmp_path / 'masks'}",
                        f"--output_dir={tmp_path / 'out'}")
    assert_user_error(result, f"--mask_dir={tmp_path / 'masks'}: no such folder")
