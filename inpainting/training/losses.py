"""DeepFill v1 and v2 losses as pure functions of tensors.

Every function returns one value per example (shape [B]); the loss of a batch is their mean, and
under a `tf.distribute` strategy each replica divides the sum of its values by the global batch
size (`tf.nn.compute_average_loss`). Images are in [-1, 1]; masks are 1 in the hole.

The v1 objective (Yu et al., "Generative Image Inpainting with Contextual Attention", CVPR 2018,
https://arxiv.org/abs/1801.07892, with the weights of the released configuration):

    l1      = 1.2 * mean(|x - coarse| * D) + mean(|x - refined| * D)    on the hole box
    ae      = (1.2 * mean(|x - coarse| * K) + mean(|x - refined| * K)) / mean(K),  K = 1 - m * B
    g_loss  = 0.001 * (g_global + g_local) + 1.2 * l1 + 1.2 * ae
    d_loss  = d_local + d_global + 10 * (penalty_local + penalty_global)

D is the spatial discounting mask of the box, `coarse`/`refined` are the un-pasted stage outputs,
and the critics see the pasted image. The gradient penalty is taken over the hole only. B is 1 in
the hole box: K is every pixel the box term does not cover, so the known region for the holes the
original trains with (inside their box, K = 1 - m) and, for free-form strokes or mask-folder holes
that reach outside the box, their pixels there too (with K = 1 - m they would have no
reconstruction term at all).

The v2 objective (Yu et al., "Free-Form Image Inpainting with Gated Convolution", ICCV 2019,
https://arxiv.org/abs/1806.03589), with the SN-PatchGAN critic D scoring every patch of
[image, mask(, sketch)]:

    ae      = mean|x - coarse| + mean|x - refined|                     over the whole image
    g_loss  = -mean(D(completed)) + ae
    d_loss  = 0.5 * mean(relu(1 - D(x))) + 0.5 * mean(relu(1 + D(completed)))

The functions `v1_*` and `v2_*` compute them; `V1Objective` and `V2Objective` offer each version's
behind one interface, the one a trainer uses without knowing the version (`make_objective`).
"""

import dataclasses

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class V1LossWeights:
    """Weights of the v1 objective; the defaults are those of the released models.

    Attributes:
        coarse: weight of the coarse output inside `l1` and `ae` (the refined output has 1).
        l1: weight of the discounted hole-box L1 in the generator loss.
        ae: weight of the known-region L1 in the generator loss.
        gan: weight of the adversarial terms in the generator loss.
        global_gan: weight of the global critic relative to the local one.
        gradient_penalty: WGAN-GP lambda.
        discount_gamma: base of the spatial discounting mask.
    """

    coarse: float = 1.2
    l1: float = 1.2
    ae: float = 1.2
    gan: float = 0.001
    global_gan: float = 1.0
    gradient_penalty: float = 10.0
    discount_gamma: float = 0.9


def spatial_discounting_mask(size, gamma=0.9):
    """Weights that fall off with the distance to the border of the hole box.

    Entry (i, j) is `max(gamma**min(i, h - i), gamma**min(j, w - j))`, as in the released
    models. The rule is not symmetric: the first row weighs 1 and the last row gamma.

    Args:
        size: (h, w) of the box.
        gamma: the discount base (0.9 for the released models; gamma = 1 weighs all equally).

    Returns:
        float32 [1, h, w, 1].
    """
    h, w = size
    rows = gamma ** np.minimum(np.arange(h), h - np.arange(h)).astype(np.float64)
    cols = gamma ** np.minimum(np.arange(w), w - np.arange(w)).astype(np.float64)
    weights = np.maximum(rows[:, None], cols[None, :]).astype(np.float32)
    return tf.constant(weights[None, :, :, None])


