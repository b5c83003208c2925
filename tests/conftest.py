"""Shared test helpers: the reference folder, its extracted checkpoints, and small utilities."""

import os
import pathlib
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
CPU_DEVICES = 2  # logical CPU devices, so MirroredStrategy can be tested on one CPU


def _split_cpu():
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * CPU_DEVICES)


_split_cpu()


def pytest_report_header(config):
    from onednn import onednn_enabled

    from inpainting.model import layers

    gradient = "TensorFlow's" if layers.native_dilated_gradients() else "space-to-batch"
    return (f"oneDNN {'on' if onednn_enabled() else 'off'} (TF_ENABLE_ONEDNN_OPTS="
            f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}); gradients of dilated convolutions: {gradient}")
REFERENCE = pathlib.Path(
    os.environ.get("INPAINTING_REFERENCE", REPO.parent / "shared" / "reference" / "deepfill"))


def reference_path(*parts):
    """Path of a file in the DeepFill reference folder; skips the test when the folder is absent."""
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not found: {path} (the ../shared/reference/deepfill folder is absent)")
    return path


def load_reference(*parts):
    """The arrays of one reference npz file, as a dict."""
    with np.load(reference_path(*parts)) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def official_checkpoint(tmp_path_factory):
    """Extracts a reference TF1 checkpoint once per session; returns a function version -> ckpt folder."""
    extracted = {}

    def get(version="v1"):
        if version not in extracted:
            archive = reference_path(version, "checkpoint.tar.xz")
            target = tmp_path_factory.mktemp(f"official_{version}")
            with tarfile.open(archive) as tar:
                tar.extractall(target, filter="data")
            extracted[version] = target / "ckpt"
        return extracted[version]

    return get


def photo(height, width, seed=0):
    """A smooth colour image with some noise, uint8 [H, W, 3] RGB."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    base = np.stack([rows * 200 / height, cols * 200 / width, (rows + cols) * 100 / (height + width)], -1)
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def photo_with_box(height, width, seed=0):
    """(a noisy colour gradient uint8 [H, W, 3] RGB, a float32 [H, W] mask of the middle box: half
    the height, a third of the width): the exported models' test inputs."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    rgb = np.stack([rows * 255 / height, cols * 255 / width, np.full((height, width), 128.0)], -1)
    rgb = np.clip(rgb + rng.normal(0, 15, rgb.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), np.float32)
    mask[height // 4:height * 3 // 4, width // 3:width * 2 // 3] = 1
    return rgb, mask


def box_mask(height, width, top, left, h, w):
    """float32 [height, width] mask, 1 in the h x w box at (top, left)."""
    mask = np.zeros((height, width), np.float32)
    mask[top:top + h, left:left + w] = 1
    return mask


def run_module(module, *args, cwd=None):
    """Runs `python -m module args...` in a fresh process; returns the CompletedProcess."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


def stop_process(process, seconds=30):
    """Stops a process a test started: SIGTERM, then SIGKILL if it is still running after `seconds`."""
    process.terminate()
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(seconds)


def assert_user_error(result, *fragments):
    """A CLI run that failed with one `error: ...` line naming `fragments`, and no traceback."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture
def small_disk(tmp_path):
    """A function: size (tmpfs's size=, e.g. "150m") -> a folder on a new tmpfs of that size, unmounted
    when the test ends. Skips the test where no tmpfs can be mounted (not root, no permission)."""
    mounted = []

    def mount(size):
        if os.geteuid() != 0:
            pytest.skip("a full disk is tested on a small tmpfs, which only root can mount")
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)],
                                capture_output=True, text=True, timeout=60)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs for the full-disk test: {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        # Lazily where this process still holds a file there open (a summary writer the garbage
        # collector has not closed yet): the memory is freed when it closes.
        if subprocess.run(["umount", str(point)], capture_output=True, timeout=60).returncode:
            subprocess.run(["umount", "--lazy", str(point)], check=True, timeout=60)


def remount_read_only(point):
    """Makes a `small_disk` folder read-only (for root too)."""
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True, timeout=60)


def fill_disk(folder):
    """Fills the disk of `folder` with a file `filler` there, until no byte is left."""
    chunk = b"\0" * 2**20
    with open(os.path.join(folder, "filler"), "wb", buffering=0) as handle:
        while chunk:
            try:
                handle.write(chunk)
            except OSError:
                chunk = chunk[:len(chunk) // 2]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A checkpoint directory holding a randomly initialised cnum=4 v1 generator and its critics."""
    import tensorflow as tf

    from inpainting.checkpoints import store
    from inpainting.config import ModelConfig
    from inpainting.model.critics import Critics
    from inpainting.model.generator import Generator

    tf.keras.utils.set_random_seed(1)
    config = ModelConfig(cnum=4, image_size=(64, 64), local_size=(32, 32))
    generator = Generator(config)
    generator.build()
    critics = Critics(config)
    critics.build()
    directory = tmp_path_factory.mktemp("tiny") / "model"
    store.save(directory, generator, critics)
    return directory


def with_a_deleted_checkpoint(tiny_checkpoint, directory):
    """A copy of the tiny checkpoint folder (ckpt-0) that also holds ckpt-5 (a copy of it), whose
    `checkpoint` state file names ckpt-20, deleted."""
    shutil.copytree(tiny_checkpoint, directory)
    for name in os.listdir(directory):
        if name.startswith("ckpt-0."):
            shutil.copy(directory / name, directory / name.replace("ckpt-0.", "ckpt-5."))
    (directory / "checkpoint").write_text('model_checkpoint_path: "ckpt-20"\n' + "".join(
        f'all_model_checkpoint_paths: "ckpt-{n}"\n' for n in (0, 5, 20)))
    return directory


# The message about the folder `with_a_deleted_checkpoint` makes (`.format(folder)`).
DELETED_CHECKPOINT = ("{0}/checkpoint names ckpt-20, but ckpt-20's files (ckpt-20.index, ckpt-20.data-*) "
                      "are missing; the folder holds ckpt-0, ckpt-5: to go on from one of them, set "
                      "model_checkpoint_path in {0}/checkpoint to it (e.g. \"ckpt-5\")")


def write_tf1_checkpoint(directory, variables, name="snap-0", state_file="checkpoint", recorded=None):
    """Writes a name-based (TF1 Saver layout) checkpoint and its state file."""
    import tensorflow as tf

    os.makedirs(directory, exist_ok=True)
    prefix = os.path.join(directory, name)
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(variables[n]) for n in names])
    if state_file:
        with open(os.path.join(directory, state_file), "w") as f:
            f.write(f'model_checkpoint_path: "{recorded or name}"\n'
                    f'all_model_checkpoint_paths: "{recorded or name}"\n')
    return prefix


@pytest.fixture(scope="module")
def reference_variables(official_checkpoint):
    """The variables of the reference v1 (TF1) checkpoint, by name."""
    from inpainting.checkpoints import tf1

    return tf1.read_variables(official_checkpoint("v1"))


@pytest.fixture(scope="module")
def v2_variables(official_checkpoint):
    """The variables of the reference v2 (TF1) checkpoint, by name."""
    from inpainting.checkpoints import tf1

    return tf1.read_variables(official_checkpoint("v2"))
