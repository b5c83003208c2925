"""Tests of the web server's API (`inpainting.serve`) with tiny models (a v1 checkpoint, a guided v2
SavedModel): health, results equal to the input outside the hole, images above a megapixel in the
high-resolution modes, every kind of bad upload, the limits, a broken model's 500, 50 concurrent
requests against a real uvicorn server, a client that disconnects mid-upload, and the command line's
errors."""

import base64
import concurrent.futures
import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
import zlib

import cv2
import httpx
import numpy as np
import pytest
import tensorflow as tf
import uvicorn

from conftest import assert_user_error, box_mask, photo, run_module, stop_process
from inpainting import imageio, serve
from inpainting.checkpoints import store
from inpainting.config import ModelConfig
from inpainting.export import job
from inpainting.inference import highres, runners
from inpainting.model.generator import Generator

with warnings.catch_warnings():  # Starlette >= 1.0 prefers the httpx2 fork; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

MAX_PIXELS = 64 * 64
MAX_UPLOAD_BYTES = 64 * 1024
BIG = (1000, 1300)  # height, width: 1.3 megapixels, above the 1-megapixel limit the server once had
BIG_MAX_PIXELS = 2_000_000


def _hole(height, width, top, left, h, w):
    """uint8 mask, 255 inside the box."""
    return (box_mask(height, width, top, left, h, w) * 255).astype(np.uint8)


def _png(array):
    """PNG bytes of an OpenCV-ordered (BGR / BGRA / gray) array."""
    return cv2.imencode(".png", array)[1].tobytes()


def _decode(data):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def _files(image, mask, sketch=None):
    files = {"image": ("photo.png", image, "image/png"), "mask": ("hole.png", mask, "image/png")}
    if sketch is not None:
        files["sketch"] = ("lines.png", sketch, "image/png")
    return files


@pytest.fixture(scope="module")
def runner(tiny_checkpoint):
    """The tiny v1 checkpoint's runner, whose fill outside the hole is the raw network output."""
    return runners.load(tiny_checkpoint)


@pytest.fixture(scope="module")
def client(runner):
    app = serve.create_app(runner, max_pixels=MAX_PIXELS, max_upload_bytes=MAX_UPLOAD_BYTES)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_health_describes_model_and_limits(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "kind": "checkpoint", "version": "v1", "guided": False,
                               "max_pixels": MAX_PIXELS, "max_upload_bytes": MAX_UPLOAD_BYTES,
                               "max_queue": serve.DEFAULT_MAX_QUEUE, "hr": "crop", "hr_modes": ["crop", "resize"]}


def test_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/{name}").status_code == 200, name
    assert name in page.text
    assert client.get("/api/nothing").json() == {"error": "Not Found"}
    wrong_method = client.get("/api/inpaint")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


@pytest.mark.parametrize("layout", ["rgb8", "gray16", "rgba8"])
def test_png_result_equals_input_outside_the_hole(client, runner, layout):
    rgb = photo(37, 53)  # not multiples of 8
    original = {"rgb8": rgb[..., ::-1],
                "gray16": cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257 + 3,
                "rgba8": np.dstack([rgb[..., ::-1], np.full((37, 53), 200, np.uint8)])}[layout]
    mask = _hole(37, 53, 10, 12, 9, 20)
    response = client.post("/api/inpaint", files=_files(_png(original), _png(mask)))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    result = _decode(response.content)
    assert result.dtype == original.dtype and result.shape == original.shape
    outside = mask == 0
    np.testing.assert_array_equal(result[outside], original[outside])
    changed = result[~outside] != original[~outside]
    assert changed.reshape(changed.shape[0], -1).any(axis=1).mean() > 0.9
    if layout == "rgb8":  # the hole holds the model's fill, rounded
        filled, _ = runner.run(rgb, (mask > 0).astype(np.float32))
        expected = np.clip(np.rint(filled), 0, 255).astype(np.uint8)[..., ::-1]
        np.testing.assert_array_equal(result[~outside], expected[~outside])


