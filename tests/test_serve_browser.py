"""End-to-end test of the inpainting web page in headless Chromium (Debian's, driven by Playwright).

A real `python -m inpainting.serve` process serves a tiny exported model; the browser opens a
photo, paints a stroke with the mouse, fills it, and downloads the result, which must equal the
photo outside the stroke and differ inside it: a small photo, and a 12-megapixel one (filled in
crops around the hole). The other tests open and save masks, zoom, pan, undo and redo, and check
the grow/feather preview and the request the page sends. Screenshots are kept in pytest's
temporary folder and, if the environment variable INPAINTING_TEST_ARTIFACTS names a folder,
copied there.

docs/serve.png is the screenshot serve.png of `test_screenshot_for_the_docs`, taken with the demo
model of `make demo` in place of the tiny one:

    export INPAINTING_TEST_SERVE_MODEL=runs/demo INPAINTING_TEST_ARTIFACTS=/tmp/shots
    .venv/bin/python -m pytest tests/test_serve_browser.py -k docs
    .venv/bin/python -c "from PIL import Image; Image.open('/tmp/shots/serve.png').convert('RGB').quantize(
        256, Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save('docs/serve.png', optimize=True)"

(256 colours keep the file small; the octree keeps the hole, grown and feathered colours apart.)
"""

import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import cv2
import httpx
import numpy as np
import pytest

from conftest import stop_process
from inpainting.export import job
from inpainting.inference import masktools

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH, HEIGHT = 128, 96
PHONE = (4000, 3000)  # width, height of a 12-megapixel phone photo
MAX_PIXELS = 12_000_000  # the phone photo fits, a 4000x3001 image does not
BRUSH = 24  # screen pixels


def _photo(path, width=WIDTH, height=HEIGHT):
    """Writes the astronaut of scikit-image's sample data, cropped to 4:3 and resized; returns BGR."""
    from skimage import data

    bgr = cv2.resize(data.astronaut()[:384, :, ::-1], (width, height), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), bgr)
    return bgr


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    """`python -m inpainting.serve` with a tiny exported model (or the checkpoint the environment
    variable INPAINTING_TEST_SERVE_MODEL names); yields its URL."""
    folder = tmp_path_factory.mktemp("serve_browser")
    export_dir = folder / "export"
    job.export(os.environ.get("INPAINTING_TEST_SERVE_MODEL") or tiny_checkpoint, export_dir, warmup=False)
    port = _free_port()
    log_path = folder / "server.log"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inpainting.serve", f"--model={export_dir}", f"--port={port}",
             f"--max_pixels={MAX_PIXELS}"], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"the server exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"the server did not start:\n{log_path.read_text()}"
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found: the web page's browser test needs Debian's chromium "
                    "(apt-get install chromium, which `make test` runs where it is root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh page of the server; fails the test on any script error of the page."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server)
    expect(page.locator("#model-info")).to_have_text(re.compile(r"^Model: DeepFill v1 SavedModel"))
    yield page
    context.close()
    assert not errors, errors


def _open(page, path):
    from playwright.sync_api import expect

    page.set_input_files("#file", str(path))
    expect(page.locator("#image-info")).to_have_text(re.compile(rf"^{path.name}: "))


def _download(page, selector):
    """Clicks `selector`; returns the download's suggested name and its image as cv2 reads it."""
    with page.expect_download() as download:
        page.click(selector)
    return download.value.suggested_filename, cv2.imread(download.value.path(), cv2.IMREAD_UNCHANGED)


def _stroke(page, start, end, width=WIDTH):
    """Drags the mouse over the image (`width` pixels wide) between two points given as fractions of
    its displayed size.

    Returns the stroke's two ends in image pixels and its radius in image pixels.
    """
    box = page.locator("#mask-layer").bounding_box()
    points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in (start, end)]
    page.mouse.move(*points[0])
    page.mouse.down()
    page.mouse.move(*points[1], steps=12)
    page.mouse.up()
    scale = width / box["width"]
    ends = [((x - box["x"]) * scale, (y - box["y"]) * scale) for x, y in points]
    return ends, BRUSH / 2 * scale


