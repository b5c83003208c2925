"""An interactive inpainting web page and a small JSON API around one model.

    python -m inpainting.serve --model=exported/places2 [--host=127.0.0.1 --port=8080] [--hr=crop]

--model is an export folder of `export.py` (its largest version is served), one version folder,
or a checkpoint directory. Open the printed address in a browser: open an image, paint the hole,
press Fill, compare before and after, overlay the attention flow, download the result.

Images of up to `NATIVE_PIXELS` (a megapixel) are inpainted whole at full resolution. Larger ones,
e.g. 12-megapixel phone photos, use a high-resolution mode of `inpainting.inference.highres` (as
`inpainting.inpaint --hr` does): `crop` (crops around the holes at full resolution, the default
of --hr) or `resize` (the whole image at `highres.DEFAULT_WORK_SIZE` pixels across, the fill
enlarged into the holes).

API (the page uses it; so can curl):

`GET /api/health`
    JSON: `status` ("ok"), `kind` ("saved_model" or "checkpoint"), `version` ("v1", "v2", or
    null for a SavedModel exported without its config), `guided` (whether the model takes a
    sketch), `max_pixels`, `max_upload_bytes` and `max_queue` (the limits below), `hr` (the default
    high-resolution mode) and `hr_modes` (the modes a request may choose).
`POST /api/inpaint`
    multipart/form-data with the files `image` and `mask` (white = hole, read like the mask of
    `inpainting.inpaint`, same size as the image) and, for guided models, optionally `sketch`
    (white lines on black). Answers the result as `image/png`: the input's pixels outside the hole,
    its bit depth, channels and alpha kept. With `?include=flow` it answers JSON instead:
    `image` and `flow` (base64 PNGs: the result and the colour-coded attention flow), `width`,
    `height` and `seconds` (the time the model took). `?hr=crop` or `?hr=resize` chooses the
    high-resolution mode of this request (default: --hr). `?mask_grow=N` grows the hole by N
    pixels (a disc) before it is filled, `?mask_feather=N` blends the fill into the image over a
    band of N pixels around it (`inference.masktools`; both 0 by default, at most the image's
    long side). `?job=ID` (8 to 64 letters, digits, `-`, `_`; a new random one per request)
    makes its progress readable while it runs:
`GET /api/progress?job=ID`
    JSON: `stage` ("receiving" the upload, "queued" behind other requests, "decoding",
    "filling", "encoding"), `mode` ("native", "crop" or "resize", once decoded), `done` and
    `total` (inpainted pieces: crops, or the one image; `total` is null until the first is
    done), `piece` (the last one, e.g. "420x380 at x=1200, y=300") and `seconds` since the
    request arrived. 404 before the server has the request and after it is answered.

Errors are JSON `{"error": "..."}`: 400 for a bad upload (a missing field, a file that is not an
image, a mask of another size, an unknown hr, a mask_grow or mask_feather that is not a whole
number of 0 up to the image's long side), 413 for a request larger than --max_upload_mb or an
image of more than --max_pixels pixels, 503 with `Retry-After` (seconds) while --max_queue requests
wait for the model already, 500 (details in the server's log only) for anything else.
Ctrl-C or SIGTERM stops the server after the requests it is answering, with status 0. A client that
disconnects before its upload is complete gets one warning line in the log. Uploads
are decoded from a private temporary folder that is deleted after each request. Decoding, the
model and encoding run on one worker thread, one request at a time, off the event loop; other
requests queue with their uploads still compressed, so one decoded image is in memory at a time,
and at most --max_queue of them wait (being uploaded or queued), in the order they came. A queued
request whose client has disconnected is dropped when its turn comes, before the model fills it,
with one warning line in the log.
"""

import asyncio
import base64
import concurrent.futures
import contextlib
import io
import logging
import math
import os
import re
import signal
import socket
import sys
import tempfile
import time

import cv2
import numpy as np
from absl import app, flags

from inpainting import extras

for _module in ("starlette", "multipart", "uvicorn"):
    extras.require(_module, "serve", "python -m inpainting.serve")

