"""Tests of large-image inpainting (inpainting.inference.highres): resize and crop modes, and the CLI's --hr flags."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import assert_user_error, run_module
from inpainting.checkpoints import store
from inpainting.errors import ImageError
from inpainting.inference import highres
from inpainting.inference.highres import HighResInpainter
from inpainting.inference.inpainter import Inpainter

PEAK_RSS_LIMIT = 4 * 2**30


@pytest.fixture(scope="module")
def tiny_inpainter(tiny_checkpoint):
    return Inpainter(store.load_generator(tiny_checkpoint))


def _image(height, width, seed=0):
    """Smooth gradients plus noise, uint8 RGB: enough structure that a fill differs from it."""
    rng = np.random.default_rng(seed)
    ys = np.linspace(0, 150, height, dtype=np.float32)[:, None, None]
    xs = np.linspace(0, 60, width, dtype=np.float32)[None, :, None]
    image = (ys + xs + np.array([0, 30, 10], np.float32)).astype(np.uint8)
    image += rng.integers(0, 8, image.shape, dtype=np.uint8)
    return image


def _mask(height, width, *boxes):
    """float32 {0, 1} mask with the (top, left, height, width) boxes as holes."""
    mask = np.zeros((height, width), np.float32)
    for top, left, h, w in boxes:
        mask[top:top + h, left:left + w] = 1
    return mask


def _overlaps(size, small_size):
    """Brute force: [size, small_size] length of the overlap of pixel i with small pixel j, in
    pixels of the large image (small pixel j covers [j, j + 1) * size / small_size)."""
    edges = np.arange(small_size + 1) * (size / small_size)
    start = np.maximum(np.arange(size)[:, None], edges[None, :-1])
    stop = np.minimum(np.arange(size)[:, None] + 1, edges[None, 1:])
    return np.maximum(stop - start, 0)


@pytest.mark.parametrize("height,width,work,expected", [
    (6000, 8000, 512, (384, 512)),
    (8000, 6000, 512, (512, 384)),
    (300, 512, 512, (300, 512)),   # fits: runs at full size
    (513, 10, 512, (512, 10)),
    (5000, 3, 64, (64, 1)),        # a side never shrinks to 0
])
def test_working_size(height, width, work, expected):
    assert highres.working_size(height, width, work) == expected


def test_shrunk_mask_keeps_every_hole_pixel():
    rng = np.random.default_rng(3)
    mask = np.zeros((301, 517), np.float32)
    mask[rng.integers(0, 301, 40), rng.integers(0, 517, 40)] = 1  # single pixels
    mask[100:131, 200:250] = 1
    size = highres.working_size(301, 517, 64)
    assert size == (37, 64)
    small = highres.shrink_mask(mask, size)
    rows, cols = _overlaps(301, size[0]), _overlaps(517, size[1])
    # Overlap area of every (small pixel, hole pixel) pair; OpenCV drops slivers below 1e-3 px.
    touched = np.einsum("yi,xj,yx->ij", (rows > 1e-3) * 1.0, (cols > 1e-3) * 1.0, mask) > 0
    reached = np.einsum("yi,xj,yx->ij", rows, cols, mask) > 0
    np.testing.assert_array_equal(small[touched], True)   # no hole pixel escapes
    np.testing.assert_array_equal(small[~reached], False)  # and no pixel is a hole for nothing
    assert small.mean() < 0.2


@pytest.mark.parametrize("small_size,size", [((37, 53), (600, 917)), ((20, 30), (1500, 2100)),
                                             ((8, 8), (8, 8))])
def test_enlarge_into_holes_equals_cv2_resize(small_size, size):
    rng = np.random.default_rng(5)
    small = rng.uniform(-20, 275, (*small_size, 3)).astype(np.float32)
    hole = rng.random(size) < 0.2
    hole[: size[0] // 2, : size[1] // 3] = False  # tiles without a hole are skipped
    out = np.zeros((*size, 3), np.float32)
    highres.enlarge_into_holes(small, hole, out)
    expected = np.clip(cv2.resize(small, size[::-1], interpolation=cv2.INTER_CUBIC), 0, 255)
    np.testing.assert_allclose(out[hole], expected[hole], atol=1e-3)
    assert not out[~hole].any()


def test_resize_mode_fills_the_holes_from_the_working_image(tiny_inpainter):
    rgb = _image(300, 400)
    mask = _mask(300, 400, (100, 150, 30, 41), (7, 0, 3, 3))
    result = HighResInpainter(tiny_inpainter, "resize", work_size=128)(rgb, mask)
    assert result["filled"].shape == (300, 400, 3) and result["flow"].shape == (300, 400, 3)
    # The working image is 96x128; its hole is every small pixel a hole pixel overlaps.
    small_rgb = cv2.resize(rgb, (128, 96), interpolation=cv2.INTER_AREA)
    small_hole = np.einsum("yi,xj,yx->ij", _overlaps(300, 96), _overlaps(400, 128), mask) > 0
    small = tiny_inpainter(small_rgb, small_hole.astype(np.float32))
    composite = np.where(small_hole[..., None], small["filled"], small_rgb)
    expected = np.clip(cv2.resize(composite, (400, 300), interpolation=cv2.INTER_CUBIC), 0, 255)
    hole = mask > 0
    np.testing.assert_allclose(result["filled"][hole], expected[hole], atol=1e-3)
    assert not result["filled"][~hole].any()
    # Each flow pixel is the small pixel its centre falls in.
    rows, cols = (np.arange(300) + 0.5) * 96 / 300, (np.arange(400) + 0.5) * 128 / 400
    np.testing.assert_array_equal(result["flow"], small["flow"][rows.astype(int)][:, cols.astype(int)])
    # Away from the hole border the fill is the network's (not the downscaled image's).
    assert np.abs(result["filled"][110:120, 160:180] - cv2.resize(
        small_rgb, (400, 300), interpolation=cv2.INTER_CUBIC)[110:120, 160:180]).mean() > 1


def _assert_fill_and_flow_are_native(result, inpainter, rgb, mask):
    """The hole's fill and the flow equal the plain inpainter's on the whole image."""
    native = inpainter(rgb, mask)
    hole = mask > 0
    np.testing.assert_array_equal(result["filled"][hole], native["filled"][hole])
    np.testing.assert_array_equal(result["flow"], native["flow"])


def test_resize_mode_runs_small_images_natively(tiny_inpainter):
    rgb, mask = _image(90, 120), _mask(90, 120, (30, 40, 20, 25))
    result = HighResInpainter(tiny_inpainter, "resize", work_size=128)(rgb, mask)
    _assert_fill_and_flow_are_native(result, tiny_inpainter, rgb, mask)


@pytest.mark.parametrize("holes,expected", [
    # Two 10x10 holes 30 pixels apart: their 20-pixel margins overlap, one crop holds both.
    ([(100, 100), (100, 140)], [(80, 80, 130, 170)]),
    # 190 pixels apart: two crops.
    ([(100, 100), (100, 300)], [(80, 80, 130, 130), (80, 280, 130, 330)]),
    # At the bottom-right corner: the crop is clipped to the image.
    ([(190, 390)], [(170, 370, 200, 400)]),
    # C overlaps neither A nor B, only the crop that merges them.
    ([(20, 20), (60, 60), (80, 5)], [(0, 0, 110, 90)]),
])
def test_crop_grouping(holes, expected):
    mask = _mask(200, 400, *[(top, left, 10, 10) for top, left in holes])
    assert highres.crop_boxes(mask > 0, margin=20) == expected


def test_crop_context_is_at_least_the_hole_width():
    # A 60x80 hole gets 60 pixels of context; a 3-pixel line 300 long gets the 20-pixel margin.
    mask = _mask(400, 400, (100, 100, 60, 80), (300, 50, 3, 300))
    assert highres.crop_boxes(mask > 0, margin=20) == [(40, 40, 220, 240), (280, 30, 323, 370)]


def test_crops_are_disjoint_and_hold_every_hole_pixel_once():
    rng = np.random.default_rng(7)
    hole = np.zeros((500, 700), bool)
    for top, left in zip(rng.integers(0, 490, 25), rng.integers(0, 690, 25)):
        hole[top:top + rng.integers(1, 10), left:left + rng.integers(1, 10)] = True
    boxes = highres.crop_boxes(hole, margin=15)
    cover = np.zeros(hole.shape, int)
    for top, left, bottom, right in boxes:
        cover[top:bottom, left:right] += 1
    assert cover.max() == 1 and cover[hole].min() == 1
    assert 1 < len(boxes) < 25
    assert boxes == sorted(boxes)
    assert highres.crop_boxes(np.zeros((5, 5), bool)) == []


def test_crop_mode_equals_native_when_the_crop_is_the_whole_image(tiny_inpainter):
    rgb, mask = _image(64, 80), _mask(64, 80, (20, 30, 12, 16))
    result = HighResInpainter(tiny_inpainter, "crop", margin=128)(rgb, mask)
    _assert_fill_and_flow_are_native(result, tiny_inpainter, rgb, mask)
    assert not result["filled"][mask == 0].any()


def test_crop_mode_inpaints_each_crop_at_full_resolution(tiny_inpainter):
    rgb = _image(200, 300)
    mask = _mask(200, 300, (90, 140, 20, 20), (5, 5, 4, 4))
    calls = []
    result = HighResInpainter(tiny_inpainter, "crop", margin=30,
                              progress=lambda *args: calls.append(args))(rgb, mask)
    assert calls == [(1, 2, "39x39 at x=0, y=0"), (2, 2, "80x80 at x=110, y=60")]
    crop = (slice(60, 140), slice(110, 190))
    expected = tiny_inpainter(rgb[crop], mask[crop])
    hole = mask[crop] > 0
    np.testing.assert_array_equal(result["filled"][crop][hole], expected["filled"][hole])
    np.testing.assert_array_equal(result["flow"][crop], expected["flow"])
    outside = np.ones(mask.shape, bool)
    outside[crop] = False
    outside[:39, :39] = False
    assert (result["flow"][outside] == highres.NO_FLOW).all()


def test_crop_larger_than_the_work_size_is_downscaled(tiny_inpainter):
    rgb, mask = _image(300, 400), _mask(300, 400, (100, 120, 100, 150))
    calls = []
    result = HighResInpainter(tiny_inpainter, "crop", work_size=128, margin=10,
                              progress=lambda *args: calls.append(args))(rgb, mask)
    # The hole's 100-pixel width is its context: the crop is the whole 300x350 band, run at 110x128.
    assert calls == [(1, 1, "350x300 at x=20, y=0, inpainted at 128x110")]
    crop = (slice(0, 300), slice(20, 370))
    expected = HighResInpainter(tiny_inpainter, "resize", work_size=128)(rgb[crop], mask[crop])
    np.testing.assert_array_equal(result["filled"][crop], expected["filled"])
    np.testing.assert_array_equal(result["flow"][crop], expected["flow"])


def test_progress_and_no_hole(tiny_inpainter):
    rgb = _image(100, 150)
    calls = []
    crop = HighResInpainter(tiny_inpainter, "crop", progress=lambda *args: calls.append(args))
    result = crop(rgb, np.zeros((100, 150), np.float32))
    assert calls == [] and not result["filled"].any() and (result["flow"] == highres.NO_FLOW).all()
    resize = HighResInpainter(tiny_inpainter, "resize", work_size=64,
                              progress=lambda *args: calls.append(args))
    resize(rgb, _mask(100, 150, (10, 10, 5, 5), (80, 130, 5, 5)))
    assert calls == [(1, 1, "150x100 at x=0, y=0, inpainted at 64x43")]


def test_check_size_follows_the_mode(tiny_inpainter):
    with pytest.raises(ImageError, match="too large to inpaint"):
        HighResInpainter(tiny_inpainter, "native").check_size(40000, 40000)
    HighResInpainter(tiny_inpainter, "resize").check_size(40000, 40000)
    HighResInpainter(tiny_inpainter, "crop").check_size(40000, 40000)


def _resident_bytes():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
@pytest.mark.parametrize("mode", ["resize", "crop"])
def test_full_size_fill_is_not_paged_in(tiny_inpainter, mode):
    # 8000x6000: the float32 fill would take 576 MB if written everywhere; the result holds it,
    # the hole map (48 MB) and the flow (144 MB), and pages the fill in only around the holes.
    rgb = np.zeros((6000, 8000, 3), np.uint8)
    rgb[::7] = 90
    mask = _mask(6000, 8000, *BIG_HOLES)
    before = _resident_bytes()
    result = HighResInpainter(tiny_inpainter, mode)(rgb, mask)
    grown = _resident_bytes() - before
    assert result["filled"][mask > 0].any()
    assert grown < 400 * 2**20, grown / 2**20


@pytest.mark.parametrize("settings,message", [
    (dict(mode="tiles"), "mode must be one of native, resize, crop, got 'tiles'"),
    (dict(mode="resize", work_size=32), "work_size must be an integer of at least 64, got 32"),
    (dict(mode="resize", work_size=512.0), "work_size must be an integer"),
    (dict(mode="crop", margin=-1), "margin must be an integer of 0 or more, got -1"),
    (dict(mode="crop", margin=True), "margin must be an integer"),
])
def test_bad_settings(tiny_inpainter, settings, message):
    with pytest.raises(ValueError, match=message):
        HighResInpainter(tiny_inpainter, **settings)


@pytest.fixture()
def small_files(tmp_path):
    assert cv2.imwrite(str(tmp_path / "img.png"), _image(30, 41))
    assert cv2.imwrite(str(tmp_path / "mask.png"), (_mask(30, 41, (5, 5, 10, 10)) * 255).astype(np.uint8))
    return tmp_path


@pytest.mark.parametrize("flags,fragments", [
    (["--hr=tiles"], ["--hr must be one of native, resize, crop", "'tiles'"]),
    (["--hr=resize", "--hr_size=32"], ["--hr_size must be at least 64", "32"]),
    (["--hr=crop", "--hr_margin=-5"], ["--hr_margin must be 0 or more", "-5"]),
    (["--hr_size=1024"], ["--hr_size goes with --hr=resize or --hr=crop"]),
    (["--hr=resize", "--hr_margin=10"], ["--hr_margin goes with --hr=crop"]),
])
def test_cli_flag_errors(small_files, tiny_checkpoint, flags, fragments):
    result = run_module("inpainting.inpaint", f"--checkpoint={tiny_checkpoint}",
                        f"--image={small_files / 'img.png'}", f"--mask={small_files / 'mask.png'}",
                        f"--output={small_files / 'out.png'}", *flags)
    assert_user_error(result, *fragments)
    assert not (small_files / "out.png").exists()


# Runs a module in a fresh process whose only child is the module's process, and prints that
# child's peak RSS (RUSAGE_CHILDREN is the maximum over the waited-for children, so the test
# process, which has run other children, cannot measure one of them itself).
_PEAK_RSS = """
import resource, subprocess, sys
code = subprocess.call([sys.executable, "-m"] + sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
sys.exit(code)
"""


def _run_measured(module, *args):
    """Like conftest.run_module; returns (CompletedProcess, peak RSS of the module's process in bytes)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    result = subprocess.run([sys.executable, "-c", _PEAK_RSS, module, *map(str, args)],
                            capture_output=True, text=True, env=env, timeout=600)
    return result, int(result.stdout.split()[-1])


BIG = (6000, 8000)
# (top, left, height, width): two holes close enough to share a crop, one far away, one in the
# top-right corner.
BIG_HOLES = ((1000, 1500, 40, 60), (1100, 1700, 30, 50), (4500, 6000, 50, 50), (0, 7970, 30, 30))


@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("big")
    assert cv2.imwrite(str(directory / "photo.png"), _image(*BIG), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    mask = (_mask(*BIG, *BIG_HOLES) * 255).astype(np.uint8)
    assert cv2.imwrite(str(directory / "mask.png"), mask)
    return directory


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["resize", "crop"])
def test_cli_8000x6000_in_little_memory(big_files, tiny_checkpoint, tmp_path, mode):
    output, flow = tmp_path / "out.png", tmp_path / "flow.png"
    result, peak = _run_measured("inpainting.inpaint", f"--checkpoint={tiny_checkpoint}", f"--hr={mode}",
                                 f"--image={big_files / 'photo.png'}", f"--mask={big_files / 'mask.png'}",
                                 f"--output={output}", f"--flow={flow}")
    assert result.returncode == 0, result.stderr
    print(f"{mode}: peak RSS {peak / 2**30:.2f} GiB")
    assert peak < PEAK_RSS_LIMIT
    source = cv2.imread(str(big_files / "photo.png"), cv2.IMREAD_UNCHANGED)
    out = cv2.imread(str(output), cv2.IMREAD_UNCHANGED)
    assert out.shape == source.shape and out.dtype == source.dtype
    hole = _mask(*BIG, *BIG_HOLES) > 0
    np.testing.assert_array_equal(out[~hole], source[~hole])
    assert (out[hole] != source[hole]).any(axis=-1).mean() > 0.5
    flow_image = cv2.imread(str(flow))
    assert flow_image.shape == source.shape
    if mode == "crop":
        assert [line.split(":")[0] for line in result.stderr.splitlines()
                                                      if line.startswith("  crop ")] == [
            "  crop 1/3", "  crop 2/3", "  crop 3/3"]
        assert (flow_image[2000:4000, 2000:5000] == highres.NO_FLOW).all()  # far from every crop
