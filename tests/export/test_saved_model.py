"""Tests of the SavedModel export: both signatures in TensorFlow's graph loader, warm-up records,
versions, limits, and the export.py command."""

import collections
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib

import cv2
import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_user_error, box_mask, load_reference, photo, remount_read_only, run_module
from inpainting import cli, imageio
from inpainting.checkpoints import store
from inpainting.config import ModelConfig
from inpainting.data import masks, sources
from inpainting.errors import ExportError, ImageError
from inpainting.export import job, saved_model, signatures
from inpainting.inference import runners
from inpainting.inference.inpainter import Inpainter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# TF Serving's REST and gRPC APIs run the graph loader; so do these fresh processes, which never
# import this project (the environment keeps TensorFlow quiet, nothing else).
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")


def _expected(inpainter, rgb, mask):
    """The in-process result: the generator's fill in the hole, the input outside."""
    result = inpainter(rgb, mask)
    return np.where(mask[..., None] > 0.5, result["filled"], rgb.astype(np.float32)), result["flow"]


def _saved_model_cli(directory, signature, inputs, outdir):
    """`saved_model_cli run` on .npy inputs; returns {output key: array}."""
    args = ";".join(f"{key}={path}" for key, path in inputs.items())
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "saved_model_cli"), "run", "--dir", str(directory),
         "--tag_set", "serve", "--signature_def", signature, "--inputs", args, "--outdir", str(outdir),
         "--overwrite"], capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return {name[:-4]: np.load(os.path.join(outdir, name), allow_pickle=True)
            for name in os.listdir(outdir) if name.endswith(".npy")}


@pytest.fixture(scope="module")
def tiny_export(tiny_checkpoint, tmp_path_factory):
    export_dir = tmp_path_factory.mktemp("export") / "tiny"
    return job.export(tiny_checkpoint, export_dir)


@pytest.fixture(scope="module")
def tiny_inpainter(tiny_checkpoint):
    return Inpainter(store.load_generator(tiny_checkpoint))


def test_inpaint_signature_in_graph_loader_matches_in_process(tiny_export, tiny_inpainter, tmp_path):
    rgb = photo(37, 53)  # not multiples of 8: padded and cropped inside the graph
    mask = box_mask(37, 53, 10, 12, 9, 20)
    np.save(tmp_path / "image.npy", rgb[None].astype(np.float32))
    np.save(tmp_path / "mask.npy", mask[None, :, :, None])
    out = _saved_model_cli(tiny_export, "inpaint", {"image": tmp_path / "image.npy",
                                                    "mask": tmp_path / "mask.npy"}, tmp_path / "out")
    expected, flow = _expected(tiny_inpainter, rgb, mask)
    assert out["inpainted"].shape == (1, 37, 53, 3) and out["flow"].shape == (1, 37, 53, 3)
    assert np.abs(out["inpainted"][0] - expected).max() <= 0.05
    np.testing.assert_array_equal(out["inpainted"][0][mask == 0], rgb[mask == 0])
    np.testing.assert_array_equal(out["flow"][0], flow)  # one image: per-image colours are the same


def test_bytes_signature_in_graph_loader(tiny_export, tiny_inpainter, tmp_path):
    images = [photo(37, 53), photo(24, 30, seed=1)]  # each request its own size
    masks = [box_mask(37, 53, 10, 12, 9, 20), box_mask(24, 30, 0, 0, 8, 8)]
    image_bytes = np.array([cv2.imencode(".png", im[..., ::-1])[1].tobytes() for im in images], object)
    jpeg = cv2.imencode(".jpg", (masks[1] * 255).astype(np.uint8))[1].tobytes()  # JPEG works too
    mask_bytes = np.array([cv2.imencode(".png", (masks[0] * 255).astype(np.uint8))[1].tobytes(), jpeg], object)
    np.save(tmp_path / "image_bytes.npy", image_bytes)
    np.save(tmp_path / "mask_bytes.npy", mask_bytes)
    out = _saved_model_cli(tiny_export, "serving_default", {"image_bytes": tmp_path / "image_bytes.npy",
                                                            "mask_bytes": tmp_path / "mask_bytes.npy"},
                           tmp_path / "out")
    assert out["output_bytes"].shape == (2,)
    for data, rgb, mask in zip(out["output_bytes"], images, masks):
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        png = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1]
        assert png.shape == rgb.shape and png.dtype == np.uint8
        np.testing.assert_array_equal(png[mask == 0], rgb[mask == 0])
        expected, _ = _expected(tiny_inpainter, rgb, mask)
        assert np.abs(png.astype(np.float32) - np.clip(np.rint(expected), 0, 255)).max() <= 1


