"""The DeepFill coarse-to-fine generator, v1 and v2.

Stage 1 (coarse) is an encoder / dilated-convolution / decoder network. Its output is pasted into
the hole and refined by stage 2, whose two branches (dilated convolutions, and contextual attention)
are merged by a decoder. Layer names are those of the original checkpoints (`conv1`,
`xconv1`, `pmconv1`, `allconv11`, ...), so importing them is a table (`inpainting.checkpoints.tf1`).

v1 and v2 share the layout and the layer table. v2 differs in four places: every convolution
with an activation is gated (and outputs half its filters), the outputs go through tanh instead
of being clipped, stage 2 sees only the 3-channel pasted image (v1 adds the ones and mask
channels), and the attention flow is enlarged bilinearly. A guided v2 model takes a sketch (edge
map) of the hole as a 4th input channel of stage 1.

The network is wired together in one place, `forward`, which leaves how each stage (an ordered
run of layers, `Generator.stages`) and the attention are computed to a stage runner:
`StageRunner` computes them on whole tensors, in one graph (`Generator.call`);
`inpainting.inference.streaming.StreamedGenerator` in strips and tiles, for very large images.
"""

import keras
import tensorflow as tf

from inpainting.config import ModelConfig
from inpainting.model.attention import ContextualAttention
from inpainting.model.layers import Conv, UpConv, resize_nearest

# The generator halves its input three times: inputs are padded to a multiple of this many pixels.
GRID = 8

# (name, filters as a multiple of cnum, kernel, stride, dilation); "up" marks a x2 UpConv.
# Filters of None mean 3 output channels with no activation.
STAGE1 = (
    ("conv1", 1, 5, 1, 1), ("conv2_downsample", 2, 3, 2, 1), ("conv3", 2, 3, 1, 1),
    ("conv4_downsample", 4, 3, 2, 1), ("conv5", 4, 3, 1, 1), ("conv6", 4, 3, 1, 1),
    ("conv7_atrous", 4, 3, 1, 2), ("conv8_atrous", 4, 3, 1, 4), ("conv9_atrous", 4, 3, 1, 8),
    ("conv10_atrous", 4, 3, 1, 16), ("conv11", 4, 3, 1, 1), ("conv12", 4, 3, 1, 1),
    ("conv13_upsample", 2, "up"), ("conv14", 2, 3, 1, 1), ("conv15_upsample", 1, "up"),
    ("conv16", 0.5, 3, 1, 1), ("conv17", None, 3, 1, 1),
)
STAGE2_CONV = (
    ("xconv1", 1, 5, 1, 1), ("xconv2_downsample", 1, 3, 2, 1), ("xconv3", 2, 3, 1, 1),
    ("xconv4_downsample", 2, 3, 2, 1), ("xconv5", 4, 3, 1, 1), ("xconv6", 4, 3, 1, 1),
    ("xconv7_atrous", 4, 3, 1, 2), ("xconv8_atrous", 4, 3, 1, 4), ("xconv9_atrous", 4, 3, 1, 8),
    ("xconv10_atrous", 4, 3, 1, 16),
)
STAGE2_ATTENTION_IN = (
    ("pmconv1", 1, 5, 1, 1), ("pmconv2_downsample", 1, 3, 2, 1), ("pmconv3", 2, 3, 1, 1),
    ("pmconv4_downsample", 4, 3, 2, 1), ("pmconv5", 4, 3, 1, 1), ("pmconv6", 4, 3, 1, 1, "relu"),
)
STAGE2_ATTENTION_OUT = (("pmconv9", 4, 3, 1, 1), ("pmconv10", 4, 3, 1, 1))
STAGE2_MERGE = (
    ("allconv11", 4, 3, 1, 1), ("allconv12", 4, 3, 1, 1), ("allconv13_upsample", 2, "up"),
    ("allconv14", 2, 3, 1, 1), ("allconv15_upsample", 1, "up"), ("allconv16", 0.5, 3, 1, 1),
    ("allconv17", None, 3, 1, 1),
)
# The convolutions that see the RGB input and those that produce RGB output.
INPUT_LAYERS = ("conv1", "xconv1", "pmconv1")
OUTPUT_LAYERS = ("conv17", "allconv17")


def _make_layers(model, spec, cnum, padding, gated):
    """Creates the layers of `spec` as attributes of `model` and returns their names in order.

    Each layer is its own attribute (not an element of a list) because `tf.train.Checkpoint`
    does not follow Keras 3's tracked lists; it also makes checkpoint keys read `.../conv1/...`.
    """
    names = []
    for name, width, *rest in spec:
        filters = 3 if width is None else int(width * cnum)
        if rest == ["up"]:
            layer = UpConv(filters, padding=padding, gated=gated, name=name)
        else:
            kernel, stride, dilation, *activation = rest
            activation = None if width is None else (activation[0] if activation else "elu")
            layer = Conv(filters, kernel, stride, dilation, padding, activation, gated, name=name)
        setattr(model, name, layer)
        names.append(name)
    return tuple(names)


