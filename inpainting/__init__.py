"""DeepFill generative image inpainting (v1, CVPR 2018; v2, ICCV 2019) in TensorFlow 2 / Keras 3.

    import inpainting
    generator = inpainting.load_official_generator("release_places2_256")  # original TF1 checkpoint
    out = generator([image, mask])  # RGB in [-1, 1], mask 1 = hole -> coarse, refined, flow, offsets

TensorFlow is imported on first use of a name below, so `inpainting.imageio` stays light.
"""

import importlib

_EXPORTS = {
    "ModelConfig": "inpainting.config",
    "Generator": "inpainting.generator",
    "Critics": "inpainting.critics",
    "SNPatchGAN": "inpainting.critics",
    "ContextualAttention": "inpainting.attention",
    "load_official_generator": "inpainting.tf1",
    "load_official_critics": "inpainting.tf1",
    "load_generator": "inpainting.checkpoints",
    "Inpainter": "inpainting.inference",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'inpainting' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