def crop_box(x, bbox, size):
    """The hole box of every image: `x[:, top:top+h, left:left+w]`.

    Args:
        x: [B, H, W, C].
        bbox: int32 (top, left, height, width): [4], one box for the whole batch (as the
            original training uses, and the fastest), or [B, 4], one box per example.
        size: the static (h, w) of the box (the local critic's input size).
    """
    bbox = tf.convert_to_tensor(bbox)
    if bbox.shape.rank == 1:
        # A slice, not x[:, top:...]: its gradient is a pad (a strided slice's is several times
        # slower), and the box's static shape lets the local critic's graph know its sizes.
        box = tf.slice(x, tf.stack([0, bbox[0], bbox[1], 0]), [-1, size[0], size[1], -1])
        box.set_shape([x.shape[0], size[0], size[1], x.shape[3]])
        return box
    rows = bbox[:, :1] + tf.range(size[0], dtype=bbox.dtype)
    cols = bbox[:, 1:2] + tf.range(size[1], dtype=bbox.dtype)
    return tf.gather(tf.gather(x, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)


def _scores(critic, x):
    """A critic's scores in float32 (under mixed precision they are computed in 16 bits)."""
    return tf.cast(critic(x), tf.float32)


def _mean_per_example(x):
    return tf.reduce_mean(x, axis=tf.range(1, tf.rank(x)))


def discounted_l1(target, prediction, discount):
    """Per-example mean of `|target - prediction| * discount`."""
    return _mean_per_example(tf.abs(target - prediction) * discount)


def box_indicator(bbox, image_shape):
    """1 inside the hole box, 0 elsewhere: float32 [1 or B, H, W, 1].

    Args:
        bbox: int32 (top, left, height, width): [4] or [B, 4] (see `crop_box`).
        image_shape: the images' shape [B, H, W, C] (a tensor or list).
    """
    bbox = tf.cast(tf.reshape(bbox, [-1, 4]), tf.int32)
    rows = tf.range(image_shape[1])[None, :]
    cols = tf.range(image_shape[2])[None, :]
    inside_rows = (rows >= bbox[:, :1]) & (rows < bbox[:, :1] + bbox[:, 2:3])
    inside_cols = (cols >= bbox[:, 1:2]) & (cols < bbox[:, 1:2] + bbox[:, 3:4])
    inside = inside_rows[:, :, None] & inside_cols[:, None, :]
    return tf.cast(inside, tf.float32)[:, :, :, None]


def known_region_l1(target, prediction, mask):
    """Per-example L1 outside the hole, normalised by the known fraction of the image.

    `mean(|target - prediction| * (1 - mask)) / mean(1 - mask)`, both means taken per example.
    """
    known = 1.0 - mask
    return _mean_per_example(tf.abs(target - prediction) * known) / _mean_per_example(known)


def wgan_critic_loss(real_scores, fake_scores):
    """Per-example WGAN critic loss `fake - real` (scores [B, 1])."""
    return tf.reshape(fake_scores - real_scores, [-1])


def wgan_generator_loss(fake_scores):
    """Per-example WGAN generator loss `-fake` (scores [B, 1])."""
    return -tf.reshape(fake_scores, [-1])


def interpolate(real, fake, alpha):
    """`real + alpha * (fake - real)` with one alpha per example (alpha [B] or [B, 1])."""
    alpha = tf.reshape(tf.cast(alpha, real.dtype), [-1] + [1] * (real.shape.rank - 1))
    return real + alpha * (fake - real)


def _safe_sqrt(x):
    """sqrt with value 0 and gradient 0 at 0 (plain sqrt has an infinite gradient there)."""
    positive = x > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, x, tf.ones_like(x))), tf.zeros_like(x))


def gradient_penalty(critic, interpolates, mask=None, target_norm=1.0):
    """Per-example WGAN-GP penalty `(||grad critic(x)||_mask - target_norm)**2`.

    The norm sums the squared gradient over all non-batch axes, weighted by `mask` (DeepFill
    restricts it to the hole). Gulrajani et al., "Improved Training of Wasserstein GANs",
    https://arxiv.org/abs/1704.00028.

    Args:
        critic: a callable [B, H, W, C] -> [B, 1] with no interaction between examples.
        interpolates: the points where the gradient is taken, [B, H, W, C].
        mask: None (everywhere) or a tensor broadcastable to `interpolates`.
        target_norm: the norm the gradient is pulled towards.

    Returns:
        float [B].
    """
    with tf.GradientTape() as tape:
        tape.watch(interpolates)
        scores = _scores(critic, interpolates)
    grads = tape.gradient(scores, interpolates)
    squared = tf.square(grads)
    if mask is not None:
        squared = squared * mask
    norm = _safe_sqrt(tf.reduce_sum(squared, axis=tf.range(1, tf.rank(squared))))
    return tf.square(norm - target_norm)


def paste(image, prediction, mask):
    """The prediction inside the hole, the image outside."""
    return prediction * mask + image * (1.0 - mask)


