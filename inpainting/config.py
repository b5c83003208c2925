"""The frozen model configuration saved beside every checkpoint this project writes.

Every tool rebuilds the same network from a checkpoint directory alone by reading
`model_config.json` from it (see `inpainting.checkpoints.store`).
"""

import dataclasses
import json
import numbers
import os

from inpainting.errors import ConfigError, mention
from inpainting.files import write_json

CONFIG_FILE = "model_config.json"
VERSIONS = ("v1", "v2")
PADDINGS = ("same", "reflect", "symmetric")
# The formulations of contextual attention (`inpainting.model.attention`): the batched matrix
# multiply, and the reference one on extracted patches.
ATTENTIONS = ("matmul", "patches")
# The largest height x width an exported SavedModel accepts by default (export.py --max_pixels):
# contextual attention at 1024x1024 needs about 6 GB in one piece.
DEFAULT_MAX_PIXELS = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Describes a DeepFill network completely enough to rebuild it.

    Attributes:
        version: network family, "v1" (CVPR 2018, contextual attention) or "v2" (ICCV 2019, gated
            convolutions, SN-PatchGAN critic).
        cnum: base width; the first convolution has `cnum` filters. 32 for the released v1 models,
            48 for v2 (whose gated convolutions output half their filters).
        padding: "same" (zero padding, what the released checkpoints used), or "reflect" /
            "symmetric" (mirror padding, as the v1 paper describes).
        image_size: (height, width) of training images, which is the global critic's input size.
        local_size: (height, width) of the hole box, which is the local critic's input size
            (v1; v2 has no local critic).
        guided: v2 only: stage 1 also takes a sketch (edge map) of the hole as a 4th channel.
    """

    version: str = "v1"
    cnum: int = 32
    padding: str = "same"
    image_size: tuple = (256, 256)
    local_size: tuple = (128, 128)
    guided: bool = False

    def __post_init__(self):
        # Lists come back from JSON; keep the dataclass hashable and comparable.
        for name in ("image_size", "local_size"):
            value = getattr(self, name)
            if isinstance(value, str) or not hasattr(value, "__len__") or len(value) != 2 \
                    or not all(is_int(v) for v in value):
                raise ConfigError(f"{{parameter}} must be (height, width), two whole numbers that are "
                                  f"multiples of 16, got {value!r}", parameter=name)
            object.__setattr__(self, name, tuple(int(v) for v in value))
        if not isinstance(self.version, str) or self.version not in VERSIONS:
            raise ConfigError(f"{{parameter}} must be one of {', '.join(VERSIONS)}, got {self.version!r}",
                              parameter="version")
        if not isinstance(self.padding, str) or self.padding not in PADDINGS:
            raise ConfigError(f"{{parameter}} must be one of {', '.join(PADDINGS)}, got {self.padding!r}",
                              parameter="padding")
        if not is_int(self.cnum) or self.cnum < 2 or self.cnum % 2:
            raise ConfigError(f"{{parameter}} must be an even integer >= 2, got {self.cnum!r}",
                              parameter="cnum")
        if self.version == "v2" and self.cnum % 4:
            raise ConfigError(f"v2's gated convolutions halve cnum // 2 filters: {{parameter}} must be a "
                              f"multiple of 4, got {self.cnum}", parameter="cnum")
        if not isinstance(self.guided, bool):
            raise ConfigError(f"{{parameter}} must be true or false, got {self.guided!r}",
                              parameter="guided")
        if self.guided and self.version != "v2":
            raise ConfigError(f"{{parameter}} (sketch input) exists only for {mention('version')} v2",
                              parameter="guided")
        for name in ("image_size", "local_size"):
            size = getattr(self, name)
            if min(size) < 16 or any(v % 16 for v in size):
                raise ConfigError(f"{{parameter}} must be (height, width), multiples of 16, got {size}",
                                  parameter=name)
        if any(l > i for l, i in zip(self.local_size, self.image_size)):
            raise ConfigError(f"{{parameter}} {self.local_size} is larger than {mention('image_size')} "
                              f"{self.image_size}", parameter="local_size")

    @classmethod
    def coerce(cls, value):
        """A `ModelConfig` from a `ModelConfig`, its dict (as in Keras configs), or None (defaults)."""
        if value is None:
            return cls()
        return cls.from_dict(value) if isinstance(value, dict) else value

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; known keys are {sorted(known)}")
        return cls(**values)

    def save(self, directory):
        """Writes `model_config.json` into `directory` (created if missing)."""
        write_json(os.path.join(directory, CONFIG_FILE), self.to_dict())

    @classmethod
    def load(cls, directory):
        """Reads `model_config.json` from `directory`; every field is checked by type and value.

        Raises:
            ConfigError: the file is missing, unreadable, or a field is wrong (the message names
                the file and the field).
        """
        path = os.path.join(directory, CONFIG_FILE)
        if not os.path.isfile(path):
            raise ConfigError(f"{directory} has no {CONFIG_FILE}; it is not a checkpoint directory of this "
                              "project (convert an original checkpoint with `python -m inpainting.checkpoints.convert`)")
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read {path}: {err}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path} must hold a JSON object")
        try:
            return cls.from_dict(values)
        except ConfigError as err:  # named as the file's field, not as a flag
            raise ConfigError(f"{path}: {err}; correct it (the file of a checkpoint's folder "
                              "describes the network its weights belong to) or use the folder the "
                              "checkpoint came from") from None


TRAIN_CONFIG_FILE = "train_config.json"
STRATEGIES = ("auto", "mirrored", "one_device", "multi_worker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
PREPROCESSING = ("crop", "resize")


def is_int(value):
    """Whether `value` is an integer: a Python or NumPy one, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def parse_size(value, name):
    """(height, width) from "256", "256x384", a number or a pair; ConfigError naming parameter `name`."""
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
    elif isinstance(value, int):
        parts = [value]
    else:
        parts = list(value)
    try:
        size = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 0:
        raise ConfigError(f"{{parameter}} must be a size like 256 or 256x384 (height x width), got "
                          f"{value!r}", parameter=name)
    return size


