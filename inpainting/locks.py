"""A folder that is not a file, and an exclusive lock on a folder held by one process at a time.

    with DirectoryLock("runs/places2", "train.py run", "model_dir"):
        ...  # no other holder of this lock until the block ends

The lock is `fcntl.flock` on a lock file inside the folder. The kernel releases it when the
process ends in any way, SIGKILL and crashes included, so a dead run never leaves it stuck; the
file itself stays (removing it would let two processes lock two different files).

File systems: on a local disk the lock works between all processes of the machine. On NFS, Linux
turns flock into an NFS byte-range lock (NFSv4, or NFSv3 with the lock daemon), so it works
between machines too, unless the mount has `nolock`/`local_lock=flock|all`, where it is only seen
by the processes of the same machine. Where the file system has no locks at all (some FUSE mounts
such as object-store buckets; `ENOLCK`, `EOPNOTSUPP`, `ENOSYS`) and for URLs (`gs://...`), the
folder is used without a lock and a warning says so: do not start two jobs in it at once there.
"""

import errno
import fcntl
import os
import socket
import sys
import time

from inpainting.errors import PLACEHOLDER, InpaintingError

_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _error(error, flag, message):
    """`error(message)`, whose `{parameter}` is `flag`: a parameter's name, which the command-line
    tools print as a flag, or a name beginning with "--", which is written as it is."""
    if flag.startswith("-"):
        return error(message.replace(PLACEHOLDER, flag))
    return error(message, parameter=flag)


def refuse_file(path, flag, error=InpaintingError):
    """`error` naming `flag` if `path` is an existing file (or anything else but a folder)."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise _error(error, flag, f"{{parameter}}={path} is a file, not a folder; give a folder path (it "
                     "is created if missing)")


def make_directory(path, flag, error=InpaintingError):
    """Creates folder `path` (and its parents) if missing; `error` naming `flag` if it cannot be one."""
    path = os.fspath(path)
    if "://" in path:  # a URL (gs://, s3://): TensorFlow's file system creates it
        return path
    refuse_file(path, flag, error)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:  # a parent that is a file, no permission, read-only file system, ...
        raise _error(error, flag, f"{{parameter}}={path}: cannot create the folder: "
                     f"{err.strerror or err}") from None
    return path


class DirectoryLock:
    """An exclusive, non-blocking lock on a folder; see the module docstring.

    Args:
        directory: the folder (created if missing).
        holder: who takes the lock, for messages, e.g. "train.py".
        flag: the parameter that named the folder, for messages, e.g. "model_dir" (which the
            command-line tools print as `--model_dir`), or a flag as it is written, "--model_dir".
        name: the lock file's name inside the folder.
        error: the `InpaintingError` subclass raised when the folder is locked or unusable.

    `acquire()` raises `error` at once when another process (or another `DirectoryLock` of this
    process) holds the lock, naming its process id, host and start time. Locks of one process
    on one folder exclude each other too (flock locks belong to the open file, not the process).
    """

    def __init__(self, directory, holder, flag, name=".lock", error=InpaintingError):
        self.directory = os.fspath(directory)
        self.holder = holder
        self.flag = flag
        self.path = os.path.join(self.directory, name)
        self.error = error
        self.held = False
        self._file = None

    def acquire(self):
        """Takes the lock (a no-op if this object holds it already); returns self."""
        if self.held:
            return self
        make_directory(self.directory, self.flag, self.error)
        if "://" in self.directory:
            _warn(f"{self.flag}={self.directory} is a URL: no lock can be taken there, so nothing "
                  f"stops a second {self.holder} from using it at the same time")
            self.held = True
            return self
        try:
            file = open(self.path, "a+", encoding="utf-8")
        except OSError as err:
            raise _error(self.error, self.flag, f"{{parameter}}={self.directory}: cannot create the lock "
                         f"file {self.path}: {err.strerror or err}") from None
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            owner = file.read().strip()
            file.close()
            raise _error(self.error, self.flag, f"{{parameter}}={self.directory} is in use by another "
                         f"{self.holder} ({owner or 'a process starting now'}); wait for it to end or "
                         "stop it, or use another {parameter}") from None
        except OSError as err:
            if err.errno not in _NO_LOCKS:
                file.close()
                raise _error(self.error, self.flag, f"{{parameter}}={self.directory}: cannot lock "
                             f"{self.path}: {err.strerror or err}") from None
            _warn(f"the file system of {self.flag}={self.directory} does not support locks "
                  f"({err.strerror}): nothing stops a second {self.holder} from using it at the same time")
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
        file.flush()
        self._file, self.held = file, True
        return self

    def release(self):
        """Gives the lock up (closing the file releases it); a no-op if not held."""
        file, self._file, self.held = self._file, None, False
        if file is not None:
            file.close()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _warn(message):
    print(f"warning: {message}", file=sys.stderr, flush=True)