from starlette.applications import Starlette  # noqa: E402
from starlette.datastructures import UploadFile  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.formparsers import MultiPartException, MultiPartParser  # noqa: E402
from starlette.requests import ClientDisconnect  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402

from inpainting import imageio
from inpainting.errors import ImageError, InpaintingError
from inpainting.files import describe_size
from inpainting.inference import highres, masktools

FLAGS = flags.FLAGS
DEFAULT_MAX_UPLOAD_MB = 32
# Requests waiting for the model: each holds its upload (up to --max_upload_mb) in memory.
DEFAULT_MAX_QUEUE = 8
DEFAULT_MAX_PIXELS = 8192 * 8192  # 67 megapixels; README.md has the memory measured at this size
# Images up to this size (what the server always filled whole) are filled whole at full
# resolution; larger ones in the request's high-resolution mode.
NATIVE_PIXELS = 1024 * 1024
HR_MODES = ("crop", "resize")
DEFAULT_HR = "crop"
JOB_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
FIELDS = ("image", "mask", "sketch")
REQUIRED_FIELDS = ("image", "mask")
# The page may load images from blob: URLs it makes itself; nothing from other sites.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' blob: data:; "
                                 b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
INTERNAL_ERROR = "internal server error while handling the request; the server's log has the details"
logger = logging.getLogger(__name__)


class ServeError(InpaintingError):
    """Flags of the web server that cannot be used (bad limits, an address already in use)."""


class RequestError(Exception):
    """A request the server refuses; `message` tells the client what is wrong and what to do.

    Args:
        status: the HTTP status code (4xx).
        message: one line for the client.
    """

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status, message):
    return JSONResponse({"error": message}, status_code=status)


class ModelWorker:
    """Runs jobs on one dedicated thread, so model calls never overlap, never block the event loop,
    and only one request's decoded image is in memory at a time.
    """

    def __init__(self):
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")

    async def submit(self, function, *args):
        """The result of `function(*args)`, run on the worker thread after the jobs before it."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def close(self):
        self._executor.shutdown(wait=False, cancel_futures=True)


class ModelQueue:
    """The requests waiting for the model thread: at most `limit`, each holding its upload, taking
    their turns in the order they arrived.

    A request is admitted (`admit`) when it arrives, before its upload is read, and leaves the
    queue when its turn comes (`Place.turn`) or when it ends before. The model's recent time per
    request gives the `Retry-After` of the requests refused while the queue is full.
    """

    def __init__(self, limit):
        self.limit = limit
        self.waiting = 0
        self.seconds = 1.0  # a moving average of the time a request holds the model
        self.turns = None  # asyncio.Lock, made in the event loop: first come, first served

    def admit(self):
        """A `Place` in the queue, or None when `limit` requests wait already."""
        if self.waiting >= self.limit:
            return None
        self.waiting += 1
        return Place(self)

    def retry_after(self):
        """Seconds after which a refused request may find a place: the queue's expected run time."""
        return max(1, math.ceil(self.seconds * self.waiting))


class Place:
    """A request's place in a `ModelQueue`."""

    def __init__(self, queue):
        self.queue = queue
        self.queued = True

    def leave(self):
        """Leaves the queue (once; later calls do nothing)."""
        if self.queued:
            self.queued = False
            self.queue.waiting -= 1

    @contextlib.asynccontextmanager
    async def turn(self):
        """Waits for the requests before this one, then holds the model while the block runs."""
        if self.queue.turns is None:
            self.queue.turns = asyncio.Lock()
        try:
            await self.queue.turns.acquire()
        finally:
            self.leave()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.queue.seconds = 0.7 * self.queue.seconds + 0.3 * (time.perf_counter() - start)
            self.queue.turns.release()


