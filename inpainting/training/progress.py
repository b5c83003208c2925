"""The console progress of a training run: one line every `--log_every` steps."""

import math
import sys
import time


class Progress:
    """Console progress: step, the main losses, images/s and the estimated time left.

    The time left is that to `total` steps or to the `deadline` (a `time.monotonic()` value),
    whichever comes first.
    """

    KEYS = ("d_loss", "gp", "g_loss", "l1", "ae")

    def __init__(self, start, total, every, images_per_step, deadline=math.inf, stream=None):
        self.start, self.total, self.every, self.deadline = start, total, every, deadline
        self.images_per_step = images_per_step
        self.stream = stream or sys.stdout
        self.last_time, self.last_step = time.perf_counter(), start
        self.images_per_second = 0.0

    def update(self, step, stats):
        now = time.perf_counter()
        # The first step includes tracing and is left out; later ones are averaged with a short memory.
        if self.last_step > self.start and now > self.last_time:
            rate = (step - self.last_step) * self.images_per_step / (now - self.last_time)
            self.images_per_second = 0.8 * self.images_per_second + 0.2 * rate \
                if self.images_per_second else rate
        self.last_time, self.last_step = now, step
        if step % self.every and step != self.total:
            return
        steps_per_second = self.images_per_second / self.images_per_step
        eta = (self.total - step) / steps_per_second if steps_per_second else math.inf
        eta = min(eta, max(0.0, self.deadline - time.monotonic()))
        width = 20
        filled = int(width * step / self.total)
        losses_text = "  ".join(f"{key} {stats[key]:.4g}" for key in self.KEYS if key in stats)
        print(f"step {step}/{self.total} [{'#' * filled}{'.' * (width - filled)}]  {losses_text}  "
              f"{self.images_per_second:.1f} img/s  ETA {_duration(eta)}", file=self.stream, flush=True)


def _duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
