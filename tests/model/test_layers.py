"""Tests of inpainting.model.layers: align-corners resizing, padded convolutions, the upsampling conv."""

import numpy as np
import pytest
import tensorflow as tf

from inpainting.model import layers
from inpainting.model.layers import Conv, UpConv
from layer_test import global_policy, run_layer_test

# Also run with the other oneDNN mode by `make test` (see pytest.ini).
pytestmark = pytest.mark.onednn_modes


@pytest.mark.parametrize("in_size,out_size", [
    (64, 32), (256, 64), (85, 42), (33, 16), (7, 3), (5, 1), (1, 1), (16, 32), (13, 26), (30, 7),
])
def test_resize_nearest_matches_tf1_align_corners(in_size, out_size):
    x = tf.reshape(tf.range(in_size * 3, dtype=tf.float32), [1, in_size, 3, 1])
    x = tf.tile(x, [1, 1, 1, 2])
    expected = tf.compat.v1.image.resize_nearest_neighbor(x, [out_size, 3], align_corners=True)
    np.testing.assert_array_equal(layers.resize_nearest(x, (out_size, 3)), expected)


def test_halving_is_not_strided_slicing():
    # The quirk the original networks were trained with (reference README, fact 2).
    rows = layers.align_corners_indices(64, 32).numpy()
    assert list(rows[14:18]) == [28, 30, 33, 35]
    rows = layers.align_corners_indices(256, 64).numpy()
    assert list(rows[9:13]) == [36, 40, 45, 49] and rows[-1] == 255


def test_upsample_is_repetition_and_matches_align_corners():
    x = tf.random.normal([2, 5, 7, 3])
    up = layers.upsample_nearest(x, 2)
    np.testing.assert_array_equal(up, np.repeat(np.repeat(x.numpy(), 2, axis=1), 2, axis=2))
    expected = tf.compat.v1.image.resize_nearest_neighbor(x, [10, 14], align_corners=True)
    np.testing.assert_array_equal(up, expected)


@pytest.mark.parametrize("padding", ["reflect", "symmetric"])
@pytest.mark.parametrize("kernel,stride,dilation", [(3, 1, 1), (5, 1, 1), (3, 2, 1), (3, 1, 2), (3, 1, 4)])
def test_mirror_padded_conv_equals_pad_plus_valid(padding, kernel, stride, dilation):
    conv = layers.Conv(6, kernel, stride, dilation, padding, activation=None)
    x = tf.random.normal([2, 18, 22, 4])
    y = conv(x)
    p = dilation * (kernel - 1) // 2
    padded = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode=padding.upper())
    expected = tf.nn.conv2d(padded, conv.kernel, stride, "VALID", dilations=dilation) + conv.bias
    np.testing.assert_allclose(y, expected, atol=1e-5)
    assert y.shape == (2, 18 // stride, 22 // stride, 6)


def test_same_padding_stride2_is_asymmetric_like_tf():
    # 3x3 stride 2 on even sizes pads 0 on top/left and 1 on bottom/right.
    conv = layers.Conv(3, 3, 2, activation=None)
    x = tf.random.normal([1, 8, 10, 2])
    y = conv(x)
    expected = tf.nn.conv2d(tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]]), conv.kernel, 2, "VALID")
    np.testing.assert_allclose(y, expected + conv.bias, atol=1e-5)


@pytest.mark.parametrize("activation,fn", [
    ("elu", tf.nn.elu), ("relu", tf.nn.relu), ("leaky_relu", lambda v: tf.maximum(v, 0.2 * v)),
])
def test_conv_activations(activation, fn):
    conv = layers.Conv(4, 3, activation=activation)
    x = tf.random.normal([1, 6, 6, 2])
    y = conv(x)
    linear = tf.nn.conv2d(x, conv.kernel, 1, "SAME") + conv.bias
    np.testing.assert_allclose(y, fn(linear), atol=1e-6)


def test_conv_config_round_trip_and_output_shape():
    conv = layers.Conv(8, 3, 2, 1, "symmetric", "relu", name="conv2_downsample")
    clone = layers.Conv.from_config(conv.get_config())
    assert clone.get_config() == conv.get_config()
    assert conv.compute_output_shape((None, 17, 20, 3)) == (None, 9, 10, 8)
    assert conv(tf.zeros([1, 17, 20, 3])).shape == (1, 9, 10, 8)


