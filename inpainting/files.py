"""Writing files so that nobody sees a partial one, and an existing one is replaced only when asked.

Every file this package writes (configs, summaries, images, TFLite models) goes through a
temporary file in the destination's folder, which is renamed into place once complete: an
interrupted write never leaves a partial file, nor destroys the file that was there.
"""

import json
import os
import secrets


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