def test_warmup_records_replay_in_graph_loader(tiny_export, tmp_path):
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(tiny_export, saved_model.WARMUP_FILE)
    logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(path)]
    assert sorted(log.predict_log.request.model_spec.signature_name for log in logs) == sorted(signatures.SIGNATURES)
    # Replay every record through the TF1 graph loader (the one TF Serving's C++ server wraps),
    # in a process that imports TensorFlow and the serving protos only.
    script = f"""
import sys
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

tf.compat.v1.disable_eager_execution()
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], {str(tiny_export)!r})
    for record in tf.compat.v1.io.tf_record_iterator({path!r}):
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        signature = meta.signature_def[request.model_spec.signature_name]
        feeds = {{signature.inputs[k].name: tf.make_ndarray(v) for k, v in request.inputs.items()}}
        names = sorted(signature.outputs)
        values = session.run([signature.outputs[k].name for k in names], feeds)
        print(request.model_spec.signature_name, *(f"{{k}}:{{v.shape}}" for k, v in zip(names, values)))
assert not any(name.startswith("inpainting") for name in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV,
                            timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = sorted(result.stdout.split("\n"))[1:]
    assert lines == ["inpaint flow:(1, 64, 64, 3) inpainted:(1, 64, 64, 3)",
                     "serving_default output_bytes:(1,)"]


def test_no_warmup_and_model_config_beside(tiny_checkpoint, tmp_path):
    directory = job.export(tiny_checkpoint, tmp_path, warmup=False)
    assert not os.path.exists(os.path.join(directory, saved_model.WARMUP_FILE))
    config = ModelConfig.load(os.path.join(directory, "assets.extra"))
    assert config.cnum == 4


def test_versions_are_new_folders_and_never_replaced(tiny_checkpoint, tmp_path):
    generator = store.load_generator(tiny_checkpoint)
    first = saved_model.export_saved_model(generator, tmp_path, warmup=False)
    second = saved_model.export_saved_model(generator, tmp_path, warmup=False)
    assert (os.path.basename(first), os.path.basename(second)) == ("1", "2")
    stamp = os.path.getmtime(os.path.join(first, "saved_model.pb"))
    with pytest.raises(ExportError, match=r"1 exists already; choose another version"):
        saved_model.export_saved_model(generator, tmp_path, version=1)
    assert os.path.getmtime(os.path.join(first, "saved_model.pb")) == stamp
    with pytest.raises(ExportError, match="positive integer"):
        saved_model.export_saved_model(generator, tmp_path, version=0)

    def fail(_):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):  # a failed export leaves nothing behind
        saved_model.export_saved_model(generator, tmp_path, warmup=False, extra=fail)
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]
    assert saved_model.latest_version_dir(tmp_path) == second


def test_a_python_caller_is_told_the_parameter_not_the_flag(tiny_checkpoint, tmp_path):
    generator = store.load_generator(tiny_checkpoint)
    with pytest.raises(ExportError) as refused:
        saved_model.export_saved_model(generator, tmp_path, version=0)
    assert str(refused.value) == "version must be a positive integer, got 0"
    assert "--version" not in str(refused.value)
    assert cli.message(refused.value) == "--version must be a positive integer, got 0"  # export.py's words
    calls = {  # each refused before the checkpoint is loaded
        "tflite_size needs tflite=True": dict(tflite_size=(64, 64)),
        "tflite_size must be HxW with positive sides": dict(tflite=True, tflite_size=(0, 64)),
        "max_pixels must be positive": dict(max_pixels=0),
        "attention_memory_mb must be positive": dict(attention_memory_mb=-1),
    }
    for message, arguments in calls.items():
        with pytest.raises(ExportError, match=f"^{message}"):
            job.export(tmp_path / "nothing", tmp_path / "export", **arguments)
    (tmp_path / "file").write_text("notes")
    with pytest.raises(ExportError, match=f"^export_dir={tmp_path / 'file'} is a file"):
        job.export(tiny_checkpoint, tmp_path / "file")
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_a_version_taken_while_exporting_is_never_replaced(tiny_checkpoint, tmp_path):
    # What a second export finishing first does: its complete version folder appears during the save.
    generator = store.load_generator(tiny_checkpoint)

    def other_export_finishes(version):
        def extra(temp):
            os.makedirs(tmp_path / version)
            (tmp_path / version / "saved_model.pb").write_bytes(b"the other export")
        return extra

    directory = saved_model.export_saved_model(generator, tmp_path, warmup=False, extra=other_export_finishes("1"))
    assert directory == str(tmp_path / "2") and saved_model.is_saved_model(directory)
    with pytest.raises(ExportError, match=rf"^{tmp_path / '3'} exists already; choose another version"):
        saved_model.export_saved_model(generator, tmp_path, version=3, warmup=False, extra=other_export_finishes("3"))
    assert sorted(os.listdir(tmp_path)) == ["1", "2", "3"]  # no temporary folder left
    assert (tmp_path / "1" / "saved_model.pb").read_bytes() == b"the other export"
    assert (tmp_path / "3" / "saved_model.pb").read_bytes() == b"the other export"


def test_concurrent_export_commands_both_succeed(tiny_checkpoint, tmp_path):
    export_dir = tmp_path / "exported"
    command = [sys.executable, "-m", "export", "--checkpoint", str(tiny_checkpoint), "--export_dir",
               str(export_dir), "--nowarmup"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                  env=ENV) for _ in range(2)]
    try:
        results = [process.communicate(timeout=600) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    for process, (_, stderr) in zip(processes, results):
        assert process.returncode == 0 and "Traceback" not in stderr, stderr
    written = sorted(line for stdout, _ in results for line in stdout.split() if line.endswith("saved_model.pb"))
    assert written == [str(export_dir / version / "saved_model.pb") for version in ("1", "2")]
    assert sorted(os.listdir(export_dir)) == ["1", "2"]
    for version in ("1", "2"):
        loaded = tf.saved_model.load(str(export_dir / version))
        assert sorted(loaded.signatures) == ["inpaint", "serving_default"]


def test_export_dir_that_is_a_file(tiny_checkpoint, tmp_path):
    path = tmp_path / "exported"
    path.write_text("my notes")
    result = run_module("export", "--checkpoint", tiny_checkpoint, "--export_dir", path, cwd=REPO)
    assert_user_error(result, f"--export_dir={path} is a file, not a folder; give a folder path")
    assert path.read_text() == "my notes"


def _copy_version(version_dir, export_dir):
    """Copies an exported version folder into `export_dir` as its version 1; returns that folder."""
    target = export_dir / "1"
    shutil.copytree(version_dir, target)
    return target


@pytest.fixture(scope="module")
def tiny_export_fill(tiny_export):
    """(image, mask, the tiny export's fill of it)."""
    rgb, mask = photo(32, 32), box_mask(32, 32, 8, 8, 16, 16)
    return rgb, mask, runners.load(tiny_export).run(rgb, mask)[0]


def _assert_version_one_serves(export_dir, fill):
    """`export_dir` holds exactly version 1, nothing else (no temporary folder), and it loads and
    fills like the export it was copied from (`fill`: `tiny_export_fill`)."""
    assert sorted(os.listdir(export_dir)) == ["1"]
    rgb, mask, filled = fill
    np.testing.assert_array_equal(runners.load(export_dir).run(rgb, mask)[0], filled)


def test_a_full_disk_keeps_the_versions_and_leaves_no_temporary_folder(tiny_checkpoint, tiny_export,
                                                                       tiny_export_fill, small_disk):
    export_dir = small_disk("3m")  # version 1 (2.2 MB) fits, a second does not
    _copy_version(tiny_export, export_dir)
    with pytest.raises(ExportError) as excinfo:
        job.export(tiny_checkpoint, export_dir)
    assert re.fullmatch(rf"export_dir={re.escape(str(export_dir))}: the disk is full \(\d+ KB free\); "
                        r"version 2 needs more than the \d+(\.\d)? [KM]B it had written; free some space "
                        r"there or choose another export_dir \(its versions 1 are unchanged\)",
                        str(excinfo.value)), str(excinfo.value)
    assert excinfo.value.describe(flags=True).startswith(f"--export_dir={export_dir}: the disk is full")
    _assert_version_one_serves(export_dir, tiny_export_fill)


def test_a_read_only_export_dir_holding_a_version_is_one_error_line(tiny_checkpoint, tiny_export,
                                                                    tiny_export_fill, small_disk):
    export_dir = small_disk("4m")
    _copy_version(tiny_export, export_dir)
    remount_read_only(export_dir)
    result = run_module("export", "--checkpoint", tiny_checkpoint, "--export_dir", export_dir, cwd=REPO)
    assert result.returncode == 1
    assert_user_error(result, f"--export_dir={export_dir} cannot be written (Read-only file system); make "
                              "it writable or choose another --export_dir (its versions 1 are unchanged)")
    _assert_version_one_serves(export_dir, tiny_export_fill)


def test_batch_flow_is_coloured_per_image(tiny_export):
    inpaint = tf.saved_model.load(tiny_export).signatures["inpaint"]
    images = np.stack([photo(48, 64, seed=2), photo(48, 64, seed=3)]).astype(np.float32)
    masks = np.stack([box_mask(48, 64, 8, 8, 24, 24), box_mask(48, 64, 16, 30, 20, 30)])[..., None]
    both = inpaint(image=tf.constant(images), mask=tf.constant(masks))
    second = inpaint(image=tf.constant(images[1:]), mask=tf.constant(masks[1:]))
    np.testing.assert_array_equal(both["flow"].numpy()[1], second["flow"].numpy()[0])
    np.testing.assert_allclose(both["inpainted"].numpy()[1], second["inpainted"].numpy()[0], atol=1e-3)


def test_bad_requests_fail_with_clear_messages(tiny_checkpoint, tmp_path):
    directory = job.export(tiny_checkpoint, tmp_path, warmup=False, max_pixels=40 * 40)
    loaded = tf.saved_model.load(directory)
    image = tf.zeros([1, 40, 40, 3])
    with pytest.raises(tf.errors.InvalidArgumentError, match="the mask size .second value. must equal the image size"):
        loaded.signatures["inpaint"](image=image, mask=tf.zeros([1, 40, 32, 1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="more pixels .* than the 1600"):
        loaded.signatures["inpaint"](image=tf.zeros([1, 41, 40, 3]), mask=tf.zeros([1, 41, 40, 1]))
    runner = runners.load(directory)  # as the evaluation tool runs it: an error naming the image
    with pytest.raises(ImageError, match=r"^photo.png: inpaint: the image has more pixels .* than the 1600"):
        runner(np.zeros((41, 40, 3), np.uint8), np.ones((41, 40), np.float32), name="photo.png")
    png = tf.io.encode_png(tf.zeros([40, 40, 3], tf.uint8))
    small = tf.io.encode_png(tf.zeros([40, 39, 1], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="serving_default: the mask size"):
        loaded.signatures["serving_default"](image_bytes=tf.stack([png]), mask_bytes=tf.stack([small]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="as many mask_bytes as image_bytes"):
        loaded.signatures["serving_default"](image_bytes=tf.stack([png, png]), mask_bytes=tf.stack([small]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        loaded.signatures["serving_default"](image_bytes=tf.constant([b"not an image"]),
                                             mask_bytes=tf.stack([small]))


def _png_with_size(png, height, width):
    """A PNG whose IHDR declares height x width (its CRC recomputed); the pixel data is unchanged."""
    ihdr = bytearray(png[8:33])  # length, "IHDR", 13 bytes of data, CRC
    ihdr[8:16] = struct.pack(">II", width, height)
    ihdr[21:25] = struct.pack(">I", zlib.crc32(bytes(ihdr[4:21])))
    return png[:8] + bytes(ihdr) + png[33:]


def _jpeg_with_size(jpeg, height, width):
    """A JPEG whose SOF0 frame header declares height x width."""
    data, at = bytearray(jpeg), 2
    while data[at + 1] != 0xC0:
        at += 2 + data[at + 2] * 256 + data[at + 3]
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _huge_png(size):
    """A valid gray PNG of size x size black pixels, compressed row by row (16000: 746 KB)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor, row = zlib.compressobj(9), bytes(size + 1)
    pixels = b"".join(compressor.compress(row) for _ in range(size)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def _encoded(rgb, kind):
    """rgb in one of the formats serving_default takes."""
    if kind in ("gif", "webp_vp8x", "webp_lossless"):
        from PIL import Image

        buffer = io.BytesIO()
        alpha = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
        options = {"gif": ("GIF", rgb, {}), "webp_vp8x": ("WEBP", alpha, {"quality": 90}),
                   "webp_lossless": ("WEBP", rgb, {"lossless": True})}[kind]
        Image.fromarray(options[1]).save(buffer, options[0], **options[2])
        return buffer.getvalue()
    flags = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if kind == "jpeg_progressive" else []
    extension = {"jpeg_progressive": ".jpg", "webp": ".webp"}.get(kind, "." + kind)
    return cv2.imencode(extension, rgb[..., ::-1], flags)[1].tobytes()


FORMATS = ["png", "jpg", "jpeg_progressive", "bmp", "gif", "webp", "webp_vp8x", "webp_lossless"]


@pytest.mark.parametrize("kind", FORMATS)
def test_declared_size_reads_the_header_of_every_format(kind):
    encoded = _encoded(photo(37, 53), kind)
    size = tf.function(signatures.declared_size)
    assert [int(v) for v in size(tf.constant(encoded))] == [37, 53, signatures.SIZE_READ]
    assert tf.io.decode_image(encoded, expand_animations=False).shape[:2] == (37, 53)


def test_declared_size_of_unusual_and_broken_headers():
    size = tf.function(signatures.declared_size)
    jpeg = _encoded(photo(37, 53), "jpg")
    # The Huffman tables (C4, not frame headers) moved before the frame header, fill bytes and
    # stray bytes before markers: libjpeg reads all of these.
    segments, at = [], 2
    while jpeg[at + 1] != 0xDA:
        end = at + 2 + jpeg[at + 2] * 256 + jpeg[at + 3]
        segments.append(jpeg[at:end])
        at = end
    tables = [segment for segment in segments if segment[1] == 0xC4]
    others = [b"\xff\xff" + segment for segment in segments if segment[1] != 0xC4]
    unusual = jpeg[:2] + b"".join(tables) + b"\x00\x17" + b"".join(others) + jpeg[at:]
    assert len(tables) == 4 and tf.io.decode_jpeg(unusual).shape[:2] == (37, 53)
    bmp = bytearray(_encoded(photo(37, 53), "bmp"))
    bmp[22:26] = struct.pack("<i", -37)  # top-down rows
    cases = {
        unusual: [37, 53, signatures.SIZE_READ],
        bytes(bmp): [37, 53, signatures.SIZE_READ],
        _jpeg_with_size(jpeg, 65000, 65001): [65000, 65001, signatures.SIZE_READ],
        _png_with_size(_encoded(photo(4, 4), "png"), 100000, 99999): [100000, 99999, signatures.SIZE_READ],
        b"not an image": [0, 0, signatures.SIZE_UNKNOWN_FORMAT],
        b"": [0, 0, signatures.SIZE_UNKNOWN_FORMAT],
        jpeg[:120]: [0, 0, signatures.SIZE_UNREADABLE],  # cut before its frame header
        b"\xff\xd8\xff\xda\x00\x08" + bytes(40): [0, 0, signatures.SIZE_UNREADABLE],  # a scan before any frame
        b"\xff\xd8\xff\xe0\x00\x01" + bytes(40): [0, 0, signatures.SIZE_UNREADABLE],  # a length below 2
        b"\xff\xd8" + b"\xff\xfe\x00\x02" * 5000: [0, 0, signatures.SIZE_UNREADABLE],  # too many markers
        _encoded(photo(4, 4), "png")[:20]: [0, 0, signatures.SIZE_UNREADABLE],
        b"BM" + bytes(10): [0, 0, signatures.SIZE_UNREADABLE],
        b"GIF89a\x05": [0, 0, signatures.SIZE_UNREADABLE],
        b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(30): [0, 0, signatures.SIZE_UNREADABLE],  # no start code
        b"\xff\x0a" + bytes(30): [0, 0, signatures.SIZE_REFUSED_FORMAT],  # JPEG XL
    }
    for encoded, expected in cases.items():
        assert [int(v) for v in size(tf.constant(encoded))] == expected, encoded[:24]


def test_serving_default_refuses_declared_huge_images_before_decoding(tiny_checkpoint, tmp_path):
    directory = job.export(tiny_checkpoint, tmp_path, warmup=False, max_pixels=40 * 40)
    serve = tf.saved_model.load(directory).signatures["serving_default"]
    rgb = photo(40, 40)
    png, mask = _encoded(rgb, "png"), tf.io.encode_png(box_mask(40, 40, 8, 8, 16, 16)[..., None].astype(np.uint8) * 255)
    too_many = r"serving_default: the image has more pixels \(height x width\) than the 1600 this model"
    # Headers declaring sizes whose decoding fails in its own way: the header is read first.
    for image in (_png_with_size(png, 100000, 100000), _jpeg_with_size(_encoded(rgb, "jpg"), 65000, 65000),
                  _png_with_size(png, 2 ** 32 - 1, 2 ** 32 - 1)):  # a product that overflows int64
        with pytest.raises(tf.errors.InvalidArgumentError, match=too_many):
            serve(image_bytes=tf.constant([image]), mask_bytes=tf.stack([mask]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=too_many):  # a mask is checked as well
        serve(image_bytes=tf.constant([png]), mask_bytes=tf.constant([_png_with_size(mask.numpy(), 40, 100000)]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="serving_default: image_bytes: the image header is "
                                                             "truncated or holds no size; send a complete"):
        serve(image_bytes=tf.constant([png[:20]]), mask_bytes=tf.stack([mask]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="serving_default: mask_bytes: the image header is "
                                                             "truncated"):
        serve(image_bytes=tf.constant([png]), mask_bytes=tf.constant([b"\xff\xd8\xff\xda\x00\x08" + bytes(40)]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="serving_default: image_bytes: JPEG XL is not accepted"):
        serve(image_bytes=tf.constant([b"\xff\x0a" + bytes(30)]), mask_bytes=tf.stack([mask]))
    # A real, complete 16000 x 16000 PNG of 746 KB: decoding it would take seconds and gigabytes.
    huge = _huge_png(16000)
    assert len(huge) < 800_000 and [int(v) for v in signatures.declared_size(huge)] == [16000, 16000, 0]
    start = time.perf_counter()
    with pytest.raises(tf.errors.InvalidArgumentError, match=too_many):
        serve(image_bytes=tf.constant([huge]), mask_bytes=tf.stack([mask]))
    assert time.perf_counter() - start < 5
    # Images of every format within the limit are inpainted, the pixels outside the hole kept.
    hole = box_mask(40, 40, 8, 8, 16, 16) > 0.5
    for kind in FORMATS:
        encoded = _encoded(rgb, kind)
        output = tf.io.decode_png(serve(image_bytes=tf.constant([encoded]), mask_bytes=tf.stack([mask]))
                                  ["output_bytes"][0]).numpy()
        np.testing.assert_array_equal(output[~hole], sources.decode_rgb(encoded).numpy()[~hole], err_msg=kind)


@pytest.mark.parametrize("kind", ["gray", "gray16", "colour", "alpha_strokes", "opaque_alpha"])
def test_mask_bytes_follow_the_command_line_rules(kind, tmp_path):
    rng = np.random.default_rng(5)
    gray = rng.integers(120, 136, (12, 16)).astype(np.uint8)  # around the threshold 127/128
    arrays = {
        "gray": gray,
        "gray16": gray.astype(np.uint16) * 257 + rng.integers(0, 257, (12, 16)).astype(np.uint16),
        "colour": rng.integers(0, 256, (12, 16, 3)).astype(np.uint8),
        "alpha_strokes": np.dstack([rng.integers(0, 256, (12, 16, 3)), gray]).astype(np.uint8),
        "opaque_alpha": np.dstack([rng.integers(0, 256, (12, 16, 3)), np.full((12, 16), 255)]).astype(np.uint8),
    }
    path = tmp_path / "mask.png"
    cv2.imwrite(str(path), arrays[kind])
    expected = imageio.read_mask(path)
    holes = masks.holes_from_bytes(tf.constant(path.read_bytes())).numpy()  # what serving reads
    np.testing.assert_array_equal(holes, expected > 0.5)
    assert 0 < holes.sum() < holes.size


def test_export_command(tiny_checkpoint, tmp_path):
    export_dir = tmp_path / "exported"
    result = run_module("export", "--checkpoint", tiny_checkpoint, "--export_dir", export_dir,
                        "--nowarmup", "--version", 7, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert str(export_dir / "7" / "saved_model.pb") in result.stdout.split()
    assert saved_model.versions(export_dir) == [7]
    again = run_module("export", "--checkpoint", tiny_checkpoint, "--export_dir", export_dir,
                       "--version", 7, cwd=REPO)
    assert_user_error(again, "7 exists already")
    bad = run_module("export", "--checkpoint", tiny_checkpoint, "--export_dir", export_dir,
                     "--tflite_size", "256", cwd=REPO)
    assert_user_error(bad, "--tflite_size needs --tflite")
    missing = run_module("export", "--checkpoint", tmp_path / "nothing", "--export_dir", export_dir, cwd=REPO)
    assert_user_error(missing, "nothing")
    assert saved_model.versions(export_dir) == [7]


def _op_counts(directory):
    """{op name: how many nodes} over the functions of a SavedModel."""
    from tensorflow.core.protobuf import saved_model_pb2

    with open(os.path.join(directory, "saved_model.pb"), "rb") as f:
        saved = saved_model_pb2.SavedModel.FromString(f.read())
    graph = saved.meta_graphs[0].graph_def
    return collections.Counter(node.op for function in graph.library.function for node in function.node_def)


def test_export_with_an_attention_budget_computes_blocks_in_the_graph_loader(tiny_checkpoint, tiny_export,
                                                                            tiny_inpainter, tmp_path):
    # 64x96: an 8x12 attention grid; 0.08 MB allows one grid row per block (attention.block_rows_for).
    result = run_module("export", "--checkpoint", tiny_checkpoint, "--export_dir", tmp_path / "exported",
                        "--nowarmup", "--attention_memory_mb", 0.08, cwd=REPO)
    assert result.returncode == 0, result.stderr
    directory = tmp_path / "exported" / "1"
    # Both signatures gain the block loop (the bytes one has a loop over the batch already).
    loops = lambda ops: ops["While"] + ops["StatelessWhile"]
    assert loops(_op_counts(directory)) == loops(_op_counts(tiny_export)) + 2
    rgb, mask = photo(64, 96), box_mask(64, 96, 20, 30, 16, 24)
    np.save(tmp_path / "image.npy", rgb[None].astype(np.float32))
    np.save(tmp_path / "mask.npy", mask[None, :, :, None])
    out = _saved_model_cli(directory, "inpaint", {"image": tmp_path / "image.npy", "mask": tmp_path / "mask.npy"},
                           tmp_path / "out")
    expected, flow = _expected(tiny_inpainter, rgb, mask)  # unchunked
    assert np.abs(out["inpainted"][0] - expected).max() <= 0.05
    np.testing.assert_array_equal(out["flow"][0], flow)
    bad = run_module("export", "--checkpoint", tiny_checkpoint, "--export_dir", tmp_path / "bad",
                     "--attention_memory_mb", -1, cwd=REPO)
    assert_user_error(bad, "--attention_memory_mb must be positive")


@pytest.mark.slow
def test_reference_v1_export_matches_in_process(official_checkpoint, tmp_path):
    ref = load_reference("v1", "g_256x256_b1.npz")
    rgb = ref["image_u8_bgr"][0][..., ::-1]
    mask = ref["mask"][0, :, :, 0]
    directory = job.export(official_checkpoint("v1"), tmp_path / "export", warmup=False)
    np.save(tmp_path / "image.npy", rgb[None].astype(np.float32))
    np.save(tmp_path / "mask.npy", mask[None, :, :, None].astype(np.float32))
    out = _saved_model_cli(directory, "inpaint", {"image": tmp_path / "image.npy",
                                                  "mask": tmp_path / "mask.npy"}, tmp_path / "out")
    inpainter = Inpainter(store.load_generator(official_checkpoint("v1")))
    expected, flow = _expected(inpainter, rgb, mask)
    assert np.abs(out["inpainted"][0] - expected).max() <= 0.05
    np.testing.assert_array_equal(out["flow"][0], flow)
    # And the original network's own output, pasted into the hole.
    original = np.where(mask[..., None] > 0.5, (ref["x_stage2"][0][..., ::-1] + 1) * 127.5, rgb)
    assert np.abs(out["inpainted"][0] - original).max() <= 0.05
