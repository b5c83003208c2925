"""Train DeepFill: `python train.py --flagfile=configs/places2.cfg` (see `python train.py --help`)."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow C++ notices (Grappler fallbacks) would drown the progress

from absl import app, logging  # noqa: E402

from inpainting import cli, flags  # noqa: E402


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; every setting is a --flag")
    if not app.FLAGS["verbosity"].present:  # TensorFlow's INFO lines would drown the progress
        logging.set_verbosity(logging.WARNING)
    with cli.user_errors():
        from inpainting import training

        config = flags.config_from_flags()
        result = training.train(config)
    if result.get("exit_status"):  # a cluster stopped for a SIGTERM: the orchestrator restarts it
        sys.exit(result["exit_status"])


if __name__ == "__main__":
    flags.define_flags()
    app.run(main)