def test_upconv_shape_names_and_config():
    up = layers.UpConv(5, padding="reflect", name="conv13_upsample")
    y = up(tf.random.normal([2, 4, 6, 3]))
    assert y.shape == (2, 8, 12, 5) == up.compute_output_shape((2, 4, 6, 3))
    assert up.conv.name == "conv13_upsample_conv"
    assert layers.UpConv.from_config(up.get_config()).get_config() == up.get_config()
    expected = up.conv(layers.upsample_nearest(tf.zeros([2, 4, 6, 3])))
    np.testing.assert_allclose(up(tf.zeros([2, 4, 6, 3])), expected)


def test_conv_rejects_bad_arguments():
    with pytest.raises(ValueError, match="padding must be one of"):
        layers.Conv(4, 3, padding="REFELECT")
    with pytest.raises(ValueError, match="activation must be one of"):
        layers.Conv(4, 3, activation="gelu")


def test_conv_checkpoint_round_trip(tmp_path):
    conv = layers.Conv(4, 3)
    x = tf.random.normal([1, 8, 8, 2])
    y = conv(x)
    path = tf.train.Checkpoint(layer=conv).write(str(tmp_path / "ckpt"))
    other = layers.Conv(4, 3)
    other.build(x.shape)
    tf.train.Checkpoint(layer=other).read(path).assert_consumed()
    np.testing.assert_array_equal(other(x), y)


@pytest.mark.parametrize("mode", ["reflect", "symmetric"])
@pytest.mark.parametrize("size,pad", [(1, 3), (2, 5), (3, 16), (8, 16), (16, 16), (17, 16), (5, 1)])
def test_mirror_padding_any_size_equals_numpy(mode, size, pad):
    x = tf.reshape(tf.range(size * size, dtype=tf.float32), [1, size, size, 1])
    got = layers.pad_for_conv(x, 3, pad, mode)[0, :, :, 0].numpy()
    np.testing.assert_array_equal(got, np.pad(x.numpy()[0, :, :, 0], pad, mode=mode))
    if pad < size:  # where tf.pad's MirrorPad is defined, it is the same
        expected = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode=mode.upper())
        np.testing.assert_array_equal(got, expected[0, :, :, 0])


def test_leaky_relu_matches_tf_in_value_and_first_and_second_gradients():
    x = tf.constant([-2.0, -0.5, 0.0, 0.5, 3.0])
    w = tf.Variable([1.0, -2.0, 3.0, 0.5, -1.0])

    def derivatives(activation):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = activation(x * w)
                loss = tf.reduce_sum(y * y)
            grad = inner.gradient(loss, x)
            penalty = tf.reduce_sum(grad * grad)
        return y, grad, outer.gradient(penalty, w)

    ours = derivatives(layers.leaky_relu)
    reference = derivatives(lambda v: tf.nn.leaky_relu(v, alpha=0.2))
    for a, b in zip(ours, reference):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def _zero_inserted_kernel(kernel, rate):
    """The dilated kernel written out: `rate - 1` zeros between taps (an undilated convolution)."""
    kh, kw, cin, cout = kernel.shape
    full = np.zeros((rate * (kh - 1) + 1, rate * (kw - 1) + 1, cin, cout), np.float32)
    full[::rate, ::rate] = kernel
    return full


def _dilated_value_and_gradients(conv, x, kernel, upstream):
    """(y, d(sum(y * upstream))/dx, .../dkernel) of `conv(x, kernel)`, traced like training steps."""

    @tf.function
    def step(x, kernel):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = conv(x, kernel)
            loss = tf.reduce_sum(y * upstream)
        return [y, *tape.gradient(loss, [x, kernel])]

    return [v.numpy() for v in step(x, kernel)]


def _assert_close_relative(actual, expected, rtol=1e-5):
    """Every value within `rtol` of the largest magnitude of `expected`."""
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("formulation", ["auto", "space_to_batch"])
@pytest.mark.parametrize("shape,kernel_size,rate,padding", [
    ((2, 37, 29, 3), 3, 2, "SAME"),   # sizes that are not multiples of the rate
    ((1, 16, 16, 4), 3, 16, "SAME"),  # a rate as large as the map (conv10_atrous on a 64x64 image)
    ((2, 40, 23, 3), 3, 4, "VALID"),  # a pre-padded strip, as inpainting.inference.streaming convolves it
    ((1, 9, 10, 2), 5, 3, "SAME"),
    ((3, 8, 8, 2), 3, 8, "SAME"),
])
def test_dilated_conv_formulations_match_the_zero_inserted_kernel(formulation, shape, kernel_size, rate,
                                                                 padding):
    # The reference is an undilated convolution with the taps spread out by zeros: the same sums,
    # with kernels (and gradients) that every backend has, with oneDNN on or off.
    rng = np.random.default_rng(rate)
    x = tf.constant(rng.uniform(-1, 1, shape), tf.float32)
    kernel = tf.constant(rng.normal(0, 0.2, (kernel_size, kernel_size, shape[-1], 5)), tf.float32)
    full = _zero_inserted_kernel(kernel.numpy(), rate)
    out_shape = layers.space_to_batch_conv2d(x, kernel, rate, padding).shape
    upstream = tf.constant(rng.normal(size=out_shape), tf.float32)

    y, dx, dkernel = _dilated_value_and_gradients(
        lambda x, k: layers.dilated_conv2d(x, k, rate, padding, formulation), x, kernel, upstream)
    ref_y, ref_dx, ref_dfull = _dilated_value_and_gradients(
        lambda x, k: tf.nn.conv2d(x, k, 1, padding), x, tf.constant(full), upstream)
    assert y.shape == ref_y.shape == tuple(out_shape)
    _assert_close_relative(y, ref_y)
    _assert_close_relative(dx, ref_dx)
    _assert_close_relative(dkernel, ref_dfull[::rate, ::rate])


