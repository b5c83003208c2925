"""The health of a training run: the rules that flag a collapsed generator or a diverging critic.

`Health` collects the critic loss after each training step and judges both rules at each
validation; the trainer writes what it returns to TensorBoard (`health/*`) and prints its warnings.
"""

import math

import numpy as np

# Generator collapse: the fill of the validation holes is nearly constant. Spread is the standard
# deviation in 0..255 levels over the holes' pixels of all validation images, per channel, averaged
# over the channels (a constant colour has 0). Below COLLAPSE_STD (less than 1% of the range) the
# fill follows nothing of the images, while real holes of photos spread by tens of levels;
# COLLAPSE_MIN_REAL_STD keeps flat validation images (a blank sky) from triggering it.
COLLAPSE_STD = 2.0
COLLAPSE_MIN_REAL_STD = 8.0
# A randomly initialised v2 generator fills with a constant gray (its gated layers shrink the signal
# to ~1e-6 before the final tanh) and may pass through a flat phase before it follows the images
# (measured on a 64x64 v2 with cnum 8: spread below 2 levels at steps 300 to 600, above 10 from
# step 800): the generator is judged from this step on, with a margin.
COLLAPSE_FROM_STEP = 2000
# Critic divergence, on the mean |critic loss| of each interval between two validations: diverged
# when the last interval's exceeds CRITIC_DIVERGENCE_FACTOR x the early value, the first interval's
# of this process (at least CRITIC_LOSS_FLOOR). Healthy WGAN-GP and hinge losses wander up and down
# within a few times their early size; a diverging critic's grows by orders of magnitude on its way
# to infinity. The floor keeps a loss that starts near 0 (WGAN's real and fake scores cancel at
# first) from making every later value look like a large multiple.
CRITIC_LOSS_FLOOR = 1.0
CRITIC_DIVERGENCE_FACTOR = 100.0


def hole_spread(images, holes):
    """The spread of images in their holes: the standard deviation over the holes' pixels of all
    images, per channel, averaged over the channels (0 for a constant colour; NaN without holes).

    Args:
        images: [B, H, W, 3] in 0..255.
        holes: bool [B, H, W].
    """
    pixels = np.asarray(images, np.float64)[np.asarray(holes)]
    return float(pixels.std(axis=0).mean()) if len(pixels) else math.nan


def generator_collapsed(refined, originals, holes):
    """Whether a generator's fill is nearly constant where the real images are not (see
    `spreads_collapsed`). Arguments as `hole_spread`'s."""
    return spreads_collapsed(hole_spread(refined, holes), hole_spread(originals, holes))


def spreads_collapsed(fake, real):
    """The collapse rule on `hole_spread`s: the fill's below COLLAPSE_STD while the real images'
    is at least COLLAPSE_MIN_REAL_STD."""
    return fake < COLLAPSE_STD and real >= COLLAPSE_MIN_REAL_STD


def critic_diverged(magnitudes):
    """Whether a critic loss diverges, from the mean |loss| of each interval, oldest first: the
    last interval's exceeds CRITIC_DIVERGENCE_FACTOR x the first interval's (at least
    CRITIC_LOSS_FLOOR), or is not finite. One interval alone never diverges."""
    magnitudes = [float(value) for value in magnitudes]
    if len(magnitudes) < 2:
        return False
    last = magnitudes[-1]
    return not math.isfinite(last) or last > CRITIC_DIVERGENCE_FACTOR * critic_early(magnitudes)


def critic_early(magnitudes):
    """The early critic-loss value `critic_diverged` compares with: the first interval's mean
    |loss|, at least CRITIC_LOSS_FLOOR."""
    return max(float(magnitudes[0]), CRITIC_LOSS_FLOOR)


class Health:
    """Watches a run for a collapsed generator and a diverging critic (the rules above).

    `record(stats)` after each training step collects the critic loss; `check(...)` at each
    validation closes the interval and judges both. The first time each kind is seen it returns a
    warning line; the scalars it returns say at every check what holds then.
    """

    def __init__(self):
        self.magnitudes = []  # mean |d_loss| of each closed interval
        self._interval = []
        self.warned = set()

    def record(self, stats):
        """Collects the critic loss ("d_loss") of one training step's stats."""
        if "d_loss" in stats:
            self._interval.append(abs(float(stats["d_loss"])))

    def check(self, step, refined, originals, holes):
        """Judges the run at a validation.

        Args:
            step: the training step.
            refined: float [B, H, W, 3] in 0..255, the generator's refined output.
            originals: the real images [B, H, W, 3] in 0..255.
            holes: bool [B, H, W].

        Returns:
            (scalars, warnings): {"health/collapsed": 0 or 1 (either kind), "health/
            generator_collapsed", "health/critic_diverged": 0 or 1, "health/refined_hole_std",
            "health/real_hole_std" and, after a training step, "health/critic_loss_magnitude"
            (this interval's mean |critic loss|)}, and the warning lines (without "warning: ")
            of kinds seen for the first time.
        """
        if self._interval:
            self.magnitudes.append(float(np.mean(self._interval)))
            self._interval = []
        fake, real = hole_spread(refined, holes), hole_spread(originals, holes)
        collapsed = step >= COLLAPSE_FROM_STEP and spreads_collapsed(fake, real)
        diverged = critic_diverged(self.magnitudes)
        scalars = {"health/collapsed": float(collapsed or diverged),
                   "health/generator_collapsed": float(collapsed),
                   "health/critic_diverged": float(diverged),
                   "health/refined_hole_std": fake, "health/real_hole_std": real}
        if self.magnitudes:
            scalars["health/critic_loss_magnitude"] = self.magnitudes[-1]
        warnings = []
        if collapsed and "generator" not in self.warned:
            self.warned.add("generator")
            warnings.append(
                f"step {step}: the generator has collapsed: its fill of the validation holes is "
                f"nearly constant (standard deviation {fake:.3g} of 255 levels, the real pixels' "
                f"{real:.3g}); try a lower --learning_rate, check that the training images are "
                "varied and readable, or restart from an earlier ckpt-<step> with --init_checkpoint "
                "in a new --model_dir")
        if diverged and "critic" not in self.warned:
            self.warned.add("critic")
            early = critic_early(self.magnitudes)
            warnings.append(
                f"step {step}: the critic loss is diverging: its mean magnitude since the last "
                f"validation is {self.magnitudes[-1]:.3g}, {self.magnitudes[-1] / early:.0f}x that "
                f"of the first interval ({early:.3g}); try a lower --learning_rate, or check the data")
        return scalars, warnings