@keras.saving.register_keras_serializable(package="inpainting")
class Generator(keras.Model):
    """DeepFill generator: coarse network, paste, refinement with contextual attention.

    Args:
        config: a `ModelConfig` (or its dict), which fixes the architecture (v1 or v2, guided).
        attention: contextual-attention implementation, "matmul" (default) or "patches".
        flow_dtype: float type of the flow colouring, "float64" (exact) or "float32".
        attention_memory_mb: a memory budget for contextual attention's score matrix: larger
            inputs compute it in blocks, with the same result up to rounding (memory linear in the
            image area).
            None: always in one piece.

    Call arguments:
        inputs: `[image, mask]`, or `[image, mask, sketch]` for a guided model: image RGB float32
            [B, H, W, 3] in [-1, 1] (the hole is masked out inside), mask float32 [B, H, W, 1] or
            [1, H, W, 1], 1 = hole, sketch float32 [B, H, W, 1] in {0, 1}, the edges to follow in
            the hole (only its hole part is used). H and W must be multiples of 8.

    Returns:
        A dict: `coarse` and `refined` [B, H, W, 3], the raw stage outputs in [-1, 1] (not pasted);
        `flow` [B, H/4, W/4, 3] in [-1, 1], the colour-coded attention offsets; `offsets` int32
        [B, H/8, W/8, 2], the (dy, dx) each position copied from.

    Example:
        >>> gen = Generator(ModelConfig(cnum=8))
        >>> out = gen([tf.zeros([1, 64, 64, 3]), tf.zeros([1, 64, 64, 1])])
        >>> out["refined"].shape, out["flow"].shape
        (TensorShape([1, 64, 64, 3]), TensorShape([1, 16, 16, 3]))

    References: Yu et al., "Generative Image Inpainting with Contextual Attention", CVPR 2018;
    Yu et al., "Free-Form Image Inpainting with Gated Convolution", ICCV 2019.
    """

    def __init__(self, config=None, attention="matmul", flow_dtype="float64", attention_memory_mb=None,
                 **kwargs):
        kwargs.setdefault("name", "inpaint_net")
        super().__init__(**kwargs)
        self.config = ModelConfig.coerce(config)
        self.attention_implementation = attention
        self.flow_dtype = flow_dtype
        self.attention_memory_mb = attention_memory_mb
        cnum, padding = self.config.cnum, self.config.padding
        self.v2 = self.config.version == "v2"
        self._stages = {key: _make_layers(self, spec, cnum, padding, self.v2) for key, spec in (
            ("stage1", STAGE1), ("conv_branch", STAGE2_CONV), ("attention_in", STAGE2_ATTENTION_IN),
            ("attention_out", STAGE2_ATTENTION_OUT), ("merge", STAGE2_MERGE))}
        self.contextual_attention = ContextualAttention(
            implementation=attention, flow_upsample="bilinear" if self.v2 else "nearest",
            flow_dtype=flow_dtype, memory_mb=attention_memory_mb,
            name="contextual_attention", dtype="float32")

    def build(self, input_shape=None):
        # Building runs the network once on a small input; every layer infers its own shapes.
        inputs = [tf.zeros([1, 32, 32, 3]), tf.zeros([1, 32, 32, 1])]
        self.call(inputs + [tf.zeros([1, 32, 32, 1])] * self.config.guided)
        self.built = True

    @property
    def stages(self):
        """The parts of the network, in the order `forward` runs them on one graph.

        Returns:
            A dict {stage name: its layers in order}: "stage1" (the coarse network),
            "conv_branch" and "attention_in" (stage 2's two branches, both on the pasted image),
            "attention_out" (after the contextual attention) and "merge" (both branches to RGB).
        """
        return {stage: tuple(getattr(self, name) for name in names) for stage, names in self._stages.items()}

    def conv_layers(self):
        """All convolutions by their original names, in network order."""
        return {name: getattr(self, name) for names in self._stages.values() for name in names}

    def run_stage(self, stage, x):
        """Applies the layers of one part ("stage1", "conv_branch", ...) in order."""
        for name in self._stages[stage]:
            x = getattr(self, name)(x)
        return x

    def call(self, inputs, training=False):
        return forward(self, StageRunner(self), inputs)

    def get_config(self):
        config = super().get_config()
        config.update(config=self.config.to_dict(), attention=self.attention_implementation,
                      flow_dtype=self.flow_dtype, attention_memory_mb=self.attention_memory_mb)
        return config


