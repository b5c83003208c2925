"""Tests of inpainting.inference.masktools (mask_grow, mask_feather) on their own, through
Inpainter and the high-resolution modes, and the inpaint command's flags."""

import cv2
import numpy as np
import pytest

from conftest import assert_user_error, box_mask, photo, run_module
from inpainting import imageio
from inpainting.checkpoints import store
from inpainting.errors import ImageError, InpaintingError
from inpainting.inference import highres, masktools
from inpainting.inference.highres import HighResInpainter
from inpainting.inference.inpainter import Inpainter


@pytest.fixture(scope="module")
def tiny_inpainter(tiny_checkpoint):
    return Inpainter(store.load_generator(tiny_checkpoint))


def _disc_dilation(hole, radius):
    """The obviously correct dilation: OpenCV's with a disc kernel x*x + y*y <= radius*radius."""
    ys, xs = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    kernel = (ys * ys + xs * xs <= radius * radius).astype(np.uint8)
    return cv2.dilate(hole.astype(np.uint8), kernel, borderValue=0) > 0


def _distance(hole):
    """Brute force: each pixel's Euclidean distance to the nearest hole pixel."""
    ys, xs = np.nonzero(hole)
    rows, cols = np.mgrid[0:hole.shape[0], 0:hole.shape[1]]
    squared = (rows[..., None] - ys) ** 2 + (cols[..., None] - xs) ** 2
    return np.sqrt(squared.min(axis=-1))


def _holes(height, width):
    mask = box_mask(height, width, 9, 12, 5, 7)
    mask[0, width - 3:] = 1  # at the border
    mask[height - 8, 30] = 1  # one pixel
    return mask


@pytest.mark.parametrize("radius", [1, 2, 5, 11])
def test_grow_is_a_disc_dilation(radius):
    mask = _holes(40, 57)
    grown = masktools.grow(mask, radius)
    assert grown.dtype == np.float32
    np.testing.assert_array_equal(grown > 0, _disc_dilation(mask > 0, radius))
    assert masktools.grow(mask, 0) is mask


def test_grow_across_tiles_of_a_large_mask():
    mask = np.zeros((1100, 2100), np.float32)
    mask[1020:1030, 1021:1026] = 1  # at the corner of four tiles
    mask[3, 2090] = 1
    np.testing.assert_array_equal(masktools.grow(mask, 9) > 0, _disc_dilation(mask > 0, 9))


@pytest.mark.parametrize("width", [1, 3, 8])
def test_feather_weight_is_smooth_over_the_band(width):
    mask = _holes(30, 41)
    weight = masktools.feather_weight(mask, width)
    distance = _distance(mask > 0)
    band = (distance > 0) & (distance <= width)
    np.testing.assert_array_equal(weight[mask > 0], 1)
    np.testing.assert_array_equal(weight > 0, distance <= width)
    assert (weight[band] < 1).all()
    t = 1 - distance[band] / (width + 1)
    np.testing.assert_allclose(weight[band], t * t * (3 - 2 * t), rtol=1e-6)
    # Farther from the hole, never heavier.
    order = np.argsort(distance[band], kind="stable")
    assert (np.diff(weight[band][order]) <= 1e-7).all()


@pytest.mark.parametrize("grow,feather,error,message", [
    (-1, 0, InpaintingError, "mask_grow must be a whole number of pixels, 0 or more, got -1"),
    (0, 1.5, InpaintingError, "mask_feather must be a whole number of pixels, 0 or more, got 1.5"),
    ("two", 0, InpaintingError, "mask_grow must be a whole number of pixels, 0 or more, got 'two'"),
    (True, 0, InpaintingError, "mask_grow must be a whole number"),
    (42, 0, ImageError, r"img: mask_grow=42 is larger than the image \(41x30\); give at most 41 pixels"),
    (0, 100, ImageError, r"img: mask_feather=100 is larger than the image"),
])
def test_bad_values_are_refused(grow, feather, error, message):
    with pytest.raises(error, match=message):
        masktools.prepare(box_mask(30, 41, 5, 5, 4, 4), grow, feather, "img")


def _loaded(rgb):
    return imageio.LoadedImage(rgb=rgb, original=rgb[..., ::-1].copy(), path="photo.png")


def _changed(before, after):
    return (before != after).any(axis=-1)


