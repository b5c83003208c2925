"""Tests of contextual attention: the reference data, a slow loop version, and the two formulations."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import load_reference
from inpainting.model import attention
from inpainting.model.attention import ContextualAttention
from layer_test import run_layer_test

# Also run with the other oneDNN mode by `make test` (see pytest.ini).
pytestmark = pytest.mark.onednn_modes

IMPLEMENTATIONS = {"matmul": attention.attention_matmul, "patches": attention.attention_patches}
# Two grid rows per block: every block border and both wraps of the column-major fuse pass matter.
FORMULATIONS = {**IMPLEMENTATIONS,
                "chunked": lambda *a, **k: attention.attention_matmul_chunked(*a, block_rows=2, **k)}
REFERENCE_CASES = {  # case -> (f, b, mask, fuse)
    "A": ("f_A", "f_A", "mask_A", True),
    "B_fuse": ("f_B", "b_B", None, True),
    "B_fuse_mask": ("f_B", "b_B", "mask_B", True),
    "B_nofuse": ("f_B", "b_B", None, False),
}


def _align_corners_rows(n_in, n_out):
    scale = np.float32(n_in - 1) / np.float32(max(n_out - 1, 1)) if n_out > 1 else np.float32(0)
    src = np.arange(n_out, dtype=np.float32) * scale
    return np.minimum(np.floor(src + np.float32(0.5)).astype(int), n_in - 1)


def slow_attention(f, b, mask, ksize=3, rate=2, fuse_k=3, scale=10.0, fuse=True):
    """Contextual attention for one example [H, W, C], written with loops from the specification."""
    f, b = f.astype(np.float64), b.astype(np.float64)
    height, width, channels = f.shape
    rows = _align_corners_rows(height, height // rate)
    cols = _align_corners_rows(width, width // rate)
    fd, bd = f[rows][:, cols], b[rows][:, cols]
    md = np.zeros(fd.shape[:2]) if mask is None else mask[rows][:, cols]
    h, w = fd.shape[:2]
    n, pad = h * w, ksize // 2
    fp = np.pad(fd, ((pad, pad), (pad, pad), (0, 0)))
    bp = np.pad(bd, ((pad, pad), (pad, pad), (0, 0)))
    mp = np.pad(md, pad)
    scores = np.zeros((n, n))
    usable = np.zeros(n)
    for q in range(n):
        qy, qx = divmod(q, w)
        key = bp[qy:qy + ksize, qx:qx + ksize]
        key = key / max(np.sqrt((key ** 2).sum()), 1e-4)
        usable[q] = float(np.all(mp[qy:qy + ksize, qx:qx + ksize] == 0))
        for p in range(n):
            py, px = divmod(p, w)
            scores[p, q] = (fp[py:py + ksize, px:px + ksize] * key).sum()

    def diagonal(matrix):
        out = np.zeros_like(matrix)
        for p in range(n):
            for q in range(n):
                for t in range(-(fuse_k // 2), fuse_k // 2 + 1):
                    if 0 <= p + t < n and 0 <= q + t < n:
                        out[p, q] += matrix[p + t, q + t]
        return out

    if fuse:
        scores = diagonal(scores)
        column_major = np.array([(i % h) * w + i // h for i in range(n)])  # index in row-major order
        scores = diagonal(scores[np.ix_(column_major, column_major)])
        inverse = np.argsort(column_major)
        scores = scores[np.ix_(inverse, inverse)]
    logits = scale * scores * usable
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    weights = weights / weights.sum(axis=1, keepdims=True) * usable
    best = weights.argmax(axis=1)
    offsets = np.stack([best // w - np.arange(n) // w, best % w - np.arange(n) % w], -1)
    y = np.zeros_like(f)
    size, before = 2 * rate, rate // 2
    for p in range(n):
        py, px = divmod(p, w)
        for q in range(n):
            qy, qx = divmod(q, w)
            for ky in range(size):
                for kx in range(size):
                    oy, ox = rate * py + ky - before, rate * px + kx - before
                    sy, sx = rate * qy + ky - before, rate * qx + kx - before
                    if 0 <= oy < height and 0 <= ox < width and 0 <= sy < height and 0 <= sx < width:
                        y[oy, ox] += weights[p, q] * b[sy, sx]
    return y / 4.0, offsets.reshape(h, w, 2)


def _max_relative(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


@pytest.mark.parametrize("implementation", sorted(FORMULATIONS))
@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_matches_original_outputs(implementation, case):
    ref = load_reference("v1", "contextual_attention.npz")
    f_key, b_key, mask_key, fuse = REFERENCE_CASES[case]
    mask = None if mask_key is None else ref[mask_key]
    y, offsets = FORMULATIONS[implementation](ref[f_key], ref[b_key], mask, fuse=fuse)
    assert _max_relative(y, ref[f"y_{case}"]) <= 1e-3
    equal = np.mean(np.all(offsets.numpy() == ref[f"offsets_raw_{case}"], axis=-1))
    assert equal >= 0.99  # measured: 1.0 for every case and both implementations


@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_layer_flow_matches_original(case):
    ref = load_reference("v1", "contextual_attention.npz")
    f_key, b_key, mask_key, fuse = REFERENCE_CASES[case]
    layer = ContextualAttention(fuse=fuse)
    out = layer([ref[f_key], ref[b_key], None if mask_key is None else ref[mask_key]])
    assert np.mean(out["flow"].numpy() == ref[f"flow_{case}"]) >= 0.99  # measured: 1.0


@pytest.mark.parametrize("implementation", sorted(FORMULATIONS))
@pytest.mark.parametrize("size,fuse,with_mask,rate,ksize", [
    ((10, 12), True, True, 2, 3), ((12, 18), True, False, 2, 3), ((10, 14), False, True, 2, 3),
    ((12, 12), True, True, 3, 3), ((6, 8), True, True, 1, 3), ((16, 6), True, True, 2, 3),
    ((14, 16), True, True, 2, 5), ((10, 8), False, False, 1, 1),
])
def test_matches_slow_loop_version(implementation, size, fuse, with_mask, rate, ksize):
    rng = np.random.default_rng(sum(size) + rate)
    f = rng.normal(size=(1, *size, 3)).astype(np.float32)
    b = rng.normal(size=(1, *size, 3)).astype(np.float32)
    mask = None
    if with_mask:
        mask = np.zeros((1, *size, 1), np.float32)
        mask[0, 2:7, 3:8] = 1
    y, offsets = FORMULATIONS[implementation](f, b, mask, ksize=ksize, rate=rate, fuse=fuse)
    expected_y, expected_offsets = slow_attention(f[0], b[0], None if mask is None else mask[0, ..., 0],
                                                  ksize=ksize, rate=rate, fuse=fuse)
    np.testing.assert_allclose(y[0], expected_y, atol=1e-5)
    np.testing.assert_array_equal(offsets[0], expected_offsets)


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_wider_fuse_matches_slow_loop_version(implementation):
    rng = np.random.default_rng(5)
    f, b = rng.normal(size=(2, 1, 12, 14, 3)).astype(np.float32)
    mask = np.zeros((1, 12, 14, 1), np.float32)
    mask[0, 3:9, 4:10] = 1
    y, offsets = IMPLEMENTATIONS[implementation](f, b, mask, fuse_k=5)
    expected_y, expected_offsets = slow_attention(f[0], b[0], mask[0, ..., 0], fuse_k=5)
    np.testing.assert_allclose(y[0], expected_y, atol=1e-5)
    np.testing.assert_array_equal(offsets[0], expected_offsets)


def _random_case(batch=3, size=(14, 22), channels=5, seed=0):
    rng = np.random.default_rng(seed)
    f = tf.constant(rng.normal(size=(batch, *size, channels)), tf.float32)
    b = tf.constant(rng.normal(size=(batch, *size, channels)), tf.float32)
    masks = np.zeros((batch, *size, 1), np.float32)
    for i in range(batch):  # a different hole per example
        top, left = rng.integers(0, size[0] - 6), rng.integers(0, size[1] - 6)
        masks[i, top:top + 4 + i, left:left + 6] = 1
    return f, b, tf.constant(masks)


def test_formulations_agree_with_per_example_masks():
    f, b, masks = _random_case()
    y_m, off_m = attention.attention_matmul(f, b, masks)
    y_p, off_p = attention.attention_patches(f, b, masks)
    np.testing.assert_allclose(y_m, y_p, atol=1e-5)
    np.testing.assert_array_equal(off_m, off_p)


def _input_gradients(functions):
    """{name: [d/df, d/db]} of a fixed random projection of each function's output."""
    f, b, masks = _random_case(batch=2, size=(10, 18), seed=3)
    probe = tf.random.stateless_normal(f.shape, seed=[1, 2])
    grads = {}
    for name, fn in functions.items():
        with tf.GradientTape() as tape:
            tape.watch([f, b])
            y, _ = fn(f, b, masks)
            loss = tf.reduce_sum(y * probe)
        grads[name] = tape.gradient(loss, [f, b])
    return grads