def test_json_result_has_the_image_the_flow_and_the_time(client, runner):
    rgb = photo(40, 48, seed=1)
    mask = _hole(40, 48, 8, 8, 16, 24)
    files = _files(_png(rgb[..., ::-1]), _png(mask))
    png = client.post("/api/inpaint", files=files).content
    response = client.post("/api/inpaint?include=flow", files=files)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["width"] == 48 and body["height"] == 40 and 0 <= body["seconds"] < 60
    np.testing.assert_array_equal(_decode(base64.b64decode(body["image"])), _decode(png))
    _, flow = runner.run(rgb, (mask > 0).astype(np.float32))
    np.testing.assert_array_equal(_decode(base64.b64decode(body["flow"]))[..., ::-1], flow)


def test_empty_mask_gives_the_input(client):
    original = photo(24, 40, seed=2)[..., ::-1]
    response = client.post("/api/inpaint", files=_files(_png(original), _png(np.zeros((24, 40), np.uint8))))
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(_decode(response.content), original)


def test_grow_and_feather_change_the_request(client, runner):
    rgb = photo(37, 53, seed=2)
    mask = _hole(37, 53, 10, 12, 9, 20)
    files = _files(_png(rgb[..., ::-1]), _png(mask))
    response = client.post("/api/inpaint", files=files, params={"mask_grow": 3, "mask_feather": 4})
    assert response.status_code == 200, response.text
    result = _decode(response.content)
    expected = serve.fill(runner, rgb, (mask > 0).astype(np.float32), mask_grow=3, mask_feather=4)
    loaded = imageio.LoadedImage(rgb=rgb, original=rgb[..., ::-1].copy(), path="photo.png")
    np.testing.assert_array_equal(
        result, imageio.compose(loaded, expected["filled"], expected["mask"], expected["weight"]))
    # More than the painted hole changed, the fill blended into the photo around it.
    plain = _decode(client.post("/api/inpaint", files=files).content)
    assert (result != plain).any(axis=-1)[mask == 0].sum() > 50


@pytest.fixture(scope="module")
def big_client(runner):
    """A server whose limits take images above a megapixel."""
    app = serve.create_app(runner, max_pixels=BIG_MAX_PIXELS, max_upload_bytes=16 * 2**20)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def big_photo():
    """(RGB, mask with a 40x60 hole and a 30x30 one far apart) at 1300x1000."""
    rgb = photo(*BIG, seed=4)
    mask = _hole(*BIG, 300, 500, 40, 60) | _hole(*BIG, 800, 1100, 30, 30)
    return rgb, mask


def _expected(runner, rgb, mask, mode):
    """What `inpainting.inpaint --hr=MODE` makes of an 8-bit RGB image: the library's fill, rounded,
    in the hole."""
    hole = mask > 0
    filled = highres.HighResInpainter(runner.inpainter, mode)(rgb, hole.astype(np.float32))["filled"]
    return np.where(hole[..., None], np.clip(np.rint(filled), 0, 255), rgb).astype(np.uint8)


def test_images_above_a_megapixel_are_filled_in_both_modes(big_client, runner, big_photo):
    rgb, mask = big_photo
    files = _files(_png(rgb[..., ::-1]), _png(mask))
    results = {}
    for mode in ("crop", "resize"):
        response = big_client.post("/api/inpaint", files=files, params={"hr": mode})
        assert response.status_code == 200, response.text
        result = _decode(response.content)[..., ::-1]
        assert result.shape == rgb.shape  # the input's size, not the working size
        outside = mask == 0
        np.testing.assert_array_equal(result[outside], rgb[outside])
        assert (result[~outside] != rgb[~outside]).any(axis=1).mean() > 0.9
        np.testing.assert_array_equal(result, _expected(runner, rgb, mask, mode))
        results[mode] = result
    default = _decode(big_client.post("/api/inpaint", files=files).content)[..., ::-1]
    np.testing.assert_array_equal(default, results["crop"])  # crop unless asked otherwise
    # Crop fills at full resolution, resize at 512 pixels across: the fills differ.
    hole = mask > 0
    assert (results["crop"][hole] != results["resize"][hole]).any(axis=1).mean() > 0.9
    # Each crop sees only its own surroundings: the crop fill equals the model's fill of that crop.
    top, left, bottom, right = highres.crop_boxes(hole)[0]
    region = (slice(top, bottom), slice(left, right))
    filled, _ = runner.run(rgb[region], hole[region].astype(np.float32))
    inside = hole[region]
    np.testing.assert_array_equal(results["crop"][region][inside],
                                  np.clip(np.rint(filled), 0, 255).astype(np.uint8)[inside])


