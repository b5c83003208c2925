"""Losses: parity with the original on the reference batch, and closed-form cases."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import load_reference
from inpainting.checkpoints import tf1
from inpainting.checkpoints.tf1 import load_official_critics, load_official_generator
from inpainting.config import ModelConfig, TrainConfig
from inpainting.model.critics import make_critics
from inpainting.training import losses

# Also run with the other oneDNN mode by `make test` (see pytest.ini).
pytestmark = pytest.mark.onednn_modes


def test_matches_original_losses(official_checkpoint):
    ref = load_reference("v1", "losses.npz")
    ckpt = official_checkpoint("v1")
    generator = load_official_generator(ckpt)
    critics = load_official_critics(ckpt)
    # The reference batch is BGR; the loaded networks take RGB, and every loss sums over channels.
    images = tf.constant(ref["batch_data_u8_bgr"][..., ::-1].astype(np.float32) / 127.5 - 1.0)
    top, left, h, w = (int(v) for v in ref["bbox_tlhw"])
    mask = np.zeros([1, 256, 256, 1], np.float32)
    mask[:, top:top + h, left:left + w] = 1.0
    mask = tf.constant(mask)
    bbox = tf.constant(ref["bbox_tlhw"])

    outputs = generator([images, mask])
    g = losses.v1_generator_losses(critics, images, outputs, mask, bbox, (h, w))
    completed = losses.paste(images, outputs["refined"], mask)
    d = losses.v1_critic_losses(critics, images, completed, mask, bbox, ref["alpha_local"],
                                ref["alpha_global"], (h, w))
    ours = {"l1_loss": g["l1"], "ae_loss": g["ae"], "g_loss": g["g_loss"], "d_loss": d["d_loss"],
            "gp_loss": d["gp"]}
    for key, value in ours.items():
        assert float(tf.reduce_mean(value)) == pytest.approx(float(ref[key]), rel=1e-5), key
    # The v1 objective gives the same numbers, taking the batch pieces both versions share.
    objective = losses.V1Objective(local_size=(h, w))
    same = {"g": (objective.generator_losses(critics, images, outputs, mask, sketch=None, bbox=bbox), g),
            "d": (objective.critic_losses(critics, images, completed, mask, sketch=None, bbox=bbox,
                                          alpha_local=ref["alpha_local"],
                                          alpha_global=ref["alpha_global"]), d)}
    for name, (by_objective, by_function) in same.items():
        assert by_objective.keys() == by_function.keys(), name
        for key, value in by_function.items():
            np.testing.assert_array_equal(by_objective[key], value, err_msg=f"{name} {key}")


def test_spatial_discounting_mask_values():
    d = losses.spatial_discounting_mask((4, 3), gamma=0.5).numpy()[0, :, :, 0]
    rows = 0.5 ** np.array([0, 1, 2, 1])
    cols = 0.5 ** np.array([0, 1, 1])
    np.testing.assert_allclose(d, np.maximum(rows[:, None], cols[None, :]))
    assert d[0, 1] == 1.0 and d[3, 1] == 0.5  # not symmetric: first row 1, last row gamma
    assert np.all(losses.spatial_discounting_mask((5, 5), 1.0).numpy() == 1.0)


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = sum(2x) has gradient 2 everywhere, so the norm is 2*sqrt(number of counted entries).
    x = tf.random.normal([3, 4, 4, 2])
    critic = lambda v: tf.reduce_sum(2.0 * v, axis=[1, 2, 3])[:, None]
    np.testing.assert_allclose(losses.gradient_penalty(critic, x), [(2 * np.sqrt(32) - 1) ** 2] * 3,
                               rtol=1e-6)
    mask = np.zeros([3, 4, 4, 1], np.float32)
    mask[0, :1, :1] = 1.0  # 2 entries (2 channels) -> norm 2*sqrt(2)
    mask[1, :2, :2] = 1.0  # 8 entries -> norm 2*sqrt(8)
    np.testing.assert_allclose(losses.gradient_penalty(critic, x, mask),
                               [(2 * np.sqrt(2) - 1) ** 2, (2 * np.sqrt(8) - 1) ** 2, 1.0], rtol=1e-6)


def test_gradient_penalty_has_finite_gradient_at_zero_norm():
    w = tf.Variable(0.0)
    critic = lambda v: w * tf.reduce_sum(v, axis=[1, 2, 3])[:, None]
    with tf.GradientTape() as tape:
        penalty = tf.reduce_sum(losses.gradient_penalty(critic, tf.ones([2, 3, 3, 1])))
    assert float(penalty) == 2.0
    assert float(tape.gradient(penalty, w)) == 0.0


def test_known_region_l1_and_interpolate():
    target = tf.zeros([2, 2, 2, 1])
    prediction = tf.constant([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None] * [[[[1.0]]], [[[-1.0]]]]
    mask = tf.constant([[1.0, 0.0], [0.0, 0.0]])[None, :, :, None]
    # Known pixels 2, 3, 4: mean over all 4 pixels is 9/4, divided by the known fraction 3/4 -> 3.
    np.testing.assert_allclose(losses.known_region_l1(target, prediction, mask), [3.0, 3.0])
    real, fake = tf.zeros([2, 1, 1, 1]), tf.ones([2, 1, 1, 1])
    np.testing.assert_allclose(tf.reshape(losses.interpolate(real, fake, [[0.25], [0.75]]), [-1]),
                               [0.25, 0.75])


def test_box_indicator_marks_each_examples_box():
    one = losses.box_indicator(tf.constant([1, 2, 3, 2]), [2, 6, 5, 3])
    expected = np.zeros([1, 6, 5, 1], np.float32)
    expected[:, 1:4, 2:4] = 1.0
    np.testing.assert_array_equal(one, expected)
    each = losses.box_indicator(tf.constant([[1, 2, 3, 2], [0, 0, 1, 5]]), [2, 6, 5, 3])
    expected = np.zeros([2, 6, 5, 1], np.float32)
    expected[0, 1:4, 2:4] = expected[1, 0:1, :] = 1.0
    np.testing.assert_array_equal(each, expected)


def test_v1_holes_outside_the_box_are_reconstructed_by_the_ae_term():
    # An 8x8 image, the box rows/columns 2..5, a hole of the box's centre 2x2 plus a stroke pixel
    # at (0, 0), outside the box. The refined output is wrong by 1 only there: the box term does not
    # see it, so the ae term must, as a known pixel would be.
    images = tf.zeros([1, 8, 8, 1])
    mask = np.zeros([1, 8, 8, 1], np.float32)
    mask[:, 3:5, 3:5] = mask[:, 0, 0] = 1.0
    refined = np.zeros([1, 8, 8, 1], np.float32)
    refined[:, 0, 0] = 1.0
    outputs = {"coarse": images, "refined": tf.constant(refined)}
    weights = losses.V1LossWeights(discount_gamma=1.0)
    terms = losses.v1_reconstruction_losses(images, outputs, tf.constant(mask), tf.constant([2, 2, 4, 4]),
                                            (4, 4), weights)
    assert float(terms["l1"][0]) == 0.0
    # K = everything but the 4 hole pixels inside the box: 60 of 64; the error 1 at one of them.
    np.testing.assert_allclose(terms["ae"], [(1 / 64) / (60 / 64)], rtol=1e-6)
    # A hole inside its box (the original's case) leaves ae the known-region L1.
    mask[:, 0, 0] = 0.0
    refined[:, 0, 0], refined[:, 3, 3] = 0.0, 1.0
    terms = losses.v1_reconstruction_losses(images, {"coarse": images, "refined": tf.constant(refined)},
                                            tf.constant(mask), tf.constant([2, 2, 4, 4]), (4, 4), weights)
    assert float(terms["ae"][0]) == 0.0 and float(terms["l1"][0]) == 1 / 16


def test_wgan_terms_and_crop_box():
    real, fake = tf.constant([[1.0], [2.0]]), tf.constant([[0.5], [4.0]])
    np.testing.assert_allclose(losses.wgan_critic_loss(real, fake), [-0.5, 2.0])
    np.testing.assert_allclose(losses.wgan_generator_loss(fake), [-0.5, -4.0])
    x = tf.reshape(tf.range(2 * 6 * 5, dtype=tf.float32), [2, 6, 5, 1])
    np.testing.assert_array_equal(losses.crop_box(x, tf.constant([1, 2, 3, 2]), (3, 2)), x[:, 1:4, 2:4])
    crop = losses.crop_box(x, tf.constant([[1, 2, 3, 2], [0, 3, 3, 2]]), (3, 2))
    np.testing.assert_array_equal(crop, np.stack([x[0, 1:4, 2:4], x[1, 0:3, 3:5]]))


@pytest.mark.slow
def test_v2_losses_match_original(official_checkpoint):
    ref = load_reference("v2", "losses.npz")
    path = official_checkpoint("v2")
    generator = tf1.load_official_generator(path, version="v2")
    images = tf.constant(ref["batch_data_u8_bgr"][..., ::-1].astype(np.float32) / 127.5 - 1)
    mask = tf.constant(ref["mask"])
    outputs = generator([images, mask])
    completed = losses.paste(images, outputs["refined"], mask)
    # Both losses come from the checkpoint's u in the original's single graph: fresh critics.
    d = losses.v2_critic_losses(tf1.load_official_critics(path, version="v2"), images, completed, mask)
    g = losses.v2_generator_losses(tf1.load_official_critics(path, version="v2"), images, outputs, mask)
    for name, value, expected in (("ae", g["ae"], ref["ae_loss"]), ("g_loss", g["g_loss"], ref["g_loss"]),
                                  ("d_loss", d["d_loss"], ref["d_loss"])):
        assert float(tf.reduce_mean(value)) == pytest.approx(float(expected), rel=1e-5), name  # measured 1e-7


def test_hinge_losses_by_hand():
    real = tf.constant([[2.0, 0.5, -1.0, 1.0]])
    fake = tf.constant([[-2.0, 0.0, 1.0, -0.5]])
    # relu(1 - real) = [0, .5, 2, 0] -> mean .625; relu(1 + fake) = [0, 1, 2, .5] -> mean .875.
    assert float(losses.hinge_critic_loss(real, fake)[0]) == pytest.approx(0.5 * 0.625 + 0.5 * 0.875)
    assert float(losses.hinge_generator_loss(fake)[0]) == pytest.approx(0.375)


def _tiny_batch(seed, guided=False):
    """Images, outputs, mask, sketch and box of a random 64x64 batch of 2 with a 32x32 box."""
    rng = np.random.default_rng(seed)
    images, coarse, refined = (tf.constant(rng.uniform(-1, 1, [2, 64, 64, 3]), tf.float32)
                               for _ in range(3))
    mask = np.zeros([1, 64, 64, 1], np.float32)
    mask[:, 10:38, 20:46] = 1.0
    sketch = tf.constant(rng.integers(0, 2, [2, 64, 64, 1]), tf.float32) if guided else None
    return images, {"coarse": coarse, "refined": refined}, tf.constant(mask), sketch, tf.constant([8, 16, 32, 32])


def test_v2_objective_gives_the_v2_functions_values():
    tf.keras.utils.set_random_seed(4)
    critic = make_critics(ModelConfig(version="v2", cnum=4, image_size=(64, 64), local_size=(32, 32),
                                      guided=True))
    critic.build()
    start = critic.get_weights()  # every call advances the spectral norms' u: restart from here
    images, outputs, mask, sketch, bbox = _tiny_batch(0, guided=True)
    completed = losses.paste(images, outputs["refined"], mask)
    weights = losses.V2LossWeights(coarse=0.5, ae=2.0, gan=0.25)
    objective = losses.V2Objective(weights)
    by_function = [losses.v2_critic_losses(critic, images, completed, mask, sketch),
                   losses.v2_generator_losses(critic, images, outputs, mask, sketch, weights),
                   losses.v2_reconstruction_losses(images, outputs, weights)]
    after = critic.get_weights()
    assert any(np.any(a != b) for a, b in zip(after, start))
    critic.set_weights(start)
    # The box and the penalty weights are v1's: v2 ignores them.
    by_objective = [objective.critic_losses(critic, images, completed, mask, sketch=sketch, bbox=bbox,
                                            alpha_local=tf.zeros([2, 1]), alpha_global=tf.zeros([2, 1])),
                    objective.generator_losses(critic, images, outputs, mask, sketch=sketch, bbox=bbox),
                    objective.reconstruction_losses(images, outputs, mask, bbox=bbox)]
    for ours, theirs in zip(by_objective, by_function):
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            np.testing.assert_array_equal(ours[key], value, err_msg=key)
    for ours, theirs in zip(critic.get_weights(), after):  # one power iteration per critic call, as before
        np.testing.assert_array_equal(ours, theirs)


def test_v1_objective_reconstruction_and_its_required_pieces():
    images, outputs, mask, sketch, bbox = _tiny_batch(1)
    weights = losses.V1LossWeights(coarse=0.7, discount_gamma=0.5)
    objective = losses.V1Objective(weights, local_size=(32, 32))
    ours = objective.reconstruction_losses(images, outputs, mask, bbox=bbox)
    theirs = losses.v1_reconstruction_losses(images, outputs, mask, bbox, (32, 32), weights)
    for key in ("l1", "ae"):
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    critics = make_critics(ModelConfig(cnum=4, image_size=(64, 64), local_size=(32, 32)))
    critics.build()
    with pytest.raises(TypeError, match="the v1 objective needs bbox"):
        objective.generator_losses(critics, images, outputs, mask)
    with pytest.raises(TypeError, match="the v1 objective needs alpha_local, alpha_global"):
        objective.critic_losses(critics, images, images, mask, bbox=bbox)


def test_make_objective_takes_the_version_weights_and_box_of_a_train_config():
    v1 = losses.make_objective(TrainConfig(image_size=128, box_size=64, max_delta=16, l1_weight=2.0,
                                           gradient_penalty=5.0, discount_gamma=0.8, gan_weight=0.01))
    assert isinstance(v1, losses.V1Objective) and v1.version == "v1" and v1.local_size == (64, 64)
    assert v1.weights == losses.V1LossWeights(coarse=1.2, l1=2.0, ae=1.2, gan=0.01, global_gan=1.0,
                                              gradient_penalty=5.0, discount_gamma=0.8)
    assert losses.make_objective(TrainConfig()).weights == losses.V1LossWeights()
    v2 = losses.make_objective(TrainConfig(version="v2", ae_weight=3.0))
    assert isinstance(v2, losses.V2Objective) and v2.version == "v2"
    assert v2.weights == losses.V2LossWeights(coarse=1.0, ae=3.0, gan=1.0)
    assert losses.make_objective(TrainConfig(version="v2")).weights == losses.V2LossWeights()
