"""The folder lock of train.py and export.py: exclusive, non-blocking, released when its process dies."""

import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO
from inpainting import cli, locks
from inpainting.errors import ExportError, InpaintingError


def test_second_holder_is_refused_until_the_first_releases(tmp_path):
    first = locks.DirectoryLock(tmp_path / "run", "job", "dir").acquire()
    assert first.held and os.path.isfile(tmp_path / "run" / ".lock")
    assert open(tmp_path / "run" / ".lock").read().startswith(f"pid {os.getpid()} on ")
    second = locks.DirectoryLock(tmp_path / "run", "job", "dir", error=ExportError)
    with pytest.raises(ExportError, match=rf"^dir={tmp_path / 'run'} is in use by another job \(pid "
                                          rf"{os.getpid()} on .* since .*\); wait for it to end or stop it, "
                                          r"or use another dir$") as refused:
        second.acquire()
    # The command-line tools name the parameter as their flag.
    assert cli.message(refused.value).startswith(f"--dir={tmp_path / 'run'} is in use")
    assert cli.message(refused.value).endswith("or use another --dir")
    assert not second.held
    first.release()
    with second:
        assert second.held
        with pytest.raises(InpaintingError, match="is in use by another job"):
            first.acquire()
    assert not second.held
    first.acquire().release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    script = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from inpainting import locks; "
              f"lock = locks.DirectoryLock({str(tmp_path)!r}, 'job', 'dir').acquire(); "
              "print('locked', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(InpaintingError, match=rf"in use by another job \(pid {holder.pid} on "):
            locks.DirectoryLock(tmp_path, "job", "dir").acquire()
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=60) == -signal.SIGKILL
    finally:
        holder.kill()
        holder.wait()
    lock = locks.DirectoryLock(tmp_path, "job", "dir").acquire()
    assert open(tmp_path / ".lock").read().startswith(f"pid {os.getpid()} on ")
    lock.release()


def test_a_file_where_a_folder_is_expected(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(ExportError, match=rf"^dir={path} is a file, not a folder; give a folder path"):
        locks.DirectoryLock(path, "job", "dir", error=ExportError).acquire()
    with pytest.raises(InpaintingError, match=rf"^dir={path / 'sub'}: cannot create the folder: "):
        locks.make_directory(path / "sub", "dir")
    # A name given as a flag already is written as it is.
    with pytest.raises(InpaintingError, match=rf"^--dir={path} is a file") as refused:
        locks.refuse_file(path, "--dir")
    assert cli.message(refused.value).startswith(f"--dir={path} is a file")
    assert path.read_text() == "keep me"
    assert locks.make_directory(tmp_path / "a" / "b", "dir") == str(tmp_path / "a" / "b")
    assert os.path.isdir(tmp_path / "a" / "b")