def test_native_dilated_gradients_where_tensorflow_has_them():
    # Where the probe says TF has dilated gradient kernels, the native formulation trains and
    # agrees with space-to-batch; where it says not, the native gradient is the error users hit.
    rng = np.random.default_rng(3)
    x = tf.constant(rng.uniform(-1, 1, (2, 20, 18, 3)), tf.float32)
    kernel = tf.constant(rng.normal(0, 0.2, (3, 3, 3, 4)), tf.float32)
    upstream = tf.constant(rng.normal(size=(2, 20, 18, 4)), tf.float32)

    def run(formulation):
        return _dilated_value_and_gradients(
            lambda x, k: layers.dilated_conv2d(x, k, 4, "SAME", formulation), x, kernel, upstream)

    if layers.native_dilated_gradients():
        for native, space_to_batch in zip(run("native"), run("space_to_batch")):
            _assert_close_relative(native, space_to_batch)
    else:
        with pytest.raises(tf.errors.InvalidArgumentError, match="dilation"):
            run("native")


def test_auto_dilated_convolution_trains_in_float16():
    # TensorFlow's CPU has no float16 gradient for dilated convolutions (with oneDNN on or off):
    # "auto" takes the space-to-batch gradient there, and it agrees with float32's.
    rng = np.random.default_rng(4)
    values = [rng.uniform(-1, 1, (2, 12, 10, 3)), rng.normal(0, 0.2, (3, 3, 3, 4)),
              rng.normal(size=(2, 12, 10, 4))]
    results = {}
    for dtype in (tf.float32, tf.float16):
        x, kernel, upstream = (tf.constant(v, dtype) for v in values)
        results[dtype] = _dilated_value_and_gradients(
            lambda x, k: layers.dilated_conv2d(x, k, 2, "SAME", "auto"), x, kernel, upstream)
    assert not tf.config.list_physical_devices("GPU") and not layers.native_dilated_gradients(tf.float16)
    for half, full in zip(results[tf.float16], results[tf.float32]):
        assert half.dtype == np.float16
        np.testing.assert_allclose(np.asarray(half, np.float32), full, rtol=0,
                                   atol=5e-3 * np.abs(full).max())


def test_auto_forward_is_tensorflows_dilated_kernel():
    # The forward pass, which inference and export use, is TF's own op on every backend.
    x = tf.random.stateless_normal([1, 12, 12, 2], seed=[1, 2])
    kernel = tf.random.stateless_normal([3, 3, 2, 3], seed=[3, 4])
    graph = tf.function(lambda x: layers.dilated_conv2d(x, kernel, 2, "SAME", "auto")).get_concrete_function(
        tf.TensorSpec([1, 12, 12, 2]))
    convs = [op for op in graph.graph.get_operations() if op.type == "Conv2D"]
    assert [list(op.get_attr("dilations")) for op in convs] == [[1, 2, 2, 1]]
    assert not [op for op in graph.graph.get_operations() if op.type == "SpaceToBatchND"]