def _distance_to_segment(height, width, a, b):
    """Distance of every pixel centre to the segment a-b, float [H, W]."""
    rows, cols = np.mgrid[0:height, 0:width] + 0.5
    (ax, ay), (bx, by) = a, b
    t = ((cols - ax) * (bx - ax) + (rows - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)
    t = np.clip(t, 0, 1)
    return np.hypot(cols - (ax + t * (bx - ax)), rows - (ay + t * (by - ay)))


def _save_artifact(page, tmp_path, name):
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    folder = os.environ.get("INPAINTING_TEST_ARTIFACTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        shutil.copy(path, os.path.join(folder, name))
    return path


def test_paint_fill_and_download(page, tmp_path):
    from playwright.sync_api import expect

    photo = _photo(tmp_path / "photo.png")
    _open(page, tmp_path / "photo.png")
    expect(page.locator("#sketch-tool")).to_be_hidden()  # the tiny model is not guided
    page.locator("#brush-size").fill(str(BRUSH))
    (start, end), radius = _stroke(page, (0.25, 0.35), (0.7, 0.6))
    page.click("#fill")
    expect(page.locator("#result")).to_be_visible(timeout=60_000)
    expect(page.locator("#progress")).to_be_hidden()
    expect(page.locator("#timing")).to_have_text(re.compile(rf"^{WIDTH} × {HEIGHT} filled in"))
    expect(page.locator("#error")).to_be_hidden()

    name, result = _download(page, "#download")
    assert name == "photo-inpainted.png"
    assert result.shape == photo.shape
    changed = (result != photo).any(axis=2)
    distance = _distance_to_segment(HEIGHT, WIDTH, start, end)
    assert changed.any()
    assert not changed[distance > radius + 1.5].any(), "pixels outside the stroke changed"
    assert changed[distance < radius - 1.5].mean() > 0.9, "the stroke was not filled"

    page.locator("#split").fill("30")
    assert page.evaluate("getComputedStyle(document.getElementById('after')).clipPath") == \
        "inset(0px 0px 0px 30%)"
    expect(page.locator("#flow")).to_be_hidden()
    page.check("#show-flow")
    expect(page.locator("#flow")).to_be_visible()
    loaded = page.evaluate("['before', 'after', 'flow'].map(id => document.getElementById(id))"
                           ".map(img => [img.complete, img.naturalWidth, img.naturalHeight])")
    assert loaded == [[True, WIDTH, HEIGHT]] * 3
    _save_artifact(page, tmp_path, "serve_fill.png")


def test_errors_are_shown(page, tmp_path):
    from playwright.sync_api import expect

    _photo(tmp_path / "small.png")
    _open(page, tmp_path / "small.png")
    page.click("#fill")  # nothing painted yet: the page says so and sends nothing
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-text")).to_have_text(re.compile(r"^Paint the hole first"))

    _photo(tmp_path / "large.jpg", 4000, 3001)  # more pixels than the server's --max_pixels
    _open(page, tmp_path / "large.jpg")
    expect(page.locator("#error")).to_be_hidden()
    _stroke(page, (0.4, 0.4), (0.6, 0.5), 4000)
    page.click("#fill")
    # The page encodes the 12-megapixel mask and uploads the photo first: seconds on a busy machine.
    expect(page.locator("#error-text")).to_have_text(re.compile(
        rf"^The server refused the request \(413\): image 'large.jpg': the image is 4000x3001 = 12004000 "
        rf"pixels, more than this server's limit of {MAX_PIXELS} \(--max_pixels\)"), timeout=30_000)
    expect(page.locator("#result")).to_be_hidden()
    expect(page.locator("#fill")).to_be_enabled()
    _save_artifact(page, tmp_path, "serve_error.png")


def test_fill_a_12_megapixel_photo(page, tmp_path):
    """A phone photo with a small hole: filled in a crop around the hole, at the photo's size."""
    from playwright.sync_api import expect

    width, height = PHONE
    _photo(tmp_path / "phone.jpg", width, height)
    photo = cv2.imread(str(tmp_path / "phone.jpg"))  # the pixels as the server decodes them
    _open(page, tmp_path / "phone.jpg")
    expect(page.locator("#hr")).to_have_value("crop")  # the server's default
    page.locator("#brush-size").fill(str(BRUSH))
    (start, end), radius = _stroke(page, (0.45, 0.4), (0.5, 0.45), width)
    started = time.monotonic()
    page.click("#fill")
    expect(page.locator("#progress")).to_be_visible()
    # The server's stage, asked every 0.5 s once the upload has begun (seconds on a busy machine).
    expect(page.locator("#elapsed")).to_have_text(re.compile(
        r"^Filling… \d+\.\d s · (uploading|waiting|decoding|filling|encoding)"), timeout=30_000)
    expect(page.locator("#result")).to_be_visible(timeout=120_000)
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#timing")).to_have_text(re.compile(rf"^{width} × {height} filled in"))
    assert time.monotonic() - started < 60

    _, result = _download(page, "#download")
    assert result.shape == photo.shape == (height, width, 3)
    changed = (result != photo).any(axis=2)
    distance = _distance_to_segment(height, width, start, end)
    assert not changed[distance > radius + 1.5].any(), "pixels outside the stroke changed"
    assert changed[distance < radius - 1.5].mean() > 0.9, "the stroke was not filled"
    loaded = page.evaluate("['before', 'after', 'flow'].map(id => document.getElementById(id))"
                           ".map(img => [img.complete, img.naturalWidth, img.naturalHeight])")
    assert loaded == [[True, width, height]] * 3


def _alpha(page, layer="mask-layer"):
    """uint8 [H, W]: the opacity of a canvas of the page, at its own resolution."""
    height, width, alpha = page.evaluate("""(id) => {
        const layer = document.getElementById(id);
        const data = layer.getContext('2d').getImageData(0, 0, layer.width, layer.height).data;
        let text = '';
        for (let i = 3; i < data.length; i += 4) text += String.fromCharCode(data[i]);
        return [layer.height, layer.width, btoa(text)];
    }""", layer)
    return np.frombuffer(base64.b64decode(alpha), np.uint8).reshape(height, width)


def _painted(page):
    """bool [H, W]: the pixels of the hole layer painted more than half opaque (the hole the server
    reads)."""
    return _alpha(page) > 127


def test_undo_redo_and_the_grow_and_feather_sliders(page, tmp_path):
    from playwright.sync_api import expect

    _photo(tmp_path / "photo.png")
    _open(page, tmp_path / "photo.png")
    page.locator("#brush-size").fill(str(BRUSH))
    _stroke(page, (0.3, 0.4), (0.6, 0.5))
    stroke = _painted(page)
    assert stroke.mean() > 0.005  # a stroke of 24 screen pixels on an image shown enlarged
    expect(page.locator("#redo")).to_be_disabled()
    page.click("#undo")
    assert not _painted(page).any()
    page.click("#redo")
    np.testing.assert_array_equal(_painted(page), stroke)
    page.keyboard.press("Control+z")
    assert not _painted(page).any()
    page.keyboard.press("Control+Shift+Z")
    np.testing.assert_array_equal(_painted(page), stroke)
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+y")
    np.testing.assert_array_equal(_painted(page), stroke)

    page.locator("#mask-grow").fill("3")
    page.locator("#mask-feather").fill("5")
    expect(page.locator("#mask-grow-value")).to_have_text("3")
    # The preview shows the hole the server will fill and the band it will blend over.
    expect(page.locator("#preview-layer")).to_have_attribute("data-shows", "3 5")
    preview = _alpha(page, "preview-layer")
    grown = masktools.grow(stroke, 3) > 0.5
    weight = masktools.feather_weight(grown, 5)
    np.testing.assert_array_equal(preview == 255, grown & ~stroke)
    np.testing.assert_array_equal(preview > 0, (weight > 0) & ~stroke)
    band = (weight < 1) & (weight > 0)
    assert np.abs(preview[band] - np.rint(255 * weight[band])).max() <= 1
    page.keyboard.press("m")  # the hole overlay, preview included, hides and shows again
    expect(page.locator("#preview-layer")).to_be_hidden()
    expect(page.locator("#mask-layer")).to_be_hidden()
    page.click("#show-hole")
    expect(page.locator("#mask-layer")).to_be_visible()

    with page.expect_request(re.compile(r"/api/inpaint\?")) as request:
        page.click("#fill")
    assert "mask_grow=3" in request.value.url and "mask_feather=5" in request.value.url
    expect(page.locator("#result")).to_be_visible(timeout=60_000)
    expect(page.locator("#error")).to_be_hidden()


def _mask_file(path, mask):
    """Writes a mask image and returns its bytes."""
    cv2.imwrite(str(path), mask)
    return path.read_bytes()


def test_open_a_mask_fill_and_save_it(page, server, tmp_path):
    from playwright.sync_api import expect

    photo = _photo(tmp_path / "photo.png")
    _open(page, tmp_path / "photo.png")
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[20:50, 30:70] = 255
    cv2.circle(mask, (100, 70), 12, 255, -1)
    mask_bytes = _mask_file(tmp_path / "mask.png", mask)
    page.set_input_files("#mask-file", str(tmp_path / "mask.png"))
    expect(page.locator("#image-info")).to_have_text(re.compile(r"hole from mask\.png \(white = hole\)$"))
    np.testing.assert_array_equal(_painted(page), mask > 0)
    assert set(np.unique(_alpha(page))) == {0, 255}

    page.click("#fill")
    expect(page.locator("#result")).to_be_visible(timeout=60_000)
    expect(page.locator("#error")).to_be_hidden()
    _, result = _download(page, "#download")
    answer = httpx.post(f"{server}/api/inpaint", timeout=60,
                        files={"image": ("photo.png", (tmp_path / "photo.png").read_bytes()),
                               "mask": ("mask.png", mask_bytes)})
    assert answer.status_code == 200, answer.text
    np.testing.assert_array_equal(result, cv2.imdecode(np.frombuffer(answer.content, np.uint8),
                                                       cv2.IMREAD_UNCHANGED))
    changed = (result != photo).any(axis=2)
    assert not changed[mask == 0].any(), "pixels outside the mask changed"
    assert changed[mask > 0].mean() > 0.9, "the mask was not filled"

    name, saved = _download(page, "#save-mask")  # the hole as the fill sent it
    assert name == "photo-mask.png"
    assert saved.shape[:2] == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(saved.reshape(HEIGHT, WIDTH, -1)[..., 0], mask)

    # An alpha mask: opaque is hole whatever the colour (here black).
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[60:90, 10:40, 3] = 255
    rgba[5:15, 5:15, 3] = 100  # less than half opaque: not hole
    _mask_file(tmp_path / "alpha.png", rgba)
    page.set_input_files("#mask-file", str(tmp_path / "alpha.png"))
    expect(page.locator("#image-info")).to_have_text(re.compile(r"hole from alpha\.png \(opaque = hole\)$"))
    np.testing.assert_array_equal(_painted(page), rgba[..., 3] > 127)
    page.keyboard.press("Control+z")  # the opened mask is undone like a stroke
    np.testing.assert_array_equal(_painted(page), mask > 0)
    page.keyboard.press("Control+y")
    np.testing.assert_array_equal(_painted(page), rgba[..., 3] > 127)
    page.keyboard.press("Control+z")

    _mask_file(tmp_path / "small.png", mask[::2, ::2])  # another size: refused, the hole kept
    page.set_input_files("#mask-file", str(tmp_path / "small.png"))
    expect(page.locator("#error-text")).to_have_text(
        f"small.png is {WIDTH // 2} × {HEIGHT // 2} pixels but the image is {WIDTH} × {HEIGHT}: "
        "a mask must have the image's size.")
    np.testing.assert_array_equal(_painted(page), mask > 0)
    _save_artifact(page, tmp_path, "serve_mask.png")


def _scroll(page):
    return page.evaluate("(() => { const s = document.getElementById('stage');"
                         " return [s.scrollLeft, s.scrollTop]; })()")


def _view_origin(page):
    """The screen position of the view's top left corner inside its border, scrolled to 0."""
    left, top, scroll_left, scroll_top = page.evaluate("""(() => {
        const stage = document.getElementById('stage');
        const box = stage.getBoundingClientRect();
        return [box.left + stage.clientLeft, box.top + stage.clientTop, stage.scrollLeft, stage.scrollTop];
    })()""")
    return left - scroll_left, top - scroll_top


def test_zoom_pan_paint_undo_and_redo(page, tmp_path):
    """At 200 %, scrolled by a middle-button drag, a stroke lands under the pointer in image pixels."""
    from playwright.sync_api import expect

    width, height = 800, 600  # fitted at 1 (75 % of the window high): 2x scrolls both ways
    _photo(tmp_path / "photo.png", width, height)
    _open(page, tmp_path / "photo.png")
    page.locator("#brush-size").fill(str(BRUSH))
    page.select_option("#zoom", "2")
    box = page.locator("#mask-layer").bounding_box()
    assert (box["width"], box["height"]) == (2 * width, 2 * height)
    view = page.locator("#stage").bounding_box()
    assert view["width"] < 2 * width and view["height"] < 2 * height  # the view scrolls

    before = _scroll(page)
    middle = (view["x"] + view["width"] / 2, view["y"] + view["height"] / 2)
    page.mouse.move(*middle)
    page.mouse.down(button="middle")
    page.mouse.move(middle[0] - 100, middle[1] - 60, steps=5)
    page.mouse.up(button="middle")
    assert _scroll(page) == [before[0] + 100, before[1] + 60]
    assert not _painted(page).any()

    # The image point under the pointer: from the view's origin and scroll, 2 screen pixels each.
    x0, y0 = _view_origin(page)
    points = [(view["x"] + fx * view["width"], view["y"] + fy * view["height"])
              for fx, fy in ((0.3, 0.35), (0.65, 0.6))]
    page.mouse.move(*points[0])
    page.mouse.down()
    page.mouse.move(*points[1], steps=12)
    page.mouse.up()
    start, end = [((x - x0) / 2, (y - y0) / 2) for x, y in points]
    radius = BRUSH / 2 / 2
    stroke = _painted(page)
    distance = _distance_to_segment(height, width, start, end)
    assert not stroke[distance > radius + 1].any(), "paint landed away from the pointer"
    assert stroke[distance < radius - 1].all(), "the stroke is not under the pointer"

    name, saved = _download(page, "#save-mask")
    assert name == "photo-mask.png" and saved.shape[:2] == (height, width)
    gray = saved.reshape(height, width, -1)[..., 0]
    np.testing.assert_array_equal(gray > 127, stroke)
    assert np.abs(gray.astype(int) - _alpha(page)).max() <= 1

    page.keyboard.press("Control+z")
    assert not _painted(page).any()
    page.keyboard.press("Control+Shift+Z")
    np.testing.assert_array_equal(_painted(page), stroke)

    # The wheel zooms around the pointer: the image point under it stays.
    pointer = (view["x"] + 0.4 * view["width"], view["y"] + 0.5 * view["height"])
    page.mouse.move(*pointer)
    under = [(p - o) / 2 for p, o in zip(pointer, _view_origin(page))]
    page.mouse.wheel(0, -100)
    expect(page.locator("#zoom")).to_have_value("other")
    box = page.locator("#mask-layer").bounding_box()
    scale = box["width"] / width
    assert scale > 2
    x0, y0 = _view_origin(page)
    assert abs((pointer[0] - x0) / scale - under[0]) < 1 and abs((pointer[1] - y0) / scale - under[1]) < 1
    assert page.locator("#zoom-other").text_content() == f"{round(scale * 100)} %"

    page.keyboard.press("0")
    expect(page.locator("#zoom")).to_have_value("fit")
    page.keyboard.press("1")
    expect(page.locator("#zoom")).to_have_value("1")
    assert page.locator("#mask-layer").bounding_box()["width"] == width
    page.keyboard.press("+")
    expect(page.locator("#zoom")).to_have_value("2")
    np.testing.assert_array_equal(_painted(page), stroke)  # zooming leaves the hole as it is

    # Two fingers twice as far apart: 400 %, the image point between them stays between them, and
    # the paint of the first finger is taken back.
    touch = page.context.new_cdp_session(page)
    cx, cy = view["x"] + 0.5 * view["width"], view["y"] + 0.85 * view["height"]  # away from the stroke
    under = [(p - o) / 2 for p, o in zip((cx, cy), _view_origin(page))]

    def fingers(kind, apart):
        points = [{"x": cx - apart / 2, "y": cy, "id": 0}, {"x": cx + apart / 2, "y": cy, "id": 1}]
        touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": cx - 50, "y": cy, "id": 0}]})
    fingers("touchStart", 100)
    for apart in (150, 200):
        fingers("touchMove", apart)
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    expect(page.locator("#zoom")).to_have_value("4")
    x0, y0 = _view_origin(page)
    assert abs((cx - x0) / 4 - under[0]) < 0.5 and abs((cy - y0) / 4 - under[1]) < 0.5
    np.testing.assert_array_equal(_painted(page), stroke)
    touch.detach()


def test_screenshot_for_the_docs(page, tmp_path):
    """The page after a fill with Grow and Feather set: docs/serve.png (module docstring)."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 1440, "height": 900})
    _photo(tmp_path / "astronaut.png", 512, 384)
    _open(page, tmp_path / "astronaut.png")
    page.locator("#brush-size").fill("22")
    _stroke(page, (0.875, 0.19), (0.875, 0.56), 512)  # the pole behind the astronaut
    page.locator("#mask-grow").fill("4")
    page.locator("#mask-feather").fill("8")
    expect(page.locator("#preview-layer")).to_have_attribute("data-shows", "4 8")
    page.click("#fill")
    expect(page.locator("#result")).to_be_visible(timeout=60_000)
    expect(page.locator("#error")).to_be_hidden()
    page.mouse.move(0, 0)  # no brush outline in the picture
    _save_artifact(page, tmp_path, "serve.png")
