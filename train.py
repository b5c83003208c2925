"""Train DeepFill: `python train.py --flagfile=configs/places2.cfg` (see `python train.py --help`).

Ctrl-C or SIGTERM saves a checkpoint after the current step and stops (Ctrl-C twice: at once, with
the weights of that moment). One run at a time per --model_dir: a second one is refused while the
first runs (a lock the system releases when the first dies, even by SIGKILL).

Exit status: 0 finished, or stopped by --max_minutes; 1 an error (one `error: ...` line);
143 (128 + SIGTERM) stopped by SIGTERM after saving its checkpoint, so Kubernetes and batch
systems count a preempted job as terminated, not as done; 130 (128 + SIGINT) stopped by Ctrl-C
after saving.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow C++ notices (Grappler fallbacks) would drown the progress

from absl import app, logging  # noqa: E402

from inpainting import cli  # noqa: E402
from inpainting.training import flags  # noqa: E402


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; every setting is a --flag")
    if not app.FLAGS["verbosity"].present:  # TensorFlow's INFO lines would drown the progress
        logging.set_verbosity(logging.WARNING)
    with cli.user_errors():
        from inpainting.training import stopping, trainer

        config = flags.config_from_flags()
        result = trainer.train(config)
    return stopping.exit_status(result)  # absl's app.run exits with it


if __name__ == "__main__":
    flags.define_flags()
    app.run(main)
