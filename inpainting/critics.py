"""The DeepFill v1 critics: a local one on the hole box and a global one on the whole image.

Both are WGAN critics (no output activation): four 5x5 stride-2 convolutions with leaky ReLU
(slope 0.2) and TF 'SAME' padding, flattened in (height, width, channel) order, then a dense
layer to one score.
"""

import keras
import tensorflow as tf

from inpainting.config import ModelConfig
from inpainting.layers import Conv

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