def test_formulations_agree_in_gradients():
    grads = _input_gradients(IMPLEMENTATIONS)
    for g_m, g_p in zip(grads["matmul"], grads["patches"]):
        assert np.abs(g_m).max() > 0.1
        np.testing.assert_allclose(g_m, g_p, atol=1e-5 * max(1.0, np.abs(g_p).max()))


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_each_example_uses_its_own_mask(implementation):
    fn = IMPLEMENTATIONS[implementation]
    f, b, masks = _random_case(batch=2)
    y, offsets = fn(f, b, masks)
    for i in range(2):
        y_i, off_i = fn(f[i:i + 1], b[i:i + 1], masks[i:i + 1])
        np.testing.assert_allclose(y[i], y_i[0], atol=1e-5)
        np.testing.assert_array_equal(offsets[i], off_i[0])


def test_single_mask_is_shared_by_the_batch():
    f, b, masks = _random_case(batch=3)
    shared = masks[:1]
    y, _ = attention.attention_matmul(f, b, shared)
    y_tiled, _ = attention.attention_matmul(f, b, tf.tile(shared, [3, 1, 1, 1]))
    np.testing.assert_allclose(y, y_tiled, atol=1e-6)
    assert np.abs(y[1] - attention.attention_matmul(f, b, masks)[0][1]).max() > 1e-3