class RunnerInpainter:
    """A runner called like `inpainter.Inpainter`, so `highres.HighResInpainter` can drive it.

    Args:
        runner: a runner from `inpainting.inference.runners.load` (a checkpoint or a SavedModel).
    """

    def __init__(self, runner):
        self.runner = runner

    def check_size(self, height, width, path="image"):
        """Refuses pieces that would not fit in memory (checkpoints; a SavedModel checks its own
        export.py --max_pixels when it runs)."""
        inpainter = getattr(self.runner, "inpainter", None)
        if inpainter is not None:
            inpainter.check_size(height, width, path)

    def __call__(self, rgb, mask, path="image", sketch=None):
        result = self.runner.run(rgb, mask, path, sketch)
        return {"filled": result.filled, "flow": result.flow}


def mode_for(height, width, mode):
    """The `highres` mode an image of this size is inpainted in: "native" up to `NATIVE_PIXELS`,
    else `mode`."""
    return "native" if height * width <= NATIVE_PIXELS else mode


def fill(runner, rgb, mask, name="image", sketch=None, mode=DEFAULT_HR, progress=None, mask_grow=0,
         mask_feather=0):
    """The fill of one image: whole at full resolution up to `NATIVE_PIXELS`, larger images in
    the high-resolution `mode` of `inpainting.inference.highres`.

    Args:
        runner: a runner from `inpainting.inference.runners.load`.
        rgb, mask, name, sketch: as `runner.run` takes them.
        mode: "crop" (crops around the holes at full resolution) or "resize" (the whole image at
            `highres.DEFAULT_WORK_SIZE` pixels across, the fill enlarged).
        progress: optional `progress(done, total, what)`, called after each inpainted piece.
        mask_grow, mask_feather: pixels to grow the hole by, and the width of the band the fill
            is blended over (`inpainting.inference.masktools`).

    Returns:
        The dict of `highres.HighResInpainter`: `filled` float32 [H, W, 3] (at least at the
        pixels the fill reaches), `mask` (the grown hole), `weight` (or None) and `flow` uint8
        [H, W, 3].
    """
    inpainter = highres.HighResInpainter(RunnerInpainter(runner), mode_for(*mask.shape, mode),
                                         progress=progress, mask_grow=mask_grow, mask_feather=mask_feather)
    return inpainter(rgb, mask, name, sketch)


def _label(field, upload):
    """How messages call an uploaded file: the form field and the client's file name."""
    name = upload.filename or ""
    name = name if name.isprintable() else repr(name)[1:-1]
    return f"{field} '{name}'" if name else field


def _pixel_error(label, width, height, max_pixels):
    return RequestError(413, f"{label}: the image is {width}x{height} = {width * height} pixels, "
                             f"more than this server's limit of {max_pixels} (--max_pixels); "
                             "downscale it or send a crop around the hole")