def v1_reconstruction_losses(images, outputs, mask, bbox, local_size, weights=V1LossWeights()):
    """The two L1 terms of the generator loss.

    Args:
        images: the real images [B, H, W, 3] in [-1, 1].
        outputs: the generator's dict with `coarse` and `refined` (not pasted).
        mask: [B, H, W, 1] or [1, H, W, 1], 1 = hole.
        bbox: the hole box (see `crop_box`); the discounted L1 is taken over it, `ae` over the
            rest of the image and the known pixels inside the box (see the module docstring).
        local_size: (h, w) of the box.
        weights: a `V1LossWeights`.

    Returns:
        A dict of per-example `l1` and `ae`.
    """
    discount = spatial_discounting_mask(local_size, weights.discount_gamma)
    box_real = crop_box(images, bbox, local_size)
    l1 = (weights.coarse * discounted_l1(box_real, crop_box(outputs["coarse"], bbox, local_size), discount)
          + discounted_l1(box_real, crop_box(outputs["refined"], bbox, local_size), discount))
    hole_in_box = tf.cast(mask, tf.float32) * box_indicator(bbox, tf.shape(images))
    ae = (weights.coarse * known_region_l1(images, outputs["coarse"], hole_in_box)
          + known_region_l1(images, outputs["refined"], hole_in_box))
    return {"l1": l1, "ae": ae}


def v1_critic_losses(critics, images, completed, mask, bbox, alpha_local, alpha_global, local_size,
                     weights=V1LossWeights()):
    """The WGAN-GP loss of the local and global critics.

    Args:
        critics: a `Critics` model (`critics.local`, `critics.global_`).
        images: real images [B, H, W, 3] in [-1, 1].
        completed: the generator's refined output pasted into the hole, same shape.
        mask: [B, H, W, 1] or [1, H, W, 1]; the penalty counts the gradient inside it only.
        bbox: the hole box; the local critic sees it.
        alpha_local, alpha_global: per-example interpolation weights [B] or [B, 1], uniform in [0, 1).
        local_size: (h, w) of the box.
        weights: a `V1LossWeights`.

    Returns:
        A dict of per-example values: `d_loss` (the total), `d_local`, `d_global`, `gp`,
        and the mean critic scores `real_local`, `fake_local`, `real_global`, `fake_global`.
    """
    batch = tf.shape(images)[0]
    real_local, fake_local = crop_box(images, bbox, local_size), crop_box(completed, bbox, local_size)
    # One critic call on [real; fake], as the original does.
    local_scores = _scores(critics.local, tf.concat([real_local, fake_local], axis=0))
    global_scores = _scores(critics.global_, tf.concat([images, completed], axis=0))
    d_local = wgan_critic_loss(local_scores[:batch], local_scores[batch:])
    d_global = wgan_critic_loss(global_scores[:batch], global_scores[batch:])
    mask = tf.broadcast_to(mask, tf.concat([[batch], tf.shape(mask)[1:]], axis=0))
    penalty = (gradient_penalty(critics.local, interpolate(real_local, fake_local, alpha_local),
                                crop_box(mask, bbox, local_size))
               + gradient_penalty(critics.global_, interpolate(images, completed, alpha_global), mask))
    gp = weights.gradient_penalty * penalty
    return {"d_loss": d_local + d_global + gp, "d_local": d_local, "d_global": d_global, "gp": gp,
            "real_local": tf.reshape(local_scores[:batch], [-1]),
            "fake_local": tf.reshape(local_scores[batch:], [-1]),
            "real_global": tf.reshape(global_scores[:batch], [-1]),
            "fake_global": tf.reshape(global_scores[batch:], [-1])}


def v1_generator_losses(critics, images, outputs, mask, bbox, local_size, weights=V1LossWeights()):
    """The v1 generator loss: adversarial terms plus the two L1 terms.

    The critics only score the completed images (the real half of the original's joint call
    does not depend on the generator).

    Returns:
        A dict of per-example values: `g_loss` (the total), `g_adversarial`, `l1`, `ae`.
    """
    completed = paste(images, outputs["refined"], mask)
    fake_local = _scores(critics.local, crop_box(completed, bbox, local_size))
    fake_global = _scores(critics.global_, completed)
    adversarial = (weights.global_gan * wgan_generator_loss(fake_global)
                   + wgan_generator_loss(fake_local))
    terms = v1_reconstruction_losses(images, outputs, mask, bbox, local_size, weights)
    g_loss = weights.gan * adversarial + weights.l1 * terms["l1"] + weights.ae * terms["ae"]
    return {"g_loss": g_loss, "g_adversarial": adversarial, **terms}