def test_unusable_patches_get_zero_weight_in_the_output():
    # A background made of one constant colour inside the hole: nothing may be copied from there.
    f, b, _ = _random_case(batch=1, size=(16, 16), channels=3, seed=5)
    mask = np.zeros((1, 16, 16, 1), np.float32)
    mask[0, 4:12, 4:12] = 1
    b_marked = tf.where(mask > 0, 1000.0, b)
    y, offsets = attention.attention_matmul(f, b_marked, mask)
    assert np.abs(y).max() < 100.0  # the 1000s never reach the output
    sources = offsets.numpy()[0] + np.stack(np.mgrid[0:8, 0:8], -1)
    assert not np.any((sources[..., 0] >= 3) & (sources[..., 0] <= 4)
                      & (sources[..., 1] >= 3) & (sources[..., 1] <= 4))


def test_layer_dynamic_shapes_in_tf_function():
    layer = ContextualAttention()
    run = tf.function(lambda f, m: layer([f, f, m]),
                      input_signature=[tf.TensorSpec([None, None, None, 4]),
                                       tf.TensorSpec([None, None, None, 1])])
    for size in [(12, 20), (16, 8)]:
        f, _, masks = _random_case(batch=2, size=size, channels=4, seed=sum(size))
        out = run(f, masks)
        y, offsets = attention.attention_matmul(f, f, masks)
        # Values reach 3.2; the traced graph rounds differently from eager (up to 2e-6 measured).
        np.testing.assert_allclose(out["output"], y, atol=1e-5)
        np.testing.assert_array_equal(out["offsets"], offsets)
        assert out["flow"].shape == (2, *size, 3)
    assert run.experimental_get_tracing_count() == 1


def test_layer_config_round_trip_and_shapes():
    layer = ContextualAttention(implementation="patches", flow_upsample="bilinear", softmax_scale=5.0)
    clone = ContextualAttention.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    shapes = layer.compute_output_shape([(2, 16, 24, 8), (2, 16, 24, 8), (1, 16, 24, 1)])
    assert shapes == {"output": (2, 16, 24, 8), "offsets": (2, 8, 12, 2), "flow": (2, 16, 24, 3)}


