"""Losses: parity with the original on the reference batch, and closed-form cases."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import load_reference
from inpainting.checkpoints import tf1
from inpainting.checkpoints.tf1 import load_official_critics, load_official_generator
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
    g = losses.generator_losses(critics, images, outputs, mask, bbox, (h, w))
    completed = losses.paste(images, outputs["refined"], mask)
    d = losses.critic_losses(critics, images, completed, mask, bbox, ref["alpha_local"],
                             ref["alpha_global"], (h, w))
    ours = {"l1_loss": g["l1"], "ae_loss": g["ae"], "g_loss": g["g_loss"], "d_loss": d["d_loss"],
            "gp_loss": d["gp"]}
    for key, value in ours.items():
        assert float(tf.reduce_mean(value)) == pytest.approx(float(ref[key]), rel=1e-5), key


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
