"""Writing files so that nobody sees a partial one, and an existing one is replaced only when asked.

Every file this package writes (configs, summaries, images, TFLite models) goes through a
temporary file in the destination's folder, which is renamed into place once complete: an
interrupted write never leaves a partial file, nor destroys the file that was there. A full disk
is told apart from other failures (`disk_full`), so the tools can say which folder needs space.
"""

import errno
import json
import os
import secrets
import shutil

# A full disk, and a full disk quota.
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


def write_bytes(path, data, overwrite=True):
    """Writes `data` to `path` atomically, creating its folder.

    Args:
        path: the file to write.
        data: bytes.
        overwrite: replace an existing file. Without it, a file at `path` (also one that
            appears while this one is written, where the file system has hard links) is kept
            and FileExistsError is raised.

    Raises:
        FileExistsError: `path` exists and not `overwrite`.
        OSError: the folder or the file cannot be written.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    try:
        # O_EXCL: never follow or reuse an existing name; 0o666 lets the umask decide permissions.
        handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if not overwrite:
            try:
                os.link(temp, path)  # fails where a file appeared since the caller's check
                return
            except FileExistsError:
                raise FileExistsError(f"{path}: file exists") from None
            except OSError:  # no hard links on this file system: the check and the rename
                if os.path.lexists(path):
                    raise FileExistsError(f"{path}: file exists") from None
        os.replace(temp, path)
    finally:
        if os.path.lexists(temp):
            os.remove(temp)


def write_text(path, text, overwrite=True):
    """Writes `text` as UTF-8 to `path` (see `write_bytes`)."""
    write_bytes(path, text.encode("utf-8"), overwrite)


def write_json(path, values, overwrite=True):
    """Writes `values` as indented JSON with sorted keys to `path` (see `write_bytes`)."""
    write_text(path, json.dumps(values, indent=2, sort_keys=True) + "\n", overwrite)


def disk_full(err):
    """Whether `err` says the disk (or the user's disk quota) is full: an OSError, or a
    TensorFlow error, which carries the C library's message ("No space left on device")."""
    if getattr(err, "errno", None) in FULL_DISK:
        return True
    return any(os.strerror(code) in str(err) for code in FULL_DISK)


def free_space(path):
    """The bytes free for this user on the file system of `path` (or of its nearest existing
    parent), or None where that cannot be read (a URL)."""
    path = os.path.abspath(os.fspath(path))
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def folder_size(path):
    """The bytes of the files below `path` (0 where it is missing)."""
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


def describe_size(size):
    """A byte count for messages: "750 KB", "32.0 MB", "1.5 GB"."""
    if size >= 2**30:
        return f"{size / 2**30:.1f} GB"
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"
