"""Convolution layers and nearest-neighbour resizing of the DeepFill networks.

Resizing follows TF1's `resize_nearest_neighbor(align_corners=True)`, the rule the original
networks were trained with: output index `i` reads input index
`round_half_away_from_zero(float32(i) * float32(in - 1) / float32(out - 1))`. Doubling by that rule is
plain pixel repetition; halving is *not* strided slicing (64 -> 32 picks rows 0, 2, ..., 30, 33, 35, ...).
Both are written with ops that have gradients under XLA and are TFLite built-ins (tile +
depth_to_space, gather).

Dilated convolutions run TensorFlow's own dilated kernel forward on every backend. Their gradient
is TensorFlow's where it has one; TensorFlow's CPU kernels without oneDNN (CPUs without AVX-512,
or `TF_ENABLE_ONEDNN_OPTS=0`) have none, and there the gradient is computed in the space-to-batch
formulation (`space_to_batch_conv2d`), which needs only undilated kernels. The environment variable
`INPAINTING_DILATED_CONV` chooses the formulation: `auto` (the default, as just described), `native`
(TensorFlow's kernels forward and backward) or `space_to_batch` (that formulation forward and
backward). Each computes the same numbers up to float rounding.
"""

import functools
import os

import keras
import tensorflow as tf

from inpainting.config import PADDINGS

LEAKY_SLOPE = 0.2
DILATED_CONV_VARIABLE = "INPAINTING_DILATED_CONV"
DILATED_CONV_FORMULATIONS = ("auto", "native", "space_to_batch")


@tf.custom_gradient
def leaky_relu(x):
    """`tf.nn.leaky_relu(x, 0.2)` whose gradient reads the output instead of the input.

    Both have the same sign, so the gradient is the same; reading the output lets Grappler fuse
    convolution + bias + leaky ReLU in training graphs (the critics' gradient penalty otherwise
    makes the fusion fail and leaves the whole step unfused).
    """
    y = tf.nn.leaky_relu(x, alpha=LEAKY_SLOPE)

    def grad(dy):
        return tf.raw_ops.LeakyReluGrad(gradients=dy, features=y, alpha=LEAKY_SLOPE)

    return y, grad


ACTIVATIONS = {
    None: None,
    "elu": tf.nn.elu,
    "relu": tf.nn.relu,
    "leaky_relu": leaky_relu,
}


def align_corners_indices(in_size, out_size):
    """Source indices of TF1 nearest-neighbour resizing with `align_corners=True`.

    Args:
        in_size: input length, a scalar int32 tensor or Python int.
        out_size: output length, a scalar int32 tensor or Python int.

    Returns:
        int32 tensor `[out_size]` of indices into the input.
    """
    in_size = tf.convert_to_tensor(in_size, tf.int32)
    out_size = tf.convert_to_tensor(out_size, tf.int32)
    scale = tf.where(
        out_size > 1,
        tf.cast(in_size - 1, tf.float32) / tf.cast(tf.maximum(out_size - 1, 1), tf.float32),
        0.0)
    src = tf.cast(tf.range(out_size), tf.float32) * scale
    whole = tf.floor(src)
    # roundf: half away from zero (all values are >= 0); tf.round would round half to even.
    rounded = whole + tf.cast(src - whole >= 0.5, tf.float32)
    return tf.minimum(tf.cast(rounded, tf.int32), in_size - 1)


def resize_nearest(x, size):
    """Nearest-neighbour resize of `x` [B, H, W, C] to `size` (height, width), align_corners=True rule."""
    shape = tf.shape(x)
    x = tf.gather(x, align_corners_indices(shape[1], size[0]), axis=1)
    return tf.gather(x, align_corners_indices(shape[2], size[1]), axis=2)