@dataclasses.dataclass(frozen=True)
class V2LossWeights:
    """Weights of the v2 objective; the defaults are those of the released models.

    Attributes:
        coarse: weight of the coarse output's L1 (the refined output has 1).
        ae: weight of the L1 terms in the generator loss.
        gan: weight of the adversarial term in the generator loss.
    """

    coarse: float = 1.0
    ae: float = 1.0
    gan: float = 1.0


def hinge_critic_loss(real_scores, fake_scores):
    """Per example: 0.5 * mean(relu(1 - real)) + 0.5 * mean(relu(1 + fake)) over the patch scores."""
    return 0.5 * (_mean_per_example(tf.nn.relu(1.0 - real_scores))
                  + _mean_per_example(tf.nn.relu(1.0 + fake_scores)))


def hinge_generator_loss(fake_scores):
    """Per example: -mean(fake) over the patch scores."""
    return -_mean_per_example(fake_scores)


def _patch_scores(critic, images, mask, sketch):
    inputs = [images, mask] + ([] if sketch is None else [sketch])
    return tf.cast(critic(inputs)["patches"], tf.float32)


def v2_critic_losses(critic, images, completed, mask, sketch=None):
    """The SN-PatchGAN hinge loss.

    Args:
        critic: an `SNPatchGAN`; its spectral-norm vectors advance by one power iteration.
        images: real images [B, H, W, 3] in [-1, 1].
        completed: the refined output pasted into the hole, same shape.
        mask: [B or 1, H, W, 1], 1 = hole; the critic sees it beside each image.
        sketch: [B, H, W, 1] for a guided model, else None.

    Returns:
        A dict of per-example values: `d_loss`, and the mean patch scores `real` and `fake`.
    """
    batch = tf.shape(images)[0]
    mask = tf.broadcast_to(tf.cast(mask, images.dtype), tf.concat([tf.shape(images)[:3], [1]], 0))
    doubled = None if sketch is None else tf.concat([sketch, sketch], axis=0)
    # One critic call on [real; fake], as the original does (one power iteration).
    scores = _patch_scores(critic, tf.concat([images, completed], axis=0),
                           tf.concat([mask, mask], axis=0), doubled)
    real, fake = scores[:batch], scores[batch:]
    return {"d_loss": hinge_critic_loss(real, fake), "real": _mean_per_example(real),
            "fake": _mean_per_example(fake)}


def v2_reconstruction_losses(images, outputs, weights=V2LossWeights()):
    """`ae`: the L1 of both stages over the whole image, per example."""
    return {"ae": weights.coarse * _mean_per_example(tf.abs(images - outputs["coarse"]))
            + _mean_per_example(tf.abs(images - outputs["refined"]))}


def v2_generator_losses(critic, images, outputs, mask, sketch=None, weights=V2LossWeights()):
    """The v2 generator loss: the hinge adversarial term plus the whole-image L1 terms.

    The critic only scores the completed images (the real half of the original's joint call
    does not depend on the generator, and spectral normalisation does not depend on the input).

    Returns:
        A dict of per-example values: `g_loss` (the total), `g_adversarial`, `ae`.
    """
    completed = paste(images, outputs["refined"], mask)
    adversarial = hinge_generator_loss(_patch_scores(critic, completed, mask, sketch))
    terms = v2_reconstruction_losses(images, outputs, weights)
    return {"g_loss": weights.gan * adversarial + weights.ae * terms["ae"],
            "g_adversarial": adversarial, **terms}


