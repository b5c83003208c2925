"""The frozen model configuration saved beside every checkpoint this project writes.

Every tool rebuilds the same network from a checkpoint directory alone by reading
`model_config.json` from it (see `inpainting.checkpoints`).
"""

import dataclasses
import json
import os

from inpainting.errors import ConfigError

CONFIG_FILE = "model_config.json"
VERSIONS = ("v1",)
PADDINGS = ("same", "reflect", "symmetric")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Describes a DeepFill network completely enough to rebuild it.

    Attributes:
        version: network family, "v1" (CVPR 2018, contextual attention).
        cnum: base width; the first convolution has `cnum` filters. 32 for the released v1 models.
        padding: "same" (zero padding, what the released checkpoints used), or "reflect" /
            "symmetric" (mirror padding, as the v1 paper describes).
        image_size: (height, width) of training images, which is the global critic's input size.
        local_size: (height, width) of the hole box, which is the local critic's input size.
    """

    version: str = "v1"
    cnum: int = 32
    padding: str = "same"
    image_size: tuple = (256, 256)
    local_size: tuple = (128, 128)

    def __post_init__(self):
        # Lists come back from JSON; keep the dataclass hashable and comparable.
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "local_size", tuple(int(v) for v in self.local_size))
        if self.version not in VERSIONS:
            raise ConfigError(f"version must be one of {', '.join(VERSIONS)}, got {self.version!r}")
        if self.padding not in PADDINGS:
            raise ConfigError(f"padding must be one of {', '.join(PADDINGS)}, got {self.padding!r}")
        if not isinstance(self.cnum, int) or self.cnum < 2 or self.cnum % 2:
            raise ConfigError(f"cnum must be an even integer >= 2, got {self.cnum!r}")
        for name in ("image_size", "local_size"):
            size = getattr(self, name)
            if len(size) != 2 or min(size) < 16 or any(v % 16 for v in size):
                raise ConfigError(f"{name} must be (height, width), multiples of 16, got {size}")
        if any(l > i for l, i in zip(self.local_size, self.image_size)):
            raise ConfigError(f"local_size {self.local_size} is larger than image_size {self.image_size}")

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
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, CONFIG_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, directory):
        """Reads `model_config.json` from `directory`."""
        path = os.path.join(directory, CONFIG_FILE)
        if not os.path.isfile(path):
            raise ConfigError(f"{directory} has no {CONFIG_FILE}; it is not a checkpoint directory of this "
                              "project (convert an original checkpoint with `python -m inpainting.tf1`)")
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read {path}: {err}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path} must hold a JSON object")
        return cls.from_dict(values)