class StageRunner:
    """How `forward` runs the generator's stages: here each on whole tensors, in one graph.

    This is the runner of `Generator.call`. `inpainting.inference.streaming.StreamedGenerator` is another:
    it computes each stage in strips of rows and the attention in tiles.

    Args:
        generator: the `Generator` whose stages are run.

    Attributes:
        attention_first: whether stage 2's attention branch runs before its convolution branch
            (the result is the same). False here, which is the order the layers are built in.
    """

    attention_first = False

    def __init__(self, generator):
        self.generator = generator

    def concat(self, tensors):
        """The channel concatenation of [B, H, W, C] `tensors`, as `run` takes it."""
        return tf.concat(tensors, axis=-1)

    def run(self, stage, x):
        """The layers of `generator.stages[stage]` applied in order.

        Args:
            stage: a stage name ("stage1", "conv_branch", ...).
            x: a [B, H, W, C] tensor, or what `concat` returned.

        Returns:
            The last layer's output.
        """
        return self.generator.run_stage(stage, x)

    def attend(self, features, mask):
        """The generator's contextual attention of `features` with themselves.

        Under a mixed-precision policy the attention runs in float32 all the same.

        Args:
            features: [B, h, w, C], the output of the "attention_in" stage.
            mask: [B or 1, H, W, 1], the image's mask (1 = hole); the attention sees it resized
                (nearest) to the features' size.

        Returns:
            The `ContextualAttention` layer's dict: `output` [B, h, w, C] (in the features' dtype),
            `offsets`, `flow`.
        """
        dtype = features.dtype
        small = tf.shape(features)[1:3]
        features = tf.cast(features, tf.float32)
        attention = self.generator.contextual_attention(
            [features, features, tf.cast(resize_nearest(mask, small), tf.float32)])
        return dict(attention, output=tf.cast(attention["output"], dtype))


def forward(generator, runner, inputs):
    """The generator's network on `inputs`, each stage run by `runner`.

    All of the network that is not a stage's layers is here: the masked image, the ones, mask
    and sketch channels, stage 1, the paste of its output into the hole, stage 2's input (v1 adds
    the ones and mask channels to the pasted image), its two branches, tanh (v2) or clipping of
    both stages' outputs, and the merge. Whole images may pass through it (the streamed runner's),
    so it lets go of each one as soon as it is no longer needed.

    Args:
        generator: a `Generator`.
        runner: how the stages are run: a `StageRunner` (`Generator.call`) or an object with the
            same methods and attribute (`inpainting.inference.streaming.StreamedGenerator`).
        inputs: as `Generator.call` takes them.

    Returns:
        As `Generator.call`.
    """
    guided, v2 = generator.config.guided, generator.v2
    if len(inputs) != 2 + guided:
        raise ValueError(f"a {'guided ' * guided}{generator.config.version} generator takes "
                         f"[image, mask{', sketch' * guided}], got {len(inputs)} inputs")

    def output(x):
        return tf.tanh(x) if v2 else tf.clip_by_value(x, -1.0, 1.0)

    image, mask = inputs[:2]
    # Under a mixed-precision policy the convolutions run in 16 bits; attention stays float32.
    image = tf.cast(image, generator.compute_dtype)
    mask = tf.cast(mask, image.dtype)
    _check_spatial(image, mask)
    masked = image * (1.0 - mask)
    ones = tf.ones_like(image[..., :1])
    channels = [masked, ones, ones * mask]
    if guided:
        channels.insert(1, tf.cast(inputs[2], image.dtype) * mask)
    del image
    coarse = output(runner.run("stage1", runner.concat(channels)))
    del channels

    pasted = coarse * mask + masked * (1.0 - mask)
    del masked
    # v2's stage 2 sees the pasted image only; v1's also the ones and mask channels.
    x = pasted if v2 else runner.concat([pasted, ones, ones * mask])
    del pasted

    if runner.attention_first:
        attended, attention = _attention_branch(runner, x, mask)
        hallucinated = runner.run("conv_branch", x)
    else:
        hallucinated = runner.run("conv_branch", x)
        attended, attention = _attention_branch(runner, x, mask)
    del x
    refined = output(runner.run("merge", runner.concat([hallucinated, attended])))
    return {"coarse": coarse, "refined": refined, "flow": attention["flow"],
            "offsets": attention["offsets"]}


def _attention_branch(runner, x, mask):
    """Stage 2's attention branch of `forward`: (its output, the attention's offsets and flow)."""
    attention = runner.attend(runner.run("attention_in", x), mask)
    return runner.run("attention_out", attention.pop("output")), attention


def _check_spatial(image, mask):
    for a, b in zip(image.shape[1:3], mask.shape[1:3]):
        if a is not None and a % GRID:
            raise ValueError(f"image height and width must be multiples of {GRID}, got {image.shape[1:3]} "
                             "(pad the image, as inpainting.inference.inpainter does)")
        if a is not None and b is not None and a != b:
            raise ValueError(f"mask size {mask.shape[1:3]} does not match image size {image.shape[1:3]}")
    if image.shape[-1] is not None and image.shape[-1] != 3:
        raise ValueError(f"image must have 3 channels (RGB), got shape {image.shape}")