def parse_range(value, name):
    """(low, high) from "12,40" or a pair of integers; ConfigError naming parameter `name`."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        pair = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2:
        raise ConfigError(f"{{parameter}} must be two whole numbers MIN,MAX like 12,40, got {value!r}",
                          parameter=name)
    return pair


# Fields whose default depends on the version: the released models' values. A field left at None
# takes its version's value when the config is created.
VERSION_DEFAULTS = {
    "v1": {"cnum": 32, "critic_steps": 5, "beta2": 0.9, "coarse_weight": 1.2, "ae_weight": 1.2,
           "gan_weight": 0.001, "free_form_masks": False},
    "v2": {"cnum": 48, "critic_steps": 1, "beta2": 0.999, "coarse_weight": 1.0, "ae_weight": 1.0,
           "gan_weight": 1.0, "free_form_masks": True},
}
# v1's loss terms that v2 does not have: with version v2 they must keep their defaults.
V1_ONLY = ("l1_weight", "global_gan_weight", "gradient_penalty", "discount_gamma")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; one field per flag of `train.py` (see `inpainting.training.flags`).

    It is validated when created (a `ConfigError` names the field, which `train.py` prints as
    its flag) and written into `model_dir` as `train_config.json`. Fields that default to None
    take the value of their `version` in `VERSION_DEFAULTS` (those of the released models).
    """

    model_dir: str = "runs/inpainting"
    dataset: str = "samples"
    validation_dataset: str = ""
    data_dir: str = ""
    download: bool = False
    preprocess: str = "crop"
    flip: bool = True
    mask_dir: str = ""
    version: str = "v1"
    guided: bool = False
    cnum: int = None
    padding: str = "same"
    image_size: tuple = (256, 256)
    box_size: tuple = (128, 128)
    max_delta: tuple = (32, 32)
    margins: tuple = (0, 0)
    free_form_masks: bool = None
    stroke_width: tuple = (12, 40)
    batch_size: int = 16
    critic_steps: int = None
    learning_rate: float = 1e-4
    beta1: float = 0.5
    beta2: float = None
    adam_epsilon: float = 1e-8
    coarse_weight: float = None
    l1_weight: float = 1.2
    ae_weight: float = None
    gan_weight: float = None
    global_gan_weight: float = 1.0
    gradient_penalty: float = 10.0
    discount_gamma: float = 0.9
    ema_decay: float = 0.0
    max_steps: int = 1_000_000
    max_minutes: float = 0.0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 5
    summary_every: int = 100
    validation_every: int = 1000
    validation_images: int = 4
    seed: int = 0
    deterministic: bool = False
    strategy: str = "auto"
    cpu_devices: int = 0
    worker_timeout: float = 300.0
    shard_input: bool = True
    precision: str = "float32"
    xla: bool = False
    attention: str = "matmul"
    init_checkpoint: str = ""
    log_every: int = 10

    def __post_init__(self):
        for name in ("image_size", "box_size", "max_delta", "margins"):
            object.__setattr__(self, name, parse_size(getattr(self, name), name))
        object.__setattr__(self, "stroke_width", parse_range(self.stroke_width, "stroke_width"))
        if self.free_form_masks is None and self.mask_dir:  # the mask folder gives the holes
            object.__setattr__(self, "free_form_masks", False)
        for name, value in VERSION_DEFAULTS.get(self.version, {}).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        self._check()

    def _check(self):
        def fail(field, message):
            raise ConfigError("{parameter}: " + message, parameter=field)

        if not self.model_dir:
            fail("model_dir", "is empty; give the directory where checkpoints and logs go")
        for name, choices in (("preprocess", PREPROCESSING), ("strategy", STRATEGIES),
                              ("precision", PRECISIONS), ("version", VERSIONS), ("padding", PADDINGS),
                              ("attention", ATTENTIONS)):
            if getattr(self, name) not in choices:
                fail(name, f"must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.free_form_masks and self.mask_dir:
            fail("free_form_masks", f"cannot be combined with {mention('mask_dir')}, whose masks are "
                 "the holes; leave one out")
        low, high = self.stroke_width
        if not 1 <= low < high:
            fail("stroke_width", f"must be MIN,MAX with 1 <= MIN < MAX (pixels; a stroke's width is a "
                 f"whole number in [MIN, MAX)), got {low},{high}")
        default_widths = TrainConfig.__dataclass_fields__["stroke_width"].default
        if (low, high) != default_widths and not self.free_form_masks:
            fail("stroke_width", f"sets the width of free-form brush strokes, which this run does not "
                 f"draw; add {mention('free_form_masks')} or leave it out")
        if self.version == "v2":
            for name in V1_ONLY:
                if getattr(self, name) != TrainConfig.__dataclass_fields__[name].default:
                    fail(name, "is a term of the v1 loss; DeepFill v2 has no such term (leave it out "
                         f"with {mention('version')}=v2)")
        for name in ("batch_size", "critic_steps", "max_steps", "checkpoint_every", "keep_checkpoints",
                     "summary_every", "validation_every", "validation_images", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                fail(name, f"must be a positive integer, got {getattr(self, name)!r}")
        for name in ("learning_rate", "gradient_penalty", "adam_epsilon"):
            if not getattr(self, name) > 0:
                fail(name, f"must be positive, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                fail(name, f"must be in [0, 1), got {getattr(self, name)}")
        for name in ("coarse_weight", "l1_weight", "ae_weight", "gan_weight", "global_gan_weight"):
            if getattr(self, name) < 0:
                fail(name, f"must not be negative, got {getattr(self, name)}")
        if self.max_minutes < 0:
            fail("max_minutes", f"must be 0 (no time limit) or positive, got {self.max_minutes}")
        if not 0 < self.discount_gamma <= 1:
            fail("discount_gamma", f"must be in (0, 1], got {self.discount_gamma}")
        if not 0 <= self.ema_decay < 1:
            fail("ema_decay", f"must be in [0, 1) (0: no average of the generator's weights; e.g. "
                 f"0.999), got {self.ema_decay}")
        if not self.worker_timeout > 0:
            fail("worker_timeout", f"must be positive (seconds), got {self.worker_timeout}")
        if self.cpu_devices < 0:
            fail("cpu_devices", f"must be 0 (leave the CPU as one device) or more, got {self.cpu_devices}")
        box, image = self.box_size, self.image_size
        if any(b + 2 * m > i for b, m, i in zip(box, self.margins, image)):
            fail("box_size", f"{box[0]}x{box[1]} plus {mention('margins')} {self.margins[0]}x"
                 f"{self.margins[1]} on each side does not fit in {mention('image_size')} "
                 f"{image[0]}x{image[1]}")
        if any(d > b for d, b in zip(self.max_delta, box)):
            fail("max_delta", f"{self.max_delta} is larger than {mention('box_size')} {box}")
        try:
            self.model_config()
        except ConfigError as err:  # named by the fields of this config
            fields = {"local_size": "box_size"}
            template = err.template.replace(mention("local_size"), mention("box_size"))
            raise ConfigError(template, parameter=fields.get(err.parameter, err.parameter)) from None

    def model_config(self):
        """The `ModelConfig` of the network this run trains."""
        return ModelConfig(version=self.version, cnum=self.cnum, padding=self.padding,
                           image_size=self.image_size, local_size=self.box_size, guided=self.guided)

    @property
    def batches_per_step(self):
        """Batches one training step consumes: one per critic update and one for the generator."""
        return self.critic_steps + 1

    def to_dict(self):
        return dataclasses.asdict(self)

    def save(self, directory):
        """Writes `train_config.json` into `directory`."""
        write_json(os.path.join(directory, TRAIN_CONFIG_FILE), self.to_dict())