def test_conv_layer_trains_with_a_dilation_on_this_backend():
    conv = layers.Conv(4, 3, dilation_rate=4, padding="same", activation="elu")
    x = tf.random.stateless_uniform([2, 17, 19, 3], seed=[5, 6], minval=-1, maxval=1)
    conv.build(x.shape)

    @tf.function
    def gradients(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(conv(x) ** 2)
        return tape.gradient(loss, [conv.kernel, conv.bias])

    kernel_gradient, _ = gradients(x)
    full = tf.constant(_zero_inserted_kernel(conv.kernel.numpy(), 4))
    with tf.GradientTape() as tape:
        tape.watch(full)
        loss = tf.reduce_sum(tf.nn.elu(tf.nn.conv2d(x, full, 1, "SAME") + conv.bias) ** 2)
    _assert_close_relative(kernel_gradient.numpy(), tape.gradient(loss, full).numpy()[::4, ::4])


def test_dilated_conv_formulation_variable_is_checked(monkeypatch):
    monkeypatch.setenv(layers.DILATED_CONV_VARIABLE, "space_to_batch")
    assert layers.dilated_conv_formulation() == "space_to_batch"
    monkeypatch.setenv(layers.DILATED_CONV_VARIABLE, "fast")
    with pytest.raises(ValueError, match="INPAINTING_DILATED_CONV must be one of .*got 'fast'"):
        layers.Conv(2, 3, dilation_rate=2)(tf.zeros([1, 8, 8, 1]))


def test_gated_conv_is_activation_times_sigmoid_gate():
    tf.keras.utils.set_random_seed(3)
    x = tf.random.normal([2, 12, 10, 5])
    conv = Conv(8, 3, gated=True)
    y = conv(x)
    assert y.shape == (2, 12, 10, 4) and conv.compute_output_shape(x.shape) == (2, 12, 10, 4)
    raw = tf.nn.bias_add(tf.nn.conv2d(x, conv.kernel, 1, "SAME"), conv.bias)
    np.testing.assert_allclose(y, tf.nn.elu(raw[..., :4]) * tf.sigmoid(raw[..., 4:]), atol=1e-6)
    # Without an activation there is no gate (the original's output layers).
    assert Conv(3, 3, activation=None, gated=True)(x).shape[-1] == 3
    assert UpConv(8, gated=True)(x).shape == (2, 24, 20, 4)
    with pytest.raises(ValueError, match="even number of filters"):
        Conv(7, 3, gated=True)
    restored = Conv.from_config(conv.get_config())
    assert restored.gated and restored.filters == 8


# ------------------------------------------------------------------ the layer contract (layer_test)

@pytest.mark.parametrize("kwargs,shape,expected", [
    ({"filters": 4, "kernel_size": 3}, (2, 8, 10, 3), (2, 8, 10, 4)),
    ({"filters": 6, "kernel_size": 5, "strides": 2, "padding": "reflect", "activation": "leaky_relu",
      "name": "conv2_downsample"}, (2, 9, 8, 3), (2, 5, 4, 6)),
    ({"filters": 4, "kernel_size": 3, "dilation_rate": 2, "padding": "symmetric", "activation": "relu"},
     (1, 8, 7, 2), (1, 8, 7, 4)),
    ({"filters": 8, "kernel_size": 3, "gated": True}, (2, 8, 8, 3), (2, 8, 8, 4)),
    ({"filters": 3, "kernel_size": 3, "activation": None, "gated": True}, (2, 8, 8, 3), (2, 8, 8, 3)),
])
def test_conv_layer_contract(tmp_path, kwargs, shape, expected):
    run_layer_test(Conv, kwargs, input_shapes=shape, tmp_path=tmp_path, expected_output_shape=expected,
                   expected_output_dtype="float32")


@pytest.mark.parametrize("kwargs,shape,expected", [
    ({"filters": 4}, (2, 4, 6, 3), (2, 8, 12, 4)),
    ({"filters": 8, "padding": "reflect", "gated": True, "name": "conv13_upsample"}, (1, 5, 3, 2), (1, 10, 6, 4)),
    ({"filters": 3, "padding": "symmetric", "activation": None}, (2, 3, 3, 4), (2, 6, 6, 3)),
])
def test_upconv_layer_contract(tmp_path, kwargs, shape, expected):
    run_layer_test(UpConv, kwargs, input_shapes=shape, tmp_path=tmp_path, expected_output_shape=expected,
                   expected_output_dtype="float32")


@pytest.mark.parametrize("layer_cls,kwargs", [
    (Conv, {"filters": 8, "kernel_size": 3, "gated": True}),
    (Conv, {"filters": 4, "kernel_size": 3, "dilation_rate": 2}),
    (UpConv, {"filters": 4, "gated": True}),
])
def test_layers_under_mixed_precision(tmp_path, layer_cls, kwargs):
    # Training with --precision=mixed_bfloat16 sets the global policy before building the model.
    with global_policy("mixed_bfloat16"):
        layer = run_layer_test(layer_cls, kwargs, input_shapes=(2, 6, 6, 3), tmp_path=tmp_path,
                               expected_output_dtype="bfloat16", function_rtol=5e-2)
    assert all(weight.dtype == "float32" for weight in layer.weights)
