"""Import of the original DeepFill TF1 checkpoints (the released Places2, CelebA-HQ, ImageNet models).

The original networks were trained on BGR images. The loaded models take and return RGB: the
input channels of the first convolution of each stage (and of each critic) and the output
channels of the last convolution of each stage are permuted, so outputs equal the original's
with the colour channels reversed.

The variables are read with `inpainting.checkpoints.reading`; this module is the table from the
original scopes to this package's layers. `inpainting.checkpoints.convert` writes the result as
a checkpoint directory of this package.
"""

from inpainting.checkpoints.reading import DAMAGED_ERRORS, damaged_error, resolve_prefix
from inpainting.config import VERSIONS, ModelConfig
from inpainting.errors import CheckpointError

GENERATOR_SCOPE = "inpaint_net"
CRITIC_SCOPE = "discriminator"


def read_variables(path):
    """All variables of a TF1 checkpoint as {name: numpy array}, optimizer slots excluded."""
    import tensorflow as tf

    prefix = resolve_prefix(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as err:  # the reader raises several error types for corrupt files
        raise CheckpointError(f"{prefix}: cannot read the checkpoint ({str(err).splitlines()[0]})") from None
    names = reader.get_variable_to_shape_map()
    try:
        return {name: reader.get_tensor(name) for name in names
                if name.startswith((GENERATOR_SCOPE + "/", CRITIC_SCOPE + "/"))
                and "/Adam" not in name}
    except DAMAGED_ERRORS as err:
        raise damaged_error(prefix, err) from None


def detect_version(variables, path="checkpoint"):
    """"v1" or "v2" from the generator's shapes; raises CheckpointError if there is no generator."""
    conv1 = variables.get(f"{GENERATOR_SCOPE}/conv1/kernel")
    xconv1 = variables.get(f"{GENERATOR_SCOPE}/xconv1/kernel")
    if conv1 is None or xconv1 is None:
        raise CheckpointError(f"{path} holds no DeepFill generator (no {GENERATOR_SCOPE}/conv1/kernel "
                              f"and {GENERATOR_SCOPE}/xconv1/kernel)")
    # v2's stage 2 takes the 3-channel pasted image; v1's takes 5 channels.
    return "v2" if xconv1.shape[2] == 3 else "v1"


def check_version(variables, version, path):
    """Raises CheckpointError unless `variables` hold a generator of `version` that this project loads.

    `version=None` accepts whichever loadable version is found. Returns the version found.
    """
    found = detect_version(variables, path)
    if found == (version or found) and found in VERSIONS:
        return found
    what = (f"{path} is a DeepFill {found} checkpoint (inpaint_net/xconv1/kernel has shape "
            f"{list(variables[f'{GENERATOR_SCOPE}/xconv1/kernel'].shape)})")
    if found in VERSIONS and version is not None:
        raise CheckpointError(f"{what}, not {version}; pass {{parameter}}={found}", parameter="version")
    raise CheckpointError(f"{what}; this release of inpainting loads only {', '.join(VERSIONS)}")


def check_guided(variables, guided, path):
    """Raises CheckpointError if `guided` (True/False) disagrees with the checkpoint; None accepts both."""
    found = tuple(variables[f"{GENERATOR_SCOPE}/conv1/kernel"].shape)[2] == 6
    if guided is not None and bool(guided) != found:
        kind = "a guided (sketch)" if found else "an unguided"
        raise CheckpointError(f"{path} holds {kind} generator (inpaint_net/conv1/kernel takes "
                              f"{6 if found else 5} channels); pass {{parameter}}={found}", parameter="guided")


def _generator_key(name, part):
    if name.endswith("_upsample"):
        return f"{GENERATOR_SCOPE}/{name}/{name}_conv/{part}"
    return f"{GENERATOR_SCOPE}/{name}/{part}"


def _take(variables, key, shape, path):
    if key not in variables:
        raise CheckpointError(f"{path} has no variable {key}")
    value = variables[key]
    if tuple(value.shape) != tuple(shape):
        raise CheckpointError(f"{path}: {key} has shape {list(value.shape)}, expected {list(shape)} "
                              "for this network")
    return value


def _assign(layer, kernel, bias):
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)


def _square_size(features, channels, key, path):
    side = int(round((features / channels) ** 0.5))
    if side * side * channels != features:
        raise CheckpointError(f"{path}: {key} does not fit a square critic input")
    return 16 * side


def generator_config(variables, padding="same", path="checkpoint"):
    """The `ModelConfig` of the generator stored in `variables`."""
    conv1 = variables[f"{GENERATOR_SCOPE}/conv1/kernel"]
    cnum = int(conv1.shape[-1])
    if detect_version(variables, path) == "v2":
        # A guided model's stage 1 takes [image, sketch, ones, mask]: 6 channels instead of 5.
        return ModelConfig(version="v2", cnum=cnum, padding=padding, guided=conv1.shape[2] == 6)
    local_fc = variables.get(f"{CRITIC_SCOPE}/dout_local_fc/kernel")
    global_fc = variables.get(f"{CRITIC_SCOPE}/dout_global_fc/kernel")
    sizes = {}
    if local_fc is not None and global_fc is not None:
        local = _square_size(local_fc.shape[0], 512, "dout_local_fc/kernel", path)
        whole = _square_size(global_fc.shape[0], 256, "dout_global_fc/kernel", path)
        sizes = {"local_size": (local, local), "image_size": (whole, whole)}
    return ModelConfig(version="v1", cnum=cnum, padding=padding, **sizes)