def test_server_flag_sets_the_default_mode(runner, big_photo):
    rgb, mask = big_photo
    app = serve.create_app(runner, max_pixels=BIG_MAX_PIXELS, max_upload_bytes=16 * 2**20, hr="resize")
    with TestClient(app) as resize_client:
        assert resize_client.get("/api/health").json()["hr"] == "resize"
        response = resize_client.post("/api/inpaint", files=_files(_png(rgb[..., ::-1]), _png(mask)))
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(_decode(response.content)[..., ::-1],
                                  _expected(runner, rgb, mask, "resize"))


def test_the_mode_does_not_matter_up_to_a_megapixel(client, runner):
    """Images the model fills comfortably are filled whole at full resolution in either mode."""
    rgb = photo(40, 56, seed=5)
    mask = _hole(40, 56, 4, 4, 6, 6) | _hole(40, 56, 30, 44, 6, 8)
    filled, _ = runner.run(rgb, (mask > 0).astype(np.float32))
    expected = np.where(mask[..., None] > 0, np.clip(np.rint(filled), 0, 255), rgb).astype(np.uint8)
    for mode in ("crop", "resize"):
        response = client.post("/api/inpaint", files=_files(_png(rgb[..., ::-1]), _png(mask)),
                               params={"hr": mode})
        assert response.status_code == 200, response.text
        np.testing.assert_array_equal(_decode(response.content)[..., ::-1], expected)


def test_json_result_of_a_large_image_has_its_size_and_a_flow(big_client, big_photo):
    rgb, mask = big_photo
    response = big_client.post("/api/inpaint?include=flow", files=_files(_png(rgb[..., ::-1]), _png(mask)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["height"], body["width"]) == BIG
    assert _decode(base64.b64decode(body["image"])).shape == (*BIG, 3)
    flow = _decode(base64.b64decode(body["flow"]))
    assert flow.shape == (*BIG, 3)
    boxes = highres.crop_boxes(mask > 0)
    outside = np.ones(BIG, bool)
    for top, left, bottom, right in boxes:
        outside[top:bottom, left:right] = False
    assert (flow[outside] == highres.NO_FLOW).all()  # no attention outside the crops


def test_above_max_pixels_is_still_refused(big_client):
    height, width = 1001, 2000  # 2002000 pixels, just above BIG_MAX_PIXELS; flat, so a small PNG
    image = _png(np.zeros((height, width, 3), np.uint8))
    response = big_client.post("/api/inpaint", files=_files(image, _png(np.zeros((height, width), np.uint8))),
                               params={"hr": "crop"})
    assert response.status_code == 413
    assert response.json()["error"].startswith(
        f"image 'photo.png': the image is 2000x1001 = 2002000 pixels, more than this server's limit of "
        f"{BIG_MAX_PIXELS} (--max_pixels)")


def _png_header(width, height):
    """The start of a PNG file claiming width x height RGB pixels: its header and one small data
    chunk (a few rows of zeros), far too little for the size it claims."""
    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(4 * (3 * width + 1)))))


def test_decompression_bombs_are_refused_from_their_header(big_client):
    mask = _png(np.zeros((8, 8), np.uint8))
    bomb = big_client.post("/api/inpaint", files=_files(_png_header(20000, 20000), mask))
    assert bomb.status_code == 413
    assert bomb.json()["error"].startswith("image 'photo.png': the image has far more pixels than this "
                                           f"server's limit of {BIG_MAX_PIXELS} (--max_pixels)")
    large = big_client.post("/api/inpaint", files=_files(_png_header(1500, 1500), mask))
    assert large.status_code == 413
    assert "the image is 1500x1500 = 2250000 pixels" in large.json()["error"]


