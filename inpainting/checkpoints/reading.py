"""Finding and reading checkpoint files, in this package's format or the original TF1 one.

A checkpoint is named by its prefix (`.../ckpt-4`, `.../snap-0`): the `.index` file and the
`.data-*` shards beside it. A folder stands for the prefix its `checkpoint` state file names.
"""

import glob
import os
import re

import tensorflow as tf

from inpainting.errors import CheckpointError


# Google Drive renames the `checkpoint` state file when a folder is downloaded.
STATE_FILES = ("checkpoint", "checkpoint.txt")


def _prefix_from_state_file(directory):
    for name in STATE_FILES:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            match = re.search(r'^model_checkpoint_path:\s*"(.*)"', f.read(), re.MULTILINE)
        if match:
            # The recorded path may be absolute on the authors' machine: only its name counts.
            prefix = os.path.join(directory, os.path.basename(match.group(1)))
            if os.path.isfile(prefix + ".index"):
                return prefix
    return None


def resolve_prefix(path):
    """The checkpoint prefix (`.../snap-0`) for a checkpoint folder or prefix.

    Raises:
        CheckpointError: nothing loadable at `path`.
    """
    path = os.fspath(path)
    if os.path.isfile(path + ".index"):
        return path
    if path.endswith(".index") and os.path.isfile(path):
        return path[:-len(".index")]
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: no such checkpoint folder or prefix (expected a folder with "
                              "checkpoint, *.index and *.data-* files)")
    prefix = _prefix_from_state_file(path)
    if prefix:
        return prefix
    indexes = sorted(n[:-len(".index")] for n in os.listdir(path) if n.endswith(".index"))
    if len(indexes) == 1:
        return os.path.join(path, indexes[0])
    if not indexes:
        raise CheckpointError(f"{path}: no *.index file; this folder holds no TF checkpoint")
    raise CheckpointError(f"{path}: several checkpoints ({', '.join(indexes)}) and no `checkpoint` "
                          "file naming one; pass the prefix of one, e.g. " + os.path.join(path, indexes[-1]))


def has_files(prefix):
    """Whether the checkpoint at `prefix` has both its `.index` and its `.data-*` files."""
    return os.path.isfile(prefix + ".index") and bool(glob.glob(glob.escape(prefix) + ".data-*"))


def complete_checkpoints(directory):
    """The prefixes of the checkpoints in `directory` whose `.index` and `.data-*` files are both
    there (`has_files`), in the order of the number ending their names (`ckpt-5` before `ckpt-20`)."""
    prefixes = [os.path.join(directory, name[:-len(".index")]) for name in os.listdir(directory)
                if name.endswith(".index")]
    found = [prefix for prefix in prefixes if has_files(prefix)]

    def number(prefix):
        match = re.search(r"(\d+)$", prefix)
        return (int(match.group(1)) if match else -1, prefix)

    return sorted(found, key=number)


def missing_files(prefix):
    """Why the checkpoint at `prefix` cannot be read because files are missing, or None.

    A `checkpoint` state file can name a checkpoint whose files were deleted (by hand, or by a
    cleaning job); TensorFlow then only reports a failed reader.
    """
    if has_files(prefix):
        return None
    directory, name = os.path.split(prefix)
    state = os.path.join(directory, STATE_FILES[0])
    others = [os.path.basename(p) for p in complete_checkpoints(directory)] if os.path.isdir(directory) else []
    held = (f"the folder holds {', '.join(others)}: to go on from one of them, set "
            f"model_checkpoint_path in {state} to it (e.g. \"{others[-1]}\")") if others else \
        "the folder holds no other complete checkpoint"
    return f"{state} names {name}, but {name}'s files ({name}.index, {name}.data-*) are missing; {held}"


# What TensorFlow raises when a checkpoint's files are shorter than its index says (an
# interrupted copy or download): the reader's IndexError, or the restore op's DataLossError.
DAMAGED_ERRORS = (IndexError, tf.errors.DataLossError, tf.errors.OutOfRangeError)


def damaged_error(prefix, err):
    """The CheckpointError for a checkpoint whose files cannot be read in full."""
    return CheckpointError(f"{prefix}: the checkpoint is damaged or truncated ({str(err).splitlines()[0]}); "
                           "its .data file is probably incomplete: copy it again from where it came from "
                           "(or download it again), or use another checkpoint")