def assign_generator(generator, variables, path="checkpoint"):
    """Copies the original weights into a built `Generator`, converting BGR to RGB."""
    from inpainting.model.generator import INPUT_LAYERS, OUTPUT_LAYERS

    for name, layer in generator.conv_layers().items():
        conv = layer.conv if hasattr(layer, "conv") else layer
        kernel = _take(variables, _generator_key(name, "kernel"), conv.kernel.shape, path)
        bias = _take(variables, _generator_key(name, "bias"), conv.bias.shape, path)
        if name in INPUT_LAYERS:
            kernel = kernel[:, :, [2, 1, 0] + list(range(3, kernel.shape[2]))]
        if name in OUTPUT_LAYERS:
            kernel, bias = kernel[..., ::-1], bias[::-1]
        _assign(conv, kernel, bias)


def assign_critics(critics, variables, path="checkpoint"):
    """Copies the original critic weights into built `Critics`, converting BGR to RGB."""
    for critic, branch in ((critics.local, "local"), (critics.global_, "global")):
        for i, conv in enumerate(critic.convs):
            scope = f"{CRITIC_SCOPE}/discriminator_{branch}/conv{i + 1}"
            kernel = _take(variables, f"{scope}/kernel", conv.kernel.shape, path)
            if i == 0:
                kernel = kernel[:, :, ::-1, :]
            _assign(conv, kernel, _take(variables, f"{scope}/bias", conv.bias.shape, path))
        head = f"{CRITIC_SCOPE}/dout_{branch}_fc"
        _assign(critic.head, _take(variables, f"{head}/kernel", critic.head.kernel.shape, path),
                _take(variables, f"{head}/bias", critic.head.bias.shape, path))


def load_official_generator(path, version="v1", padding="same", attention="matmul",
                            flow_dtype="float64", guided=None):
    """Builds a `Generator` with the weights of an original DeepFill checkpoint.

    Args:
        path: an original TF1 checkpoint folder (with `checkpoint` or `checkpoint.txt`, `*.index`,
            `*.data-*`, optionally `*.meta` and optimizer slots) or a checkpoint prefix.
        version: "v1" or "v2" (a guided v2 checkpoint is recognised by its first convolution).
        padding: padding of the rebuilt network; "same" is what the released models used.
        attention: contextual-attention implementation, "matmul" or "patches".
        flow_dtype: "float64" or "float32" flow colouring.
        guided: v2: True or False to require a sketch-guided model or not; None accepts either.

    Returns:
        A built `Generator` taking and returning RGB.

    Raises:
        CheckpointError: the checkpoint is missing, unreadable, of another version or shape.
    """
    variables = read_variables(path)
    check_version(variables, version, path)
    check_guided(variables, guided, path)
    return build_generator(variables, path, padding, attention, flow_dtype)


def build_generator(variables, path="checkpoint", padding="same", attention="matmul",
                    flow_dtype="float64", attention_memory_mb=None):
    """A `Generator` with the weights in `variables` (from `read_variables`)."""
    from inpainting.model.generator import Generator

    generator = Generator(generator_config(variables, padding, path), attention=attention,
                          flow_dtype=flow_dtype, attention_memory_mb=attention_memory_mb)
    generator.build()
    assign_generator(generator, variables, path)
    return generator


SN_SCOPE = f"{CRITIC_SCOPE}/sn_patch_gan"


def has_critics(variables):
    """Whether an original checkpoint's `variables` hold the critics (v1 WGAN pair or v2 SN-PatchGAN)."""
    return (f"{CRITIC_SCOPE}/dout_local_fc/kernel" in variables
            or f"{SN_SCOPE}/conv1/kernel" in variables)


def assign_sn_patch_gan(critic, variables, path="checkpoint"):
    """Copies the original SN-PatchGAN weights and power-iteration vectors, converting BGR to RGB."""
    for i, conv in enumerate(critic.convs):
        scope = f"{SN_SCOPE}/conv{i + 1}"
        kernel = _take(variables, f"{scope}/kernel", conv.kernel.shape, path)
        if i == 0:
            kernel = kernel[:, :, [2, 1, 0] + list(range(3, kernel.shape[2])), :]
        _assign(conv, kernel, _take(variables, f"{scope}/bias", conv.bias.shape, path))
        conv.u.assign(_take(variables, f"{scope}/kernel_sn/u", conv.u.shape, path))


def build_critics(variables, path="checkpoint"):
    """The critics (v1 `Critics` or v2 `SNPatchGAN`) with the weights in `variables`."""
    from inpainting.model.critics import make_critics

    if not has_critics(variables):
        raise CheckpointError(f"{path} holds no critics (no {CRITIC_SCOPE}/dout_local_fc/kernel or "
                              f"{SN_SCOPE}/conv1/kernel)")
    config = generator_config(variables, path=path)
    critics = make_critics(config)
    critics.build()
    if config.version == "v2":
        assign_sn_patch_gan(critics, variables, path)
    else:
        assign_critics(critics, variables, path)
    return critics


def load_official_critics(path, version="v1", guided=None):
    """Builds the critics with the weights of an original DeepFill checkpoint.

    Args:
        path: an original TF1 checkpoint folder or prefix (see `load_official_generator`).
        version: "v1" (the WGAN-GP `Critics`) or "v2" (the `SNPatchGAN`, with its stored `u`).
        guided: as for `load_official_generator`.

    Returns:
        Built critics taking RGB.

    Raises:
        CheckpointError: the checkpoint is missing, unreadable, of another version, or has no critics.
    """
    variables = read_variables(path)
    check_version(variables, version, path)
    check_guided(variables, guided, path)
    return build_critics(variables, path)
