"""The DeepFill critics. v1: a local one on the hole box and a global one on the whole image.

Both are WGAN critics (no output activation): four 5x5 stride-2 convolutions with leaky ReLU
(slope 0.2) and TF 'SAME' padding, flattened in (height, width, channel) order, then a dense
layer to one score.

v2: one SN-PatchGAN critic on the image and its mask (and sketch), six spectral-normalised
convolutions whose output map is a score per patch, trained with the hinge loss.
"""

import keras
import tensorflow as tf

from inpainting.config import ModelConfig
from inpainting.model.layers import Conv

LOCAL_WIDTHS = (1, 2, 4, 8)   # x64 channels: 64, 128, 256, 512
GLOBAL_WIDTHS = (1, 2, 4, 4)  # 64, 128, 256, 256
CRITIC_CNUM = 64


@keras.saving.register_keras_serializable(package="inpainting")
class Critic(keras.layers.Layer):
    """One WGAN critic: 4 strided convolutions and a dense score.

    Args:
        widths: filters of the 4 convolutions, as multiples of `cnum`.
        input_size: (height, width) of the input, which fixes the dense layer's size.
        cnum: base width.
        head_name: name of the dense layer (`dout_local_fc` / `dout_global_fc` in the original).

    Example:
        >>> Critic((1, 2, 4, 8), (128, 128), head_name="dout_local_fc")(tf.zeros([2, 128, 128, 3])).shape
        TensorShape([2, 1])
    """

    def __init__(self, widths, input_size, cnum=CRITIC_CNUM, head_name="dout_fc", **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(widths)
        self.input_size = tuple(input_size)
        self.cnum = cnum
        self.head_name = head_name
        # Attributes, not a list: tf.train.Checkpoint does not follow Keras 3's tracked lists.
        for i, w in enumerate(self.widths):
            setattr(self, f"conv{i + 1}", Conv(w * cnum, 5, 2, activation="leaky_relu", name=f"conv{i + 1}"))
        self.head = keras.layers.Dense(1, name=head_name)

    @property
    def convs(self):
        return [getattr(self, f"conv{i + 1}") for i in range(len(self.widths))]

    def build(self, input_shape):
        h, w = self.input_size
        shape = (input_shape[0], h, w, input_shape[-1])
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self.head.build((input_shape[0], shape[1] * shape[2] * shape[3]))

    def call(self, x):
        if x.shape[1:3].is_fully_defined() and tuple(x.shape[1:3]) != self.input_size:
            raise ValueError(f"{self.name} expects inputs of size {self.input_size}, got {tuple(x.shape[1:3])}")
        for conv in self.convs:
            x = conv(x)
        return self.head(tf.reshape(x, [tf.shape(x)[0], -1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        config = super().get_config()
        config.update(widths=self.widths, input_size=self.input_size, cnum=self.cnum,
                      head_name=self.head_name)
        return config


@keras.saving.register_keras_serializable(package="inpainting")
class Critics(keras.Model):
    """The pair of v1 WGAN-GP critics.

    Args:
        config: a `ModelConfig`; `local_size` and `image_size` fix the input sizes.

    Call arguments:
        inputs: `[local_patch, whole_image]`, RGB in [-1, 1], [B, *local_size, 3] and
            [B, *image_size, 3].

    Returns:
        A dict with `local` and `global`, each [B, 1].

    Reference: Yu et al., CVPR 2018, section 3 (global and local WGAN-GP).
    """

    def __init__(self, config=None, **kwargs):
        kwargs.setdefault("name", "discriminator")
        super().__init__(**kwargs)
        self.config = ModelConfig.coerce(config)
        self.local = Critic(LOCAL_WIDTHS, self.config.local_size, head_name="dout_local_fc",
                            name="discriminator_local")
        self.global_ = Critic(GLOBAL_WIDTHS, self.config.image_size, head_name="dout_global_fc",
                              name="discriminator_global")

    def build(self, input_shape=None):
        self.local.build((None, *self.config.local_size, 3))
        self.global_.build((None, *self.config.image_size, 3))
        self.built = True

    def call(self, inputs, training=False):
        local_patch, whole = inputs
        return {"local": self.local(local_patch), "global": self.global_(whole)}

    def get_config(self):
        config = super().get_config()
        config.update(config=self.config.to_dict())
        return config


SN_PATCH_WIDTHS = (1, 2, 4, 4, 4, 4)  # x64 channels: 64, 128, 256, 256, 256, 256
SN_EPSILON = 1e-12


def _l2_normalize(x):
    return x / (tf.norm(x) + SN_EPSILON)


@keras.saving.register_keras_serializable(package="inpainting")
class SpectralConv(Conv):
    """A `Conv` whose kernel is divided by its spectral norm, estimated by power iteration.

    As in the original SN-PatchGAN, every call (training or not) runs one power iteration from
    the stored vector `u` [1, filters] and stores the new one: with the kernel reshaped to
    W [k*k*in, filters], `v = l2n(u W^T)`, `u' = l2n(v W)`, `sigma = v W u'^T`, and the
    convolution uses `W / sigma`; `l2n(x) = x / (||x|| + 1e-12)`. So two calls on the same input
    give different outputs while `u` converges. `u` is a non-trainable, checkpointed weight;
    `u'` and `v` are constants for the gradient (Miyato et al., 2018).

    Args: those of `Conv`.

    Reference: Miyato et al., "Spectral Normalization for Generative Adversarial Networks", ICLR 2018.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self.u = self.add_weight(name="u", shape=(1, self.filters), trainable=False,
                                 initializer=keras.initializers.TruncatedNormal(stddev=1.0),
                                 aggregation="only_first_replica")

    def normalized_kernel(self):
        """(W / sigma, u'): the kernel to use and the new power-iteration vector."""
        matrix = tf.reshape(self.kernel, [-1, self.filters])
        u = tf.cast(self.u, matrix.dtype)
        v = tf.stop_gradient(_l2_normalize(tf.matmul(u, matrix, transpose_b=True)))
        new_u = tf.stop_gradient(_l2_normalize(tf.matmul(v, matrix)))
        sigma = tf.matmul(tf.matmul(v, matrix), new_u, transpose_b=True)
        return self.kernel / sigma[0, 0], new_u

    def effective_kernel(self):
        kernel, new_u = self.normalized_kernel()
        self.u.assign(new_u)
        return kernel


@keras.saving.register_keras_serializable(package="inpainting")
class SNPatchGAN(keras.Model):
    """The DeepFill v2 critic: six spectral-normalised 5x5 stride-2 convolutions, a score per patch.

    Args:
        config: a `ModelConfig` (v2); a guided model's critic also sees the sketch.

    Call arguments:
        inputs: `[image, mask]` or, guided, `[image, mask, sketch]`: RGB in [-1, 1]
            [B, H, W, 3], the hole [B or 1, H, W, 1], the sketch [B, H, W, 1].

    Returns:
        A dict with `patches`: [B, (H/64) * (W/64) * 256], the flattened map of patch scores in
        (height, width, channel) order (4096 at 256x256).

    Reference: Yu et al., "Free-Form Image Inpainting with Gated Convolution", ICCV 2019.
    """

    def __init__(self, config=None, **kwargs):
        kwargs.setdefault("name", "discriminator")
        super().__init__(**kwargs)
        self.config = ModelConfig.coerce(config)
        for i, width in enumerate(SN_PATCH_WIDTHS):
            setattr(self, f"conv{i + 1}", SpectralConv(width * CRITIC_CNUM, 5, 2,
                                                       activation="leaky_relu", name=f"conv{i + 1}"))

    @property
    def convs(self):
        return [getattr(self, f"conv{i + 1}") for i in range(len(SN_PATCH_WIDTHS))]

    @property
    def input_channels(self):
        return 5 if self.config.guided else 4

    def build(self, input_shape=None):
        shape = (None, *self.config.image_size, self.input_channels)
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self.built = True

    def call(self, inputs, training=False):
        if len(inputs) != 2 + self.config.guided:
            raise ValueError(f"the {'guided ' * self.config.guided}v2 critic takes "
                             f"[image, mask{', sketch' * self.config.guided}], got {len(inputs)} inputs")
        image, mask = inputs[:2]
        mask = tf.broadcast_to(tf.cast(mask, image.dtype), tf.concat([tf.shape(image)[:3], [1]], 0))
        x = tf.concat([image, mask] + [tf.cast(s, image.dtype) for s in inputs[2:]], axis=-1)
        for conv in self.convs:
            x = conv(x)
        return {"patches": tf.reshape(x, [tf.shape(x)[0], -1])}

    def get_config(self):
        config = super().get_config()
        config.update(config=self.config.to_dict())
        return config


def make_critics(config):
    """The critics of a model config: `Critics` (v1) or `SNPatchGAN` (v2), not built."""
    config = ModelConfig.coerce(config)
    return SNPatchGAN(config) if config.version == "v2" else Critics(config)