def test_layer_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        ContextualAttention()([tf.zeros([1, 8, 8, 2]), tf.zeros([1, 8, 10, 2]), None])
    with pytest.raises(ValueError, match="multiples of rate"):
        ContextualAttention()([tf.zeros([1, 9, 8, 2]), tf.zeros([1, 9, 8, 2]), None])
    with pytest.raises(ValueError, match="implementation"):
        ContextualAttention(implementation="loops")
    with pytest.raises(ValueError, match="odd"):
        ContextualAttention(ksize=4)


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_no_usable_patch_at_all(implementation):
    # Every weight is 0: nothing is pasted and argmax falls back to index 0, as in the original.
    f, b, _ = _random_case(batch=2, size=(8, 12), channels=3, seed=9)
    y, offsets = IMPLEMENTATIONS[implementation](f, b, tf.ones([1, 8, 12, 1]))
    np.testing.assert_array_equal(y, np.zeros_like(y))
    positions = np.stack(np.mgrid[0:4, 0:6], -1)
    np.testing.assert_array_equal(offsets, np.broadcast_to(-positions, (2, 4, 6, 2)))


# ---- chunked attention: the score matrix in blocks of rows, the same result ----------------------

@pytest.mark.parametrize("block_rows", [1, 2, 3, 5, 7, 100])  # 3, 5 and 7 do not divide 7 or 11 rows
@pytest.mark.parametrize("fuse", [True, False])
def test_chunked_equals_unchunked(block_rows, fuse):
    f, b, masks = _random_case(batch=3, size=(14, 22), seed=5)
    y, offsets = attention.attention_matmul(f, b, masks, fuse=fuse)
    y_c, offsets_c = attention.attention_matmul_chunked(f, b, masks, fuse=fuse, block_rows=block_rows)
    np.testing.assert_allclose(y_c, y, atol=1e-5)
    np.testing.assert_array_equal(offsets_c, offsets)


def test_chunked_gradients_equal_unchunked():
    grads = _input_gradients({
        "whole": attention.attention_matmul,
        "chunked": lambda *a: attention.attention_matmul_chunked(*a, block_rows=2)})
    for g_c, g_w in zip(grads["chunked"], grads["whole"]):
        assert np.abs(g_w).max() > 0.1
        np.testing.assert_allclose(g_c, g_w, atol=1e-5 * max(1.0, np.abs(g_w).max()))


def test_chunked_layer_in_a_dynamic_shape_function():
    layer = ContextualAttention(block_rows=3)
    whole = ContextualAttention()
    run = tf.function(lambda f, m: layer([f, f, m]), input_signature=[
        tf.TensorSpec([None, None, None, 4]), tf.TensorSpec([None, None, None, 1])])
    for size in ((16, 24), (22, 10)):
        f, _, masks = _random_case(batch=1, size=size, channels=4, seed=size[0])
        out, expected = run(f, masks), whole([f, f, masks])
        np.testing.assert_allclose(out["output"], expected["output"], atol=1e-5)
        np.testing.assert_array_equal(out["flow"], expected["flow"])
    assert run.experimental_get_tracing_count() == 1
    assert ContextualAttention.from_config(layer.get_config()).block_rows == 3
    with pytest.raises(ValueError, match="block_rows needs implementation='matmul'"):
        ContextualAttention(implementation="patches", block_rows=4)


@pytest.mark.parametrize("kwargs,masked", [
    ({}, True),
    ({}, False),
    ({"implementation": "patches", "fuse": False, "flow_upsample": "bilinear", "flow_dtype": "float32",
      "name": "contextual_attention"}, False),
    ({"ksize": 5, "rate": 1, "fuse_k": 5, "softmax_scale": 4.0}, True),
    ({"block_rows": 3}, True),
    ({"memory_mb": 0.04}, True),  # 3 grid rows per block
], ids=["default", "no_mask", "patches_v2_flow", "ksize5_rate1", "block_rows", "memory_mb"])
def test_layer_contract(tmp_path, kwargs, masked):
    # The traced gradient of the blocks is block_rows' (memory_mb traces both ways, slowly).
    rng = np.random.default_rng(0)
    f = rng.uniform(-1, 1, (2, 16, 12, 4)).astype(np.float32)
    mask = np.zeros((1, 16, 12, 1), np.float32)
    mask[:, 4:10, 4:8] = 1
    rate = kwargs.get("rate", 2)
    run_layer_test(ContextualAttention, kwargs, [f, f[::-1], mask if masked else None], tmp_path=tmp_path,
                   expected_output_shape={"output": (2, 16, 12, 4), "offsets": (2, 16 // rate, 12 // rate, 2),
                                          "flow": (2, 16, 12, 3)},
                   expected_output_dtype={"output": "float32", "offsets": "int32", "flow": "float32"},
                   differentiable_inputs=(0, 1), traced_gradients="memory_mb" not in kwargs)
