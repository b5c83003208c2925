"""Tests of the Canny edge maps of inpainting.data.pipeline (the sketches of guided models) against OpenCV."""

import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from inpainting.data.edges import canny_edges, gray_levels
from inpainting.errors import DataError


def _message(excinfo, *parts):
    text = str(excinfo.value)
    assert "\n" not in text
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"


def _photo(name):
    """A photo shipped with scikit-image, as uint8 RGB."""
    import skimage.data

    path = os.path.join(os.path.dirname(skimage.data.__file__), name)
    return cv2.imread(path)[:, :, ::-1].copy()


def test_gray_levels_are_opencvs_for_every_colour():
    levels = np.arange(256, dtype=np.uint8)
    colours = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(
        4096, 4096, 3)
    expected = cv2.cvtColor(colours, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(gray_levels(colours).numpy(), expected)


@pytest.mark.parametrize("name", ["astronaut.png", "chelsea.png", "coins.png"])
def test_canny_edges_match_opencv_on_photos(name):
    rgb = _photo(name)
    expected = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 100, 200) > 0
    edges = canny_edges(rgb).numpy()
    assert edges.shape == (*rgb.shape[:2], 1) and edges.dtype == np.float32
    assert set(np.unique(edges)) == {0.0, 1.0}
    # Exactly the same edges (at least 99% of the pixels would be required).
    assert (edges[..., 0] == expected).mean() == 1.0, ((edges[..., 0] != expected).sum(),
                                                       expected.sum())
    assert expected.sum() > 1000


def test_canny_edges_match_opencv_on_small_images_thresholds_and_batches():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (3, 17, 23, 3), dtype=np.uint8)  # many ties and corners
    smooth = np.stack([cv2.GaussianBlur(image, (5, 5), 2) for image in noise])
    graph = tf.function(lambda images: canny_edges(images, 50, 150),
                        input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.uint8)])
    for images in (noise, smooth):
        expected = np.stack([cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 50, 150)
                             for image in images]) > 0
        assert expected.any()
        batched = canny_edges(images, 50, 150).numpy()
        assert batched.shape == (3, 17, 23, 1)
        np.testing.assert_array_equal(batched[..., 0], expected)
        np.testing.assert_array_equal(graph(images[None]).numpy()[0], batched)
    for low, high in ((0, 0), (10.7, 20.2), (300, 300)):
        image = noise[0]
        expected = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), low, high) > 0
        np.testing.assert_array_equal(canny_edges(image, low, high).numpy()[..., 0],
                                      expected)
    single = np.full((1, 1, 3), 7, np.uint8)
    np.testing.assert_array_equal(canny_edges(single).numpy(), np.zeros((1, 1, 1)))


def test_canny_edges_refuse_bad_inputs():
    with pytest.raises(DataError) as excinfo:
        canny_edges(np.zeros((8, 8, 3), np.float32))
    _message(excinfo, "uint8", "float32", "8-bit RGB")
    with pytest.raises(DataError) as excinfo:
        canny_edges(np.zeros((8, 8), np.uint8))
    _message(excinfo, "uint8 [..., H, W, 3]")
    with pytest.raises(DataError) as excinfo:
        canny_edges(np.zeros((8, 8, 3), np.uint8), 200, 100)
    _message(excinfo, "low=200", "high=100")
