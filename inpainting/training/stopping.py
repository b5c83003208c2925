"""How a training run stops on a signal, and the exit status it then ends with.

SIGINT and SIGTERM request a stop after the current step (`StopRequest`); `exit_status` turns
the way a run ended into `train.py`'s status, as a shell reports a process killed by that signal.
"""

import signal
import sys


class StopRequest:
    """Turns SIGINT and SIGTERM into a request to stop after the current step.

    A second Ctrl-C interrupts the step in progress at once; the weights are saved as they are
    then, so a run resumed from that checkpoint is close to, not exactly, the uninterrupted one.
    """

    def __init__(self):
        self.requested = None

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        print(f"\n{self.requested}: saving a checkpoint after this step (Ctrl-C again to stop now)",
              file=sys.stderr, flush=True)

    def installed(self):
        return _SignalHandlers(self._handle)


class _SignalHandlers:
    def __init__(self, handler):
        self.handler = handler
        self.previous = {}

    def __enter__(self):
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self.handler)
        except ValueError:  # not the main thread: leave the handlers alone
            self.previous = {}

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def exit_status(result):
    """The exit status of `train.py` after `Trainer.fit()` returned `result`.

    0 when the run finished (or reached --max_minutes); 128 + the signal's number when a signal
    stopped it after its checkpoint was saved, as a shell reports a process killed by that signal:
    143 for SIGTERM, so Kubernetes and batch systems see a preempted job as terminated, not done,
    and 130 for Ctrl-C (SIGINT), so a script running `train.py && export.py` stops there.
    """
    return 128 + signal.Signals[result["signal"]] if result["signal"] else 0
