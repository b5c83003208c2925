"""Converts an original DeepFill TF1 checkpoint into a checkpoint directory of this package.

    python -m inpainting.checkpoints.convert --checkpoint=release_places2_256 --version=v1 --output=places2_v1
    python -m inpainting.checkpoints.convert --checkpoint=release_places2_256_v2 --version=v2 --output=places2_v2

The critics are converted too when the checkpoint has them (for fine-tuning).
"""

import os

from inpainting.checkpoints import store
from inpainting.checkpoints.reading import resolve_prefix
from inpainting.checkpoints.tf1 import (build_critics, build_generator, check_guided, check_version, has_critics,
                                        read_variables)
from inpainting.config import VERSIONS
from inpainting.errors import CheckpointError


def check_output(path, output):
    """Raises CheckpointError for a conversion `output` that cannot be written or would damage `path`.

    `output` must be a folder (or not exist yet), and not the folder of the original checkpoint,
    whose `checkpoint` state file the conversion would replace.
    """
    output = os.fspath(output)
    if os.path.exists(output) and not os.path.isdir(output):
        raise CheckpointError(f"{output}: is a file; {{parameter}} must be a folder (a new one, or one "
                              "holding a checkpoint to replace)", parameter="output")
    source = os.path.dirname(resolve_prefix(path)) or "."
    if os.path.exists(output) and os.path.samefile(source, output):
        raise CheckpointError(f"{output}: is the folder of the original checkpoint, whose "
                              "`checkpoint` file the conversion would replace; choose another {parameter}",
                              parameter="output")


def convert(path, output, version="v1", overwrite=False, guided=None):
    """Converts an original checkpoint into a checkpoint directory of this project.

    The critics are converted too when the checkpoint has them (for fine-tuning).

    Args:
        path: original checkpoint folder or prefix.
        output: directory to write (`model_config.json` and a TF2 checkpoint).
        version: "v1" or "v2".
        overwrite: replace a checkpoint already in `output`.
        guided: as for `load_official_generator`.

    Returns:
        The path of the written checkpoint.

    Raises:
        CheckpointError: the checkpoint cannot be converted, `output` is a file or the original
            checkpoint's own folder, or holds a checkpoint and not `overwrite`.
    """
    check_output(path, output)
    variables = read_variables(path)
    check_version(variables, version, path)
    check_guided(variables, guided, path)
    generator = build_generator(variables, path)
    critics = build_critics(variables, path) if has_critics(variables) else None
    return store.save(output, generator, critics, overwrite=overwrite)


def main(argv):
    from absl import flags

    from inpainting import cli

    del argv
    FLAGS = flags.FLAGS
    with cli.user_errors(flag_names={"path": "checkpoint"}):
        written = convert(FLAGS.checkpoint, FLAGS.output, FLAGS.version, FLAGS.overwrite, FLAGS.guided)
        print(f"wrote {written} (model config in {FLAGS.output}/model_config.json)")


def define_flags():
    from absl import flags

    flags.DEFINE_string("checkpoint", None, "Original DeepFill TF1 checkpoint folder or prefix.",
                        required=True)
    flags.DEFINE_enum("version", "v1", list(VERSIONS), "DeepFill version of the checkpoint.")
    flags.DEFINE_string("output", None, "Checkpoint directory to write (not the folder of "
                        "--checkpoint).", required=True)
    flags.DEFINE_bool("overwrite", False, "Replace a checkpoint that already exists in --output.")
    flags.DEFINE_bool("guided", None, "v2: require a sketch-guided (--guided) or an unguided "
                      "(--noguided) checkpoint; default: take what the checkpoint holds.")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up notices off the console
    from absl import app

    define_flags()
    app.run(main)