def _bad_requests():
    """(name, request keyword arguments, expected status, fragments of the error) per bad upload."""
    image = _png(photo(20, 30)[..., ::-1])
    mask = _png(_hole(20, 30, 5, 5, 8, 8))
    big = _png(photo(65, 64)[..., ::-1])  # 4160 pixels > MAX_PIXELS
    noise = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)  # ~77 KB as PNG
    return [
        ("missing mask", {"files": {"image": ("a.png", image)}}, 400, ["missing file 'mask'"]),
        ("missing image", {"files": {"mask": ("m.png", mask)}}, 400, ["missing file 'image'"]),
        ("not an image", {"files": _files(b"hello, world", mask)}, 400,
         ["image 'photo.png'", "cannot decode as an image", "supported: png"]),
        ("corrupt png", {"files": _files(image[:len(image) // 2], mask)}, 400,
         ["image 'photo.png'", "cannot decode as an image"]),
        ("corrupt mask", {"files": _files(image, mask[:40])}, 400, ["mask 'hole.png'", "cannot decode"]),
        ("empty file", {"files": _files(b"", mask)}, 400, ["image 'photo.png'", "empty"]),
        ("mask size", {"files": _files(image, _png(np.zeros((20, 31), np.uint8)))}, 400,
         ["mask 'hole.png'", "mask is 31x20 but the image is 30x20"]),
        ("too many pixels", {"files": _files(big, _png(np.zeros((65, 64), np.uint8)))}, 413,
         ["image 'photo.png'", "64x65 = 4160 pixels", f"limit of {MAX_PIXELS}", "--max_pixels"]),
        ("upload too large", {"files": _files(_png(noise), mask)}, 413, ["--max_upload_mb", "limit of 64 KB"]),
        ("sketch for an unguided model", {"files": _files(image, mask, mask)}, 400,
         ["sketch 'lines.png'", "not guided"]),
        ("unknown field", {"files": {**_files(image, mask), "masks": ("m.png", mask)}}, 400,
         ["unexpected form field 'masks'"]),
        ("text instead of a file", {"files": {"image": ("a.png", image)}, "data": {"mask": "x"}}, 400,
         ["'mask' must be a file upload"]),
        ("not multipart", {"content": b"{}", "headers": {"content-type": "application/json"}}, 400,
         ["multipart/form-data", "application/json"]),
        ("bad include", {"files": _files(image, mask), "params": {"include": "png"}}, 400,
         ["include='png'", "include=flow"]),
        ("unknown mode", {"files": _files(image, mask), "params": {"hr": "native"}}, 400,
         ["unknown hr='native'", "hr=crop", "hr=resize"]),
        ("negative grow", {"files": _files(image, mask), "params": {"mask_grow": "-1"}}, 400,
         ["mask_grow must be a whole number of pixels, 0 or more, got '-1'", "leave it out"]),
        ("fractional feather", {"files": _files(image, mask), "params": {"mask_feather": "2.5"}}, 400,
         ["mask_feather must be a whole number of pixels", "'2.5'"]),
        ("grow larger than the image", {"files": _files(image, mask), "params": {"mask_grow": "31"}}, 400,
         ["image 'photo.png': mask_grow=31 is larger than the image (30x20)", "at most 30 pixels"]),
    ]


@pytest.mark.parametrize("name, kwargs, status, fragments", _bad_requests(),
                         ids=[case[0] for case in _bad_requests()])
def test_bad_uploads_get_clear_errors(client, name, kwargs, status, fragments):
    response = client.post("/api/inpaint", **kwargs)
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message
    assert "/tmp" not in message and "inpainting-serve-" not in message  # no temporary paths


def test_streamed_upload_over_the_limit_is_refused(client):
    def chunks():  # no Content-Length: the limit is counted while reading
        for _ in range(20):
            yield b"x" * 8192

    response = client.post("/api/inpaint", content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=abc"})
    assert response.status_code == 413 and "--max_upload_mb" in response.json()["error"]


@pytest.fixture(scope="module")
def guided_runner(tmp_path_factory):
    """A tiny guided v2 model, exported: its SavedModel's `inpaint` signature takes a sketch."""
    tf.keras.utils.set_random_seed(2)
    generator = Generator(ModelConfig(version="v2", cnum=4, image_size=(64, 64), local_size=(32, 32),
                                      guided=True))
    generator.build()
    for weight in generator.weights:  # at its initial scale the tiny network's fill is a flat grey
        weight.assign(weight * 3)
    folder = tmp_path_factory.mktemp("guided")
    store.save(folder / "checkpoint", generator)
    job.export(folder / "checkpoint", folder / "export", warmup=False)
    return runners.load(folder / "export")


def test_guided_model_follows_the_sketch(guided_runner):
    with TestClient(serve.create_app(guided_runner)) as guided:
        assert guided.get("/api/health").json() == {
            "status": "ok", "kind": "saved_model", "version": "v2", "guided": True,
            "max_pixels": serve.DEFAULT_MAX_PIXELS, "max_upload_bytes": serve.DEFAULT_MAX_UPLOAD_MB * 2**20,
            "max_queue": serve.DEFAULT_MAX_QUEUE, "hr": "crop", "hr_modes": ["crop", "resize"]}
        original = photo(32, 40, seed=3)[..., ::-1]
        mask = _hole(32, 40, 8, 8, 16, 24)
        lines = np.zeros((32, 40), np.uint8)
        lines[15:17, :] = 255  # a horizontal line through the hole
        plain = guided.post("/api/inpaint", files=_files(_png(original), _png(mask)))
        sketched = guided.post("/api/inpaint", files=_files(_png(original), _png(mask), _png(lines)))
        mismatch = guided.post("/api/inpaint", files=_files(_png(original), _png(mask), _png(lines[:8])))
    assert plain.status_code == 200 and sketched.status_code == 200, sketched.text
    plain, sketched = _decode(plain.content), _decode(sketched.content)
    outside = mask == 0
    np.testing.assert_array_equal(sketched[outside], original[outside])
    assert (sketched[~outside] != plain[~outside]).mean() > 0.5  # the lines change the fill
    assert mismatch.status_code == 400
    assert "sketch 'lines.png': mask is 40x8 but the image is 40x32" in mismatch.json()["error"]


def test_broken_model_gives_500_without_details(tiny_checkpoint, tmp_path, caplog):
    """A diverged checkpoint (NaN weights) fails inside the server: the client gets a generic 500."""
    generator = store.load_generator(tiny_checkpoint)
    for weight in generator.weights:
        weight.assign(np.full(weight.shape, np.nan, weight.dtype))
    store.save(tmp_path / "nan", generator)
    app = serve.create_app(runners.load(tmp_path / "nan"))
    with TestClient(app, raise_server_exceptions=False) as broken, caplog.at_level(logging.ERROR):
        response = broken.post("/api/inpaint", files=_files(_png(photo(16, 16)), _png(_hole(16, 16, 4, 4, 8, 8))))
    assert response.status_code == 500
    assert response.json() == {"error": serve.INTERNAL_ERROR}
    assert any(record.exc_info and "NaN" in str(record.exc_info[1]) for record in caplog.records)


class OverlapCounter:
    """The real runner, counting its calls and the most that ran at the same time."""

    def __init__(self, runner):
        self.runner = runner
        self.calls = self.running = self.most = 0
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.runner, name)

    def run(self, *args):
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return self.runner.run(*args)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def counted_runner(runner):
    return OverlapCounter(runner)


@contextlib.contextmanager
def _running(app):
    """Serves `app` with a real uvicorn server in a thread on a free port; yields its base URL."""
    sock = serve.listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture
def live_server(counted_runner):
    """A real uvicorn server in a thread on a free port; yields its base URL."""
    app = serve.create_app(counted_runner, max_pixels=MAX_PIXELS, max_upload_bytes=MAX_UPLOAD_BYTES)
    with _running(app) as url:
        yield url


def test_concurrent_requests_against_a_real_server(live_server, runner, counted_runner):
    """50 requests from 8 threads: PNG and JSON answers, and some bad uploads, all answered right,
    with the model running one request at a time."""
    cases = []
    for seed in range(5):
        height, width = 24 + 4 * seed, 40 - 3 * seed
        rgb = photo(height, width, seed)
        mask = _hole(height, width, 4 + seed, 6, 10, 12)
        filled, _ = runner.run(rgb, (mask > 0).astype(np.float32))
        expected = np.where(mask[..., None] > 0, np.clip(np.rint(filled), 0, 255), rgb).astype(np.uint8)
        cases.append((_files(_png(rgb[..., ::-1]), _png(mask)), expected[..., ::-1]))
    mismatch = _files(cases[0][0]["image"][1], _png(np.zeros((5, 5), np.uint8)))

    def request(i):
        with httpx.Client(base_url=live_server, timeout=60) as http:
            if i % 10 == 9:
                response = http.post("/api/inpaint", files=mismatch)
                return response.status_code == 400 and "mask is 5x5" in response.json()["error"]
            files, expected = cases[i % len(cases)]
            if i % 2:
                response = http.post("/api/inpaint", files=files, params={"include": "flow"})
                data = base64.b64decode(response.json()["image"]) if response.status_code == 200 else b""
            else:
                response = http.post("/api/inpaint", files=files)
                data = response.content
            return response.status_code == 200 and np.array_equal(_decode(data), expected)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(request, range(50)))
    assert all(results), [i for i, ok in enumerate(results) if not ok]
    assert counted_runner.calls == 45 and counted_runner.most == 1


class Gate:
    """The real runner, each call waiting until the test lets it through."""

    def __init__(self, runner):
        self.runner = runner
        self.entered = threading.Semaphore(0)
        self.passes = threading.Semaphore(0)

    def __getattr__(self, name):
        return getattr(self.runner, name)

    def run(self, *args):
        self.entered.release()
        if not self.passes.acquire(timeout=60):
            raise TimeoutError("the test did not let the call through")
        return self.runner.run(*args)


def test_progress_of_a_running_request(runner, big_photo):
    rgb, mask = big_photo
    boxes = highres.crop_boxes(mask > 0)
    assert len(boxes) == 2
    gate = Gate(runner)
    app = serve.create_app(gate, max_pixels=BIG_MAX_PIXELS, max_upload_bytes=16 * 2**20)
    big = _files(_png(rgb[..., ::-1]), _png(mask))
    small = _files(_png(photo(16, 16)[..., ::-1]), _png(_hole(16, 16, 4, 4, 8, 8)))
    with _running(app) as url, httpx.Client(base_url=url, timeout=60) as http, \
            concurrent.futures.ThreadPoolExecutor(2) as pool:
        def progress(job):
            response = http.get("/api/progress", params={"job": job})
            return response.status_code, response.json()

        first = pool.submit(http.post, "/api/inpaint", files=big, params={"job": "first-job"})
        assert gate.entered.acquire(timeout=60)  # the first crop is being inpainted
        status, body = progress("first-job")
        assert status == 200 and 0 <= body.pop("seconds") < 60
        assert body == {"stage": "filling", "mode": "crop", "done": 0, "total": None, "piece": None}
        again = http.post("/api/inpaint", files=small, params={"job": "first-job"})
        assert again.status_code == 400 and "job='first-job' is not a new job id" in again.json()["error"]
        second = pool.submit(http.post, "/api/inpaint", files=small, params={"job": "second-job"})
        deadline = time.monotonic() + 30
        while progress("second-job")[1].get("stage") != "queued":
            assert time.monotonic() < deadline, progress("second-job")
            time.sleep(0.05)
        gate.passes.release()
        assert gate.entered.acquire(timeout=60)  # the second crop
        top, left, bottom, right = boxes[0]
        status, body = progress("first-job")
        assert (body["stage"], body["done"], body["total"]) == ("filling", 1, 2)
        assert body["piece"] == f"{right - left}x{bottom - top} at x={left}, y={top}"
        for _ in range(2):  # the second crop, and the second request's image
            gate.passes.release()
        assert first.result(60).status_code == 200 and second.result(60).status_code == 200
        status, body = progress("first-job")
        assert status == 404 and "no running request with job='first-job'" in body["error"]
        bad = http.post("/api/inpaint", files=small, params={"job": "../x"})
        assert bad.status_code == 400 and "send a fresh random id" in bad.json()["error"]


def _wait_until(condition, what, seconds=30):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.05)


def _raw_request(url, files, params):
    """The bytes of an HTTP/1.1 POST /api/inpaint request with these files, for a raw socket."""
    request = httpx.Request("POST", f"{url}/api/inpaint", files=files, params=params)
    head = [f"POST {request.url.raw_path.decode()} HTTP/1.1"]
    head += [f"{key}: {value}" for key, value in request.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + request.read()


def test_a_full_queue_is_refused_with_503_and_a_request_whose_client_left_is_dropped(runner, caplog):
    """--max_queue=2 with the model held: two requests wait (one from a client that then goes away),
    the surplus gets 503 with Retry-After before its upload is read, the two others are answered,
    and the model never fills the one whose client left."""
    gate = Gate(runner)
    app = serve.create_app(gate, max_pixels=MAX_PIXELS, max_upload_bytes=MAX_UPLOAD_BYTES, max_queue=2)
    small = _files(_png(photo(16, 16)[..., ::-1]), _png(_hole(16, 16, 4, 4, 8, 8)))
    with caplog.at_level(logging.WARNING, logger=serve.logger.name), _running(app) as url, \
            httpx.Client(base_url=url, timeout=60) as http, concurrent.futures.ThreadPoolExecutor(2) as pool:
        def stage(job):
            return http.get("/api/progress", params={"job": job}).json().get("stage")

        first = pool.submit(http.post, "/api/inpaint", files=small, params={"job": "first-job"})
        assert gate.entered.acquire(timeout=60)  # on the model thread: out of the queue
        second = pool.submit(http.post, "/api/inpaint", files=small, params={"job": "second-job"})
        _wait_until(lambda: stage("second-job") == "queued", "the second request's queueing")
        leaving = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)
        try:
            leaving.sendall(_raw_request(url, small, {"job": "third-job"}))
            _wait_until(lambda: stage("third-job") == "queued", "the third request's queueing")
            for _ in range(3):  # refused at once, while two wait and one is filled
                busy = http.post("/api/inpaint", files=small)
                assert busy.status_code == 503
                retry = int(busy.headers["retry-after"])
                assert retry >= 1 and busy.json() == {"error": "this server is busy: 2 requests are waiting for "
                                                               f"the model already (--max_queue); retry in {retry} s"}
            port = leaving.getsockname()[1]
        finally:
            leaving.close()  # gone while queued
        gate.passes.release()  # the first request's fill
        assert first.result(60).status_code == 200
        assert gate.entered.acquire(timeout=60)  # the second's
        gate.passes.release()
        assert second.result(60).status_code == 200
        _wait_until(lambda: stage("third-job") is None, "the end of the third request")  # 404: gone
        assert not gate.entered.acquire(timeout=0.5)  # the model never started on the third
        gate.passes.release()
        assert http.post("/api/inpaint", files=small).status_code == 200  # the queue has room again
    lines = [record.getMessage() for record in caplog.records if "disconnected" in record.getMessage()]
    assert lines == [f"POST /api/inpaint from 127.0.0.1:{port}: the client disconnected while its request "
                     "was queued; it was dropped before the model filled it"], lines


def test_command_line_errors(tmp_path):
    assert_user_error(run_module("inpainting.serve"), "--model is required")
    assert_user_error(run_module("inpainting.serve", f"--model={tmp_path / 'missing'}"),
                      "no such file or directory")
    assert_user_error(run_module("inpainting.serve", f"--model={tmp_path}", "--max_pixels=0"),
                      "--max_pixels must be positive")
    assert_user_error(run_module("inpainting.serve", f"--model={tmp_path}", "--hr=native"),
                      "--hr must be crop or resize, got 'native'")
    assert_user_error(run_module("inpainting.serve", f"--model={tmp_path}", "--max_queue=0"),
                      "--max_queue must be positive (requests waiting for the model), got 0")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_user_error(run_module("inpainting.serve", f"--model={tmp_path}", f"--port={port}"),
                          f"cannot listen on 127.0.0.1:{port}", "--port")


def test_command_line_refuses_a_folder_without_a_model(tmp_path):
    (tmp_path / "not_a_model").mkdir()
    (tmp_path / "not_a_model" / "notes.txt").write_text("no model here")
    assert_user_error(run_module("inpainting.serve", f"--model={tmp_path / 'not_a_model'}", "--port=0"),
                      "not_a_model")


@contextlib.contextmanager
def _server_process(model, log_path, *flags):
    """`python -m inpainting.serve --model=model --port=0 flags...` logging into `log_path`; yields
    (the process, its port) once it serves, and stops it at the end (if the test has not)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "inpainting.serve", f"--model={model}", "--port=0",
                                    *flags], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 180
        while not (found := re.search(r"on http://127\.0\.0\.1:(\d+)/", log_path.read_text())):
            assert process.poll() is None, f"the server exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"the server did not start:\n{log_path.read_text()}"
            time.sleep(0.2)
        yield process, int(found.group(1))
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def served(tiny_checkpoint, tmp_path_factory):
    """`python -m inpainting.serve --hr=resize` with the tiny checkpoint on a free port; yields (host,
    port, log path) and stops the server."""
    log_path = tmp_path_factory.mktemp("served") / "server.log"
    with _server_process(tiny_checkpoint, log_path, "--hr=resize") as (_, port):
        yield "127.0.0.1", port, log_path


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_stop_the_server_quietly(tiny_checkpoint, tmp_path, signum):
    log_path = tmp_path / "server.log"
    with _server_process(tiny_checkpoint, log_path) as (process, port):
        assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10).status_code == 200
        process.send_signal(signum)
        assert process.wait(60) == 0, log_path.read_text()
    log = log_path.read_text()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log and "CancelledError" not in log, log
    assert log.rstrip().endswith("Finished server process [%d]" % process.pid), log


def test_command_line_serves_with_its_flags(served):
    host, port, _ = served
    health = httpx.get(f"http://{host}:{port}/api/health", timeout=10).json()
    assert health["hr"] == "resize" and health["max_pixels"] == serve.DEFAULT_MAX_PIXELS == 8192 * 8192


def test_client_disconnecting_mid_upload_logs_one_warning(served):
    host, port, log_path = served
    start = len(log_path.read_text())
    part = (b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="photo.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + _png(photo(64, 64))[:500])
    head = (f"POST /api/inpaint HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 100000\r\n"
            "Content-Type: multipart/form-data; boundary=xyz\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=10) as client:
        client.sendall(head + part)
        time.sleep(0.5)  # the server is now reading the body
    deadline = time.monotonic() + 30
    while "disconnect" not in (new := log_path.read_text()[start:]) and "Traceback" not in new:
        assert time.monotonic() < deadline, f"nothing logged for the disconnect:\n{new}"
        time.sleep(0.1)
    time.sleep(0.5)  # anything else the server logs about the request
    assert httpx.get(f"http://{host}:{port}/api/health", timeout=10).status_code == 200
    new = log_path.read_text()[start:]
    assert "Traceback" not in new, new
    lines = [line for line in new.splitlines() if "disconnect" in line]
    assert len(lines) == 1 and lines[0].startswith("W"), new
    assert re.search(r"\] POST /api/inpaint from 127\.0\.0\.1:\d+: the client disconnected before its "
                     r"upload was complete; nothing was inpainted$", lines[0]), lines[0]