class Objective:
    """The losses of one DeepFill version behind the interface both versions share.

    Every method takes the pieces of a batch either version needs; a version ignores those it
    has no use for (v1 the sketch, v2 the box and the gradient-penalty weights). The values are
    those of the version's `v1_*` / `v2_*` functions: per example, in dicts.

    Attributes:
        version: "v1" or "v2".
        weights: the version's loss weights (`V1LossWeights` or `V2LossWeights`).
    """

    version = None

    def critic_losses(self, critics, images, completed, mask, sketch=None, bbox=None,
                      alpha_local=None, alpha_global=None):
        """The critics' loss.

        Args:
            critics: the version's critics (`inpainting.model.critics.make_critics`).
            images: real images [B, H, W, 3] in [-1, 1].
            completed: the refined output pasted into the hole, same shape.
            mask: [B or 1, H, W, 1], 1 = hole.
            sketch: the sketch [B, H, W, 1] of a guided model, else None.
            bbox: the hole box (see `crop_box`).
            alpha_local, alpha_global: gradient-penalty interpolation weights, [B] or [B, 1].

        Returns:
            A dict of per-example values: `d_loss` (the total) and its parts and critic scores.
        """
        raise NotImplementedError

    def generator_losses(self, critics, images, outputs, mask, sketch=None, bbox=None):
        """The generator's loss.

        Args:
            critics, images, mask, sketch, bbox: as for `critic_losses`.
            outputs: the generator's dict with `coarse` and `refined` (not pasted).

        Returns:
            A dict of per-example values: `g_loss` (the total), `g_adversarial` and the
            reconstruction terms.
        """
        raise NotImplementedError

    def reconstruction_losses(self, images, outputs, mask, bbox=None):
        """The L1 terms of the generator loss (no critic): a dict of per-example values."""
        raise NotImplementedError


def _needs(version, **values):
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise TypeError(f"the {version} objective needs {', '.join(missing)}")


class V1Objective(Objective):
    """DeepFill v1: global and local WGAN-GP critics, discounted hole-box L1 and known-region L1.

    Args:
        weights: a `V1LossWeights`.
        local_size: (h, w) of the hole box, the local critic's input size.
    """

    version = "v1"

    def __init__(self, weights=V1LossWeights(), local_size=(128, 128)):
        self.weights = weights
        self.local_size = tuple(local_size)

    def critic_losses(self, critics, images, completed, mask, sketch=None, bbox=None,
                      alpha_local=None, alpha_global=None):
        _needs(self.version, bbox=bbox, alpha_local=alpha_local, alpha_global=alpha_global)
        return v1_critic_losses(critics, images, completed, mask, bbox, alpha_local, alpha_global,
                                self.local_size, self.weights)

    def generator_losses(self, critics, images, outputs, mask, sketch=None, bbox=None):
        _needs(self.version, bbox=bbox)
        return v1_generator_losses(critics, images, outputs, mask, bbox, self.local_size, self.weights)

    def reconstruction_losses(self, images, outputs, mask, bbox=None):
        _needs(self.version, bbox=bbox)
        return v1_reconstruction_losses(images, outputs, mask, bbox, self.local_size, self.weights)

    @classmethod
    def from_config(cls, config):
        """The objective of a v1 `TrainConfig`, with its loss weights and box size."""
        return cls(V1LossWeights(coarse=config.coarse_weight, l1=config.l1_weight, ae=config.ae_weight,
                                 gan=config.gan_weight, global_gan=config.global_gan_weight,
                                 gradient_penalty=config.gradient_penalty,
                                 discount_gamma=config.discount_gamma),
                   local_size=config.box_size)


class V2Objective(Objective):
    """DeepFill v2: an SN-PatchGAN critic with the hinge loss, and the whole-image L1.

    Args:
        weights: a `V2LossWeights`.
    """

    version = "v2"

    def __init__(self, weights=V2LossWeights()):
        self.weights = weights

    def critic_losses(self, critics, images, completed, mask, sketch=None, bbox=None,
                      alpha_local=None, alpha_global=None):
        return v2_critic_losses(critics, images, completed, mask, sketch)

    def generator_losses(self, critics, images, outputs, mask, sketch=None, bbox=None):
        return v2_generator_losses(critics, images, outputs, mask, sketch, self.weights)

    def reconstruction_losses(self, images, outputs, mask, bbox=None):
        return v2_reconstruction_losses(images, outputs, self.weights)

    @classmethod
    def from_config(cls, config):
        """The objective of a v2 `TrainConfig`, with its loss weights."""
        return cls(V2LossWeights(coarse=config.coarse_weight, ae=config.ae_weight,
                                 gan=config.gan_weight))


OBJECTIVES = {"v1": V1Objective, "v2": V2Objective}


def make_objective(config):
    """The objective of a `TrainConfig`: that of its version, with its loss weights.

    Example:
        >>> from inpainting.config import TrainConfig
        >>> make_objective(TrainConfig(version="v2")).weights
        V2LossWeights(coarse=1.0, ae=1.0, gan=1.0)
    """
    return OBJECTIVES[config.version].from_config(config)
