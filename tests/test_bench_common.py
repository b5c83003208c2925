"""bench/common.py: the arithmetic counted in a traced graph and the comparison with the original."""

import sys

import pytest
import tensorflow as tf

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import common  # noqa: E402


def test_graph_gflop_counts_convolutions_their_gradients_and_matrix_products():
    kernel = tf.Variable(tf.zeros([3, 3, 5, 4]))
    weights = tf.Variable(tf.zeros([7, 6]))

    def step(x, rows):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, kernel, 2, "SAME")  # [2, 8, 6, 4]
            loss = tf.reduce_sum(y) + tf.reduce_sum(tf.matmul(rows, weights, transpose_a=True))
            unused = tf.reduce_sum(tf.matmul(rows, weights, transpose_a=True))
        # The tape differentiates the products for `weights`, which it watches; nothing uses that,
        # nor `unused`.
        return loss, tape.gradient(loss, [x, kernel])

    graph = tf.function(step).get_concrete_function(
        tf.TensorSpec([2, 16, 12, 5]), tf.TensorSpec([3, 7, 7])).graph
    conv = 2 * (2 * 8 * 6 * 4) * 3 * 3 * 5  # output positions x taps x input channels, x 2
    matmul = 2 * 3 * 7 * 6 * 7  # batch x rows x columns x depth, x 2
    # The forward convolution, both of its gradients, and the product whose result is used.
    assert common.graph_gflop(graph) * 1e9 == pytest.approx(3 * conv + matmul)

    unknown = tf.function(step).get_concrete_function(
        tf.TensorSpec([None, 16, 12, 5]), tf.TensorSpec([3, 7, 7])).graph
    with pytest.raises(ValueError, match="not all known; trace with static shapes"):
        common.graph_gflop(unknown)


def test_original_comparison_scales_the_project_machine_time_by_the_matmul_rate():
    fields = common.original_comparison(("train", "v1", "iteration"), 10.0, 98.0)
    # 19.83 s at 196 GFLOP/s is 39.66 s on a machine half as fast.
    assert fields["original_seconds"] == pytest.approx(39.66)
    assert fields["speedup_vs_original"] == pytest.approx(3.966)
    assert fields["original"] == ("timing-project-machine.txt (19.83 s at 196 GFLOP/s) x 196 / this "
                                  "run's matmul 98.0 GFLOP/s")
    assert common.original_comparison(("train", "v1", "nothing"), 10.0, 98.0) == {
        "original_seconds": None, "speedup_vs_original": None, "original": None}