def downsample_nearest(x, factor=2):
    """Shrinks `x` [B, H, W, C] to (H // factor, W // factor) by the align_corners rule."""
    shape = tf.shape(x)
    return resize_nearest(x, (shape[1] // factor, shape[2] // factor))


def upsample_nearest(x, factor=2):
    """Enlarges `x` [B, H, W, C] by an integer factor with pixel repetition (= align_corners nearest)."""
    if factor == 1:
        return x
    return tf.nn.depth_to_space(tf.tile(x, [1, 1, 1, factor * factor]), factor)


def mirror_indices(size, pad, mode):
    """Source indices of mirror padding by `pad` on both sides of an axis of length `size`.

    Equals `tf.pad(mode="REFLECT" | "SYMMETRIC")` where that op is defined (pad < size, or
    pad <= size for symmetric) and keeps folding back and forth beyond it, as `numpy.pad` does,
    so small feature maps work with large dilations.
    """
    size = tf.convert_to_tensor(size, tf.int32)
    return fold_indices(tf.range(-pad, size + pad, dtype=tf.int32), size, mode)


def fold_indices(index, size, mode):
    """Folds any integer positions `index` into [0, size) by mirroring ("reflect" or "symmetric").

    Position -1 maps to 1 ("reflect", the edge is not repeated) or 0 ("symmetric"), position
    `size` to `size - 2` or `size - 1`, and so on back and forth, as `numpy.pad` does.
    """
    if mode == "symmetric":
        period = 2 * size
        index = tf.math.floormod(index, period)
        return tf.where(index < size, index, period - 1 - index)
    period = tf.maximum(2 * size - 2, 1)  # a length-1 axis repeats its only value
    index = tf.math.floormod(index, period)
    return tf.minimum(tf.where(index < size, index, period - index), size - 1)


def pad_for_conv(x, kernel_size, dilation_rate, padding):
    """Mirror-pads `x` so that a VALID convolution keeps the size; returns `x` unchanged for "same"."""
    if padding == "same":
        return x
    p = dilation_rate * (kernel_size - 1) // 2
    shape = tf.shape(x)
    x = tf.gather(x, mirror_indices(shape[1], p, padding), axis=1)
    return tf.gather(x, mirror_indices(shape[2], p, padding), axis=2)


def _space_to_batch_geometry(x, kernel_shape, rate, padding):
    """(paddings, crops) of a stride-1 convolution with dilation `rate` done as space-to-batch.

    The input is padded as TF pads it ("SAME": `rate * (k - 1)` split with less before) and then up
    to a multiple of `rate`; the extra rows and columns are cropped off the output again.
    """
    shape = tf.shape(x)
    paddings, crops = [], []
    for size, k in ((shape[1], kernel_shape[0]), (shape[2], kernel_shape[1])):
        extent = rate * (k - 1)
        before, after = (extent // 2, extent - extent // 2) if padding == "SAME" else (0, 0)
        extra = -(size + before + after) % rate
        paddings.append([before, after + extra])
        crops.append([0, extra])
    return paddings, crops


def space_to_batch_conv2d(x, kernel, rate, padding):
    """`tf.nn.conv2d(x, kernel, 1, padding, dilations=rate)` with undilated kernels only.

    The `rate x rate` interleaved sub-grids of the padded input are moved into the batch
    (`space_to_batch_nd`), each is convolved with the undilated kernel ("VALID"), and the results
    are interleaved back (`batch_to_space`). Every output is the same sum of products as the
    dilated convolution's, so the two agree up to float rounding; the gradient needs only the
    undilated convolution's kernels, which every backend has.

    Args:
        x: [B, H, W, C] input.
        kernel: [kh, kw, C, F] kernel.
        rate: the dilation, an int >= 1.
        padding: "SAME" or "VALID", as TF's convolution.

    Returns:
        [B, H', W', F], H' = H ("SAME") or H - rate * (kh - 1) ("VALID").
    """
    paddings, crops = _space_to_batch_geometry(x, kernel.shape, rate, padding)
    y = tf.space_to_batch_nd(x, [rate, rate], paddings)
    y = tf.nn.conv2d(y, kernel, 1, "VALID")
    return tf.batch_to_space(y, [rate, rate], crops)


def _native_forward_space_to_batch_gradient(x, kernel, rate, padding):
    """TF's dilated convolution forward; its gradient in the space-to-batch formulation."""

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            paddings, crops = _space_to_batch_geometry(x, kernel.shape, rate, padding)
            blocks = tf.space_to_batch_nd(x, [rate, rate], paddings)
            # The adjoint of batch_to_space's crop is space_to_batch's zero padding.
            dy_blocks = tf.space_to_batch_nd(dy, [rate, rate], crops)
            d_kernel = tf.raw_ops.Conv2DBackpropFilter(
                input=blocks, filter_sizes=tf.shape(kernel), out_backprop=dy_blocks,
                strides=[1, 1, 1, 1], padding="VALID")
            d_blocks = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(blocks), filter=kernel, out_backprop=dy_blocks,
                strides=[1, 1, 1, 1], padding="VALID")
            return tf.batch_to_space(d_blocks, [rate, rate], paddings), d_kernel

        return tf.nn.conv2d(x, kernel, 1, padding, dilations=rate), grad

    return conv(x, kernel)


def native_dilated_gradients(dtype=tf.float32):
    """Whether TensorFlow has gradient kernels for dilated convolutions of `dtype` here.

    GPUs have them; TensorFlow's CPU kernels only with oneDNN on, and for float32 and bfloat16
    only (none has float16). Where TensorFlow does not say whether oneDNN is on, a tiny dilated
    gradient is tried (a missing kernel logs a warning).
    """
    return _native_dilated_gradients(tf.as_dtype(dtype).name)


@functools.cache
def _native_dilated_gradients(dtype):
    if tf.config.list_physical_devices("GPU"):
        return True
    if dtype == "float16":
        return False
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return _dilated_gradients_run()
    return bool(_pywrap_util_port.IsMklEnabled())


def _dilated_gradients_run():
    """Whether TensorFlow computes a tiny dilated convolution's gradients on the default device."""
    dilated = dict(strides=[1, 1, 1, 1], padding="SAME", dilations=[1, 2, 2, 1])
    with tf.init_scope():
        x = tf.zeros([1, 5, 5, 1])
        kernel = tf.zeros([3, 3, 1, 1])
        try:
            tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=[3, 3, 1, 1], out_backprop=x,
                                            **dilated).numpy()
            tf.raw_ops.Conv2DBackpropInput(input_sizes=[1, 5, 5, 1], filter=kernel, out_backprop=x,
                                           **dilated).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
            return False
    return True


def dilated_conv_formulation():
    """The formulation `INPAINTING_DILATED_CONV` selects ("auto" where it is unset)."""
    formulation = os.environ.get(DILATED_CONV_VARIABLE, "auto")
    if formulation not in DILATED_CONV_FORMULATIONS:
        raise ValueError(f"{DILATED_CONV_VARIABLE} must be one of {DILATED_CONV_FORMULATIONS}, "
                         f"got {formulation!r}; unset it to let the project choose")
    return formulation


def dilated_conv2d(x, kernel, rate, padding, formulation=None):
    """A stride-1 convolution with dilation `rate` that trains on every backend.

    Args:
        x: [B, H, W, C] input.
        kernel: [kh, kw, C, F] kernel of `x`'s dtype.
        rate: the dilation, an int > 1.
        padding: "SAME" or "VALID", as TF's convolution.
        formulation: "auto" (TF's kernel forward; its gradient too where TF has one, else the
            space-to-batch formulation's), "native" or "space_to_batch"; None reads
            `INPAINTING_DILATED_CONV`.
    """
    formulation = formulation or dilated_conv_formulation()
    if formulation == "space_to_batch":
        return space_to_batch_conv2d(x, kernel, rate, padding)
    if formulation == "native" or native_dilated_gradients(x.dtype):
        return tf.nn.conv2d(x, kernel, 1, padding, dilations=rate)
    return _native_forward_space_to_batch_gradient(x, kernel, rate, padding)


@keras.saving.register_keras_serializable(package="inpainting")
class Conv(keras.layers.Layer):
    """A 2D convolution with bias, a choice of padding, and an activation.

    This is DeepFill's `gen_conv` (v1: convolution + ELU) and, with a 5x5 kernel, stride 2 and
    leaky ReLU, its critic convolution. With `gated=True` it is DeepFill v2's gated convolution:
    the `filters` outputs are split into two halves along channels and the layer returns
    `activation(first) * sigmoid(second)`, so it has `filters // 2` output channels (the original
    halves the width this way); without an activation the gate is skipped, as in the original's
    output layers. `padding="same"` is TF's SAME, which pads asymmetrically
    (less on the top/left) for stride 2 on even sizes, exactly like the original. "reflect" and
    "symmetric" mirror-pad `dilation_rate * (kernel_size - 1) / 2` pixels on every side and then
    convolve VALID, as the v1 paper describes.

    Args:
        filters: number of output channels.
        kernel_size: square kernel size.
        strides: stride (1 or 2 in DeepFill).
        dilation_rate: dilation (atrous rate).
        padding: "same", "reflect" or "symmetric".
        activation: "elu", "relu", "leaky_relu" (slope 0.2) or None.
        gated: gate the activated first half of the outputs with the sigmoid of the second.

    Example:
        >>> conv = Conv(32, 5, name="conv1")
        >>> conv(tf.zeros([1, 64, 64, 5])).shape
        TensorShape([1, 64, 64, 32])
        >>> Conv(48, 5, gated=True)(tf.zeros([1, 64, 64, 5])).shape
        TensorShape([1, 64, 64, 24])

    References: Yu et al., "Generative Image Inpainting with Contextual Attention", CVPR 2018;
    Yu et al., "Free-Form Image Inpainting with Gated Convolution", ICCV 2019.
    """

    def __init__(self, filters, kernel_size, strides=1, dilation_rate=1, padding="same",
                 activation="elu", gated=False, **kwargs):
        super().__init__(**kwargs)
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
        if strides > 1 and dilation_rate > 1:
            raise ValueError("strides > 1 together with dilation_rate > 1 is not supported")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.dilation_rate = dilation_rate
        self.padding = padding
        self.activation = activation
        self.gated = gated
        if self.is_gated and filters % 2:
            raise ValueError(f"a gated convolution needs an even number of filters, got {filters}")

    @property
    def is_gated(self):
        """Whether the gate applies (it is skipped for a layer without activation)."""
        return self.gated and self.activation is not None

    def build(self, input_shape):
        in_channels = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, self.kernel_size, in_channels, self.filters),
            initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def effective_kernel(self):
        """The kernel the convolution uses (subclasses normalise it)."""
        return self.kernel

    def call(self, x):
        x = pad_for_conv(x, self.kernel_size, self.dilation_rate, self.padding)
        return self.convolve(x, "SAME" if self.padding == "same" else "VALID")

    def convolve(self, x, padding="VALID"):
        """The layer without its own padding: convolution (TF `padding`), bias, activation, gate.

        With "VALID", `x` is an input the caller has already padded, such as a strip of a large
        image with its neighbouring rows (`inpainting.inference.streaming`).
        """
        kernel = tf.cast(self.effective_kernel(), x.dtype)
        if self.dilation_rate > 1:
            y = dilated_conv2d(x, kernel, self.dilation_rate, padding)
        else:
            y = tf.nn.conv2d(x, kernel, strides=self.strides, padding=padding)
        y = tf.nn.bias_add(y, tf.cast(self.bias, y.dtype))
        activation = ACTIVATIONS[self.activation]
        if activation is None:
            return y
        if self.is_gated:
            features, gate = tf.split(y, 2, axis=-1)
            return activation(features) * tf.sigmoid(gate)
        return activation(y)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        s = self.strides
        h = None if h is None else -(-h // s)
        w = None if w is None else -(-w // s)
        return (b, h, w, self.filters // 2 if self.is_gated else self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                      dilation_rate=self.dilation_rate, padding=self.padding,
                      activation=self.activation, gated=self.gated)
        return config


@keras.saving.register_keras_serializable(package="inpainting")
class UpConv(keras.layers.Layer):
    """DeepFill's `gen_deconv`: x2 nearest-neighbour upsampling, then a 3x3 `Conv`.

    Args:
        filters: number of output channels.
        padding: "same", "reflect" or "symmetric".
        activation: activation of the convolution (ELU in v1).
        gated: a gated convolution (v2), whose output has `filters // 2` channels.

    Example:
        >>> UpConv(64, name="conv13_upsample")(tf.zeros([1, 16, 16, 128])).shape
        TensorShape([1, 32, 32, 64])
    """

    def __init__(self, filters, padding="same", activation="elu", gated=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.padding = padding
        self.activation = activation
        self.gated = gated
        self.conv = Conv(filters, 3, padding=padding, activation=activation, gated=gated,
                         name=f"{self.name}_conv")

    def build(self, input_shape):
        b, h, w, c = input_shape
        self.conv.build((b, None if h is None else 2 * h, None if w is None else 2 * w, c))

    def call(self, x):
        return self.conv(upsample_nearest(x, 2))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return self.conv.compute_output_shape((b, None if h is None else 2 * h,
                                               None if w is None else 2 * w, c))

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, padding=self.padding, activation=self.activation,
                      gated=self.gated)
        return config