def _check_header_size(label, data, max_pixels):
    """Refuses an image whose header gives more than `max_pixels` pixels, before decoding it.

    Pillow (a dependency of scikit-image) reads only the header here; files it cannot identify are
    checked after OpenCV decodes them.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Image.DecompressionBombError:
        raise RequestError(413, f"{label}: the image has far more pixels than this server's limit of "
                                f"{max_pixels} (--max_pixels); downscale it or send a crop around "
                                "the hole") from None
    except Exception:  # noqa: BLE001 -- not identified: OpenCV decides and imageio words the error
        return
    if width * height > max_pixels:
        raise _pixel_error(label, width, height, max_pixels)


def decode_uploads(uploads, max_pixels):
    """Decodes the uploaded files with the command-line tools' rules (`imageio`).

    The bytes are written into a private temporary folder, read with `imageio.read_image` and
    `imageio.read_mask`, and deleted before returning.

    Args:
        uploads: {field: (label, bytes)} with "image", "mask" and optionally "sketch".
        max_pixels: the largest height x width accepted.

    Returns:
        (`imageio.LoadedImage`, mask float32 [H, W] {0, 1}, sketch float32 [H, W] or None).

    Raises:
        RequestError: a file that is not an image, a mask or sketch of another size (400), or an
            image of more than `max_pixels` pixels (413). Messages name the upload, not the
            temporary file.
    """
    for label, data in uploads.values():
        _check_header_size(label, data, max_pixels)
    with tempfile.TemporaryDirectory(prefix="inpainting-serve-") as folder:
        paths = {}
        for field, (_, data) in uploads.items():
            paths[field] = os.path.join(folder, field)
            with open(paths[field], "wb") as handle:
                handle.write(data)
        field = "image"
        try:
            image = imageio.read_image(paths["image"])
            if image.height * image.width > max_pixels:
                raise _pixel_error(uploads["image"][0], image.width, image.height, max_pixels)
            field = "mask"
            mask = imageio.read_mask(paths["mask"], size=image.size)
            sketch = None
            if "sketch" in uploads:
                field = "sketch"
                sketch = imageio.read_mask(paths["sketch"], size=image.size)
        except ImageError as err:
            raise RequestError(400, str(err).replace(paths[field], uploads[field][0])) from None
    return image, mask, sketch


def encode_png(array):
    """PNG bytes of a uint8/uint16 gray, BGR or BGRA array (OpenCV's channel order)."""
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError(f"OpenCV cannot encode a {array.dtype} array of shape {array.shape} as PNG")
    return encoded.tobytes()


async def _limited(stream, limit):
    """The request body chunks; RequestError 413 as soon as more than `limit` bytes arrived."""
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise RequestError(413, f"the upload is larger than this server's limit of "
                                    f"{describe_size(limit)} (--max_upload_mb); send a smaller or "
                                    "better compressed image (PNG or JPEG)")
        yield chunk


async def read_uploads(request, max_upload_bytes):
    """The uploaded files of an inpaint request, kept in memory.

    Returns:
        {field: (label for messages, bytes)} with "image", "mask" and optionally "sketch".

    Raises:
        RequestError: not multipart, malformed, too large (413), a missing, empty or unknown field.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_upload_bytes:
        raise RequestError(413, f"the upload is {describe_size(int(declared))}, more than this server's "
                                f"limit of {describe_size(max_upload_bytes)} (--max_upload_mb); send "
                                "a smaller or better compressed image (PNG or JPEG)")
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        raise RequestError(400, "send multipart/form-data with the files 'image' and 'mask' (and "
                                f"optionally 'sketch'), got Content-Type '{content_type or 'none'}'")
    parser = MultiPartParser(request.headers, _limited(request.stream(), max_upload_bytes),
                             max_files=len(FIELDS), max_fields=len(FIELDS))
    parser.spool_max_size = max_upload_bytes  # uploads stay in memory, never in a temporary file
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise RequestError(400, f"malformed multipart upload: {err.message}") from None
    try:
        uploads = {}
        for field, value in form.multi_items():
            if field not in FIELDS:
                raise RequestError(400, f"unexpected form field '{field}'; send the files 'image' "
                                        "and 'mask' (and optionally 'sketch')")
            if field in uploads:
                raise RequestError(400, f"the field '{field}' was sent more than once; send one file")
            if not isinstance(value, UploadFile):
                raise RequestError(400, f"'{field}' must be a file upload, not a text field")
            data = await value.read()
            if not data:
                raise RequestError(400, f"{_label(field, value)}: the file is empty; send an image")
            uploads[field] = (_label(field, value), data)
    finally:
        await form.close()
    for field in REQUIRED_FIELDS:
        if field not in uploads:
            what = "the image to inpaint" if field == "image" else "the hole, white on black"
            raise RequestError(400, f"missing file '{field}' ({what}); send 'image' and 'mask' as "
                                    "multipart/form-data files")
    return uploads


def create_app(runner, max_pixels=DEFAULT_MAX_PIXELS, max_upload_bytes=DEFAULT_MAX_UPLOAD_MB * 2**20,
               hr=DEFAULT_HR, max_queue=DEFAULT_MAX_QUEUE):
    """The web application: the page, `/api/health`, `/api/inpaint` and `/api/progress` (see the
    module docstring).

    Args:
        runner: a checkpoint or SavedModel runner from `inpainting.inference.runners.load`.
        max_pixels: the largest height x width accepted (413 above).
        max_upload_bytes: the largest request body accepted (413 above).
        hr: the high-resolution mode of requests that do not choose one, "crop" or "resize".
        max_queue: the most inpaint requests waiting for the model (being received or queued);
            more get 503 with `Retry-After`.

    Returns:
        A Starlette application; serve it with uvicorn.
    """
    if hr not in HR_MODES:
        raise ValueError(f"hr must be one of {', '.join(HR_MODES)}, got {hr!r}")
    if max_queue < 1:
        raise ValueError(f"max_queue must be positive, got {max_queue}")
    worker = ModelWorker()
    queue = ModelQueue(max_queue)
    health = {"status": "ok", "kind": runner.kind, "version": runner.version, "guided": runner.guided,
              "max_pixels": int(max_pixels), "max_upload_bytes": int(max_upload_bytes),
              "max_queue": int(max_queue), "hr": hr, "hr_modes": list(HR_MODES)}
    jobs = {}  # job id: progress of a running request that named one

    async def get_health(request):
        return JSONResponse(health)

    async def get_progress(request):
        job = request.query_params.get("job")
        if job not in jobs:
            return _error(404, f"no running request with job={job!r}; a request is known from the "
                               "moment the server receives it until it is answered")
        status = dict(jobs[job])
        status["seconds"] = round(time.perf_counter() - status.pop("start"), 1)
        return JSONResponse(status)

    async def post_inpaint(request):
        place = queue.admit()
        if place is None:  # refused before its upload is read
            seconds = queue.retry_after()
            return JSONResponse({"error": f"this server is busy: {queue.limit} requests are waiting for "
                                          f"the model already (--max_queue); retry in {seconds} s"},
                                status_code=503, headers={"Retry-After": str(seconds)})
        try:
            return await inpaint(request, place)
        except RequestError as err:
            return _error(err.status, err.message)
        except ClientDisconnect:
            _log_disconnect(request, "before its upload was complete; nothing was inpainted")
            return _error(400, "the upload was not complete")  # no one is left to read it
        except Exception:  # noqa: BLE001 -- the client gets no traceback; the log has it
            logger.exception("POST /api/inpaint failed")
            return _error(500, INTERNAL_ERROR)
        finally:
            place.leave()

    async def inpaint(request, place):
        include = request.query_params.get("include")
        if include not in (None, "flow"):
            raise RequestError(400, f"unknown include={include!r}; use include=flow for JSON with "
                                    "the result and the flow, or leave it out for a PNG")
        mode = request.query_params.get("hr", hr)
        if mode not in HR_MODES:
            raise RequestError(400, f"unknown hr={mode!r}; use hr=crop (crops around the holes at full "
                                    "resolution: small holes) or hr=resize (the whole image at "
                                    f"{highres.DEFAULT_WORK_SIZE} pixels across: large holes), or leave "
                                    f"it out for this server's default ({hr})")
        try:
            tools = {name: masktools.parse_pixels(request.query_params.get(name, "0"), name)
                     for name in masktools.PARAMETERS}
        except InpaintingError as err:
            raise RequestError(400, f"{err}; leave it out for 0 (the hole as painted)") from None
        job = request.query_params.get("job")
        if job is not None and not (JOB_ID.fullmatch(job) and job not in jobs):
            raise RequestError(400, f"job={job!r} is not a new job id; send a fresh random id of 8 to "
                                    "64 letters, digits, '-' or '_' with each request")
        status = {"stage": "receiving", "mode": None, "done": 0, "total": None, "piece": None,
                  "start": time.perf_counter()}
        if job is not None:
            jobs[job] = status
        try:
            uploads = await read_uploads(request, max_upload_bytes)
            if "sketch" in uploads and not runner.guided:
                raise RequestError(400, f"{uploads['sketch'][0]}: this model is not guided (it was not "
                                        "trained with sketches); send no sketch")
            status["stage"] = "queued"
            async with place.turn():
                if await request.is_disconnected():
                    _log_disconnect(request, "while its request was queued; it was dropped before the "
                                             "model filled it")
                    return _error(400, "the client disconnected")  # no one is left to read it
                result, flow, size, seconds = await worker.submit(
                    process, uploads, mode, tools, include == "flow", status)
        finally:
            jobs.pop(job, None)
        if include is None:
            return Response(result, media_type="image/png")
        return JSONResponse({"image": base64.b64encode(result).decode("ascii"),
                             "flow": base64.b64encode(flow).decode("ascii"),
                             "width": size[1], "height": size[0], "seconds": round(seconds, 3)})

    def process(uploads, mode, tools, with_flow, status):
        """On the worker thread: (result PNG, flow PNG or None, (height, width), seconds of the fill)."""
        def progress(done, total, what):
            status.update(done=done, total=total, piece=what)

        status["stage"] = "decoding"
        image, mask, sketch = decode_uploads(uploads, max_pixels)
        status.update(stage="filling", mode=mode_for(image.height, image.width, mode))
        start = time.perf_counter()
        try:
            result = fill(runner, image.rgb, mask, uploads["image"][0], sketch, mode, progress, **tools)
        except ImageError as err:  # refused for this image (too large for this machine, ...)
            raise RequestError(400, str(err)) from None
        seconds = time.perf_counter() - start
        status["stage"] = "encoding"
        filled = encode_png(imageio.compose(image, result["filled"], result["mask"], result["weight"]))
        flow_png = encode_png(result["flow"][..., ::-1]) if with_flow else None
        return filled, flow_png, (image.height, image.width), seconds

    async def http_error(request, exc):
        return _error(exc.status_code, exc.detail)

    async def server_error(request, exc):
        # Starlette passes the exception on to the server, which logs the traceback.
        return _error(500, INTERNAL_ERROR)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        worker.close()

    static = StaticFiles(packages=[("inpainting", "web")], html=True)
    api = [Route("/health", get_health, methods=["GET"]),
           Route("/inpaint", post_inpaint, methods=["POST"]),
           Route("/progress", get_progress, methods=["GET"])]
    routes = [Mount("/api", routes=api), Mount("/", app=static, name="page")]
    application = Starlette(routes=routes, lifespan=lifespan,
                            exception_handlers={HTTPException: http_error, Exception: server_error})
    return _with_headers(application, SECURITY_HEADERS)


def _log_disconnect(request, what):
    """The one log line of an inpaint request whose client went away `what` (e.g. "while ...")."""
    client = request.client
    who = f" from {client.host}:{client.port}" if client else ""
    logger.warning("POST /api/inpaint%s: the client disconnected %s", who, what)


def _with_headers(application, headers):
    """An ASGI application that adds `headers` to every HTTP response of `application`."""
    async def wrapped(scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers", [])) + headers)
            await send(message)

        await application(scope, receive, send_with_headers if scope["type"] == "http" else send)

    return wrapped


def load_runner(path):
    """The runner of `--model`: a SavedModel export or version folder, an .onnx file, or a checkpoint
    directory.

    Raises:
        InpaintingError: nothing servable at `path`.
    """
    from inpainting.inference import runners

    if path.endswith(".tflite"):
        raise ServeError(f"{{parameter}}={path}: TFLite files are not served; give the SavedModel export "
                         "folder (export.py --export_dir) or a checkpoint directory", parameter="path")
    return runners.load(path)


def warm_up(runner):
    """One small fill, so that the first request does not wait for TensorFlow to trace the graph."""
    rgb = np.zeros((64, 64, 3), np.uint8)
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1
    runner.run(rgb, mask, "warm-up image")


def listen(host, port):
    """A listening socket on host:port (port 0: any free port).

    Raises:
        ServeError: the address cannot be used.
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as err:
        raise ServeError(f"cannot listen on {host}:{port} ({err.strerror or err}); choose another "
                         "--port, or a --host this machine has") from None


def define_flags():
    flags.DEFINE_string("model", None, "The model to serve: an export folder of export.py (its largest "
                        "version is used), one SavedModel version folder, or a checkpoint directory "
                        "(of this project, or an original DeepFill TF1 one).")
    flags.DEFINE_string("host", "127.0.0.1", "Address to listen on. The default accepts connections "
                        "from this machine only; the page has no authentication, so bind another "
                        "address (e.g. 0.0.0.0) only on a network you trust.")
    flags.DEFINE_integer("port", 8080, "TCP port to listen on; 0 picks a free one (the address is "
                         "printed).")
    flags.DEFINE_float("max_upload_mb", DEFAULT_MAX_UPLOAD_MB, "Largest request (image, mask and "
                       "sketch together) in MiB; larger uploads are refused with 413 before they "
                       "are read into memory.")
    flags.DEFINE_integer("max_pixels", DEFAULT_MAX_PIXELS, "Largest height x width to inpaint; larger "
                         "images are refused with 413, from their header before they are decoded. The "
                         "default suits a machine with 24 GiB of memory (README.md). Images above "
                         f"{NATIVE_PIXELS} pixels are inpainted in the --hr mode; up to that size a "
                         "SavedModel also refuses images larger than its own export.py --max_pixels.")
    flags.DEFINE_integer("max_queue", DEFAULT_MAX_QUEUE, "Most inpaint requests waiting for the model "
                         "(being uploaded or queued behind the one it fills), each holding its upload in "
                         "memory: at most max_queue x --max_upload_mb. More are refused with 503 and "
                         "Retry-After before their upload is read; a waiting request whose client "
                         "disconnected is dropped before the model fills it.")
    flags.DEFINE_string("hr", DEFAULT_HR, f"How images above {NATIVE_PIXELS} pixels are inpainted "
                        "when a request does not say (its hr= parameter): crop (crops around the "
                        "holes at full resolution: for small holes in large photos) or resize (the "
                        f"whole image at {highres.DEFAULT_WORK_SIZE} pixels across, the fill enlarged "
                        "into the holes: for large holes). Smaller images are inpainted whole at "
                        "full resolution.")


def main(argv):
    from inpainting import cli

    with cli.user_errors(flag_names={"path": "model"}):  # load_runner's path is --model
        if len(argv) > 1:
            raise ServeError(f"unexpected arguments: {' '.join(argv[1:])}")
        if FLAGS.model is None:
            raise ServeError("--model is required: an export folder of export.py, a SavedModel "
                             "version folder or a checkpoint directory")
        if FLAGS.max_pixels < 1:
            raise ServeError(f"--max_pixels must be positive, got {FLAGS.max_pixels}")
        if not FLAGS.max_upload_mb > 0:
            raise ServeError(f"--max_upload_mb must be positive, got {FLAGS.max_upload_mb}")
        if FLAGS.max_queue < 1:
            raise ServeError(f"--max_queue must be positive (requests waiting for the model), got "
                             f"{FLAGS.max_queue}")
        if FLAGS.hr not in HR_MODES:
            raise ServeError(f"--hr must be crop or resize, got {FLAGS.hr!r}")
        if not 0 <= FLAGS.port <= 65535:
            raise ServeError(f"--port must be in 0..65535, got {FLAGS.port}")
        if not os.path.exists(FLAGS.model) and not os.path.exists(FLAGS.model + ".index"):
            raise ServeError(f"--model={FLAGS.model}: no such file or directory")
        sock = listen(FLAGS.host, FLAGS.port)  # before the slow model load: a busy port fails fast
        runner = load_runner(FLAGS.model)
    import uvicorn

    warm_up(runner)
    application = create_app(runner, FLAGS.max_pixels, int(FLAGS.max_upload_mb * 2**20), FLAGS.hr,
                             FLAGS.max_queue)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {runner.kind} {runner.path} on http://{shown}:{port}/ (Ctrl+C stops)",
          file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(application, log_level="info"))
    # uvicorn handles Ctrl-C and SIGTERM itself while it serves (it stops accepting, answers what it
    # is answering, then returns); afterwards it raises the signal again for the handler that was
    # there before, which for Ctrl-C is Python's KeyboardInterrupt with its traceback. This one
    # only asks the server to stop (again), so the process ends quietly with status 0; it also
    # covers a signal that arrives just before uvicorn takes over.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: setattr(server, "should_exit", True))
    server.run(sockets=[sock])


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's start-up notices off the console
    define_flags()
    app.run(main)
