"""DeepFill generative image inpainting (v1, CVPR 2018; v2, ICCV 2019) in TensorFlow 2 / Keras 3.

    import inpainting
    generator = inpainting.load_official_generator("release_places2_256")  # original TF1 checkpoint
    out = generator([image, mask])  # RGB in [-1, 1], mask 1 = hole -> coarse, refined, flow, offsets

TensorFlow is imported on first use of a name below, so `inpainting.imageio` stays light.
"""

import importlib

_EXPORTS = {
    "ModelConfig": "inpainting.config",
    "Generator": "inpainting.model.generator",
    "Critics": "inpainting.model.critics",
    "SNPatchGAN": "inpainting.model.critics",
    "ContextualAttention": "inpainting.model.attention",
    "load_official_generator": "inpainting.checkpoints.tf1",
    "load_official_critics": "inpainting.checkpoints.tf1",
    "load_generator": "inpainting.checkpoints.store",
    "Inpainter": "inpainting.inference.inpainter",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'inpainting' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