@pytest.mark.parametrize("mode", ["native", "crop", "resize"])
def test_grow_and_feather_in_every_mode(tiny_inpainter, mode):
    height, width = 90, 120
    rgb = photo(height, width, seed=3)
    mask = box_mask(height, width, 30, 40, 12, 16)
    image = _loaded(rgb)
    settings = dict(work_size=64) if mode == "resize" else dict(margin=16) if mode == "crop" else {}

    def run(**tools):
        result = HighResInpainter(tiny_inpainter, mode, **settings, **tools)(rgb, mask)
        return result, imageio.compose(image, result["filled"], result["mask"], result["weight"])[..., ::-1]

    today = HighResInpainter(tiny_inpainter, mode, **settings)(rgb, mask)
    plain, out = run(mask_grow=0, mask_feather=0)
    np.testing.assert_array_equal(out, imageio.compose(image, today["filled"], mask)[..., ::-1])
    assert plain["weight"] is None

    grown, out = run(mask_grow=4)
    disc = _disc_dilation(mask > 0, 4)
    np.testing.assert_array_equal(grown["mask"] > 0, disc)
    assert not _changed(rgb, out)[~disc].any()  # only the grown hole changes
    assert _changed(rgb, out)[disc & (mask == 0)].mean() > 0.8  # and the ring around the mask too
    if mode == "native":  # the network filled the grown hole
        np.testing.assert_array_equal(grown["filled"], tiny_inpainter(rgb, disc.astype(np.float32))["filled"])

    feathered, out = run(mask_grow=2, mask_feather=5)
    hole = _disc_dilation(mask > 0, 2)
    band = _disc_dilation(hole, 5) & ~hole
    assert not _changed(rgb, out)[~(hole | band)].any()  # only the band changes outside the hole
    assert _changed(rgb, out)[band].mean() > 0.5
    fill = np.clip(np.rint(feathered["filled"]), 0, 255)
    low, high = np.minimum(fill, rgb), np.maximum(fill, rgb)
    assert ((out >= low) & (out <= high)).all()  # between the fill and the input
    np.testing.assert_array_equal(out[hole], fill[hole].astype(np.uint8))
    if mode == "crop":  # the crops hold the band: its fill is that of the crop around it
        top, left, bottom, right = highres.crop_boxes(hole | band, 16)[0]
        region = (slice(top, bottom), slice(left, right))
        crop = tiny_inpainter(rgb[region], hole[region].astype(np.float32))["filled"]
        inside = (hole | band)[region]
        np.testing.assert_array_equal(feathered["filled"][region][inside], crop[inside])


def test_a_highres_inpainter_refuses_an_inpainter_that_grows(tiny_checkpoint):
    with pytest.raises(ValueError, match="give mask_grow and mask_feather to the HighResInpainter"):
        HighResInpainter(Inpainter(store.load_generator(tiny_checkpoint), mask_grow=2), "crop")


@pytest.fixture()
def files(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    assert cv2.imwrite(str(folder / "img.png"), photo(30, 41)[..., ::-1])
    assert cv2.imwrite(str(tmp_path / "mask.png"), (box_mask(30, 41, 8, 10, 8, 9) * 255).astype(np.uint8))
    return tmp_path


@pytest.mark.parametrize("flags,fragments", [
    (["--mask_grow=-2"], ["--mask_grow must be a whole number of pixels, 0 or more", "'-2'"]),
    (["--mask_feather=1.5"], ["--mask_feather must be a whole number of pixels", "'1.5'"]),
    (["--mask_grow=42"], ["img.png: --mask_grow=42 is larger than the image (41x30)", "at most 41"]),
])
def test_cli_refuses_bad_values(files, tiny_checkpoint, flags, fragments):
    result = run_module("inpainting.inpaint", f"--checkpoint={tiny_checkpoint}",
                        f"--image={files / 'photos' / 'img.png'}", f"--mask={files / 'mask.png'}",
                        f"--output={files / 'out.png'}", *flags)
    assert_user_error(result, *fragments)
    assert not (files / "out.png").exists()


def test_cli_folder_mode_grows_and_feathers(files, tiny_checkpoint, tiny_inpainter):
    result = run_module("inpainting.inpaint", f"--checkpoint={tiny_checkpoint}", "--hr=crop",
                        f"--image_dir={files / 'photos'}", f"--mask={files / 'mask.png'}",
                        f"--output_dir={files / 'out'}", "--mask_grow=3", "--mask_feather=4")
    assert result.returncode == 0, result.stderr
    image = imageio.read_image(str(files / "photos" / "img.png"))
    mask = imageio.read_mask(str(files / "mask.png"), size=image.size)
    expected = HighResInpainter(tiny_inpainter, "crop", mask_grow=3, mask_feather=4)(image.rgb, mask)
    np.testing.assert_array_equal(
        cv2.imread(str(files / "out" / "img.png")),
        imageio.compose(image, expected["filled"], expected["mask"], expected["weight"]))
