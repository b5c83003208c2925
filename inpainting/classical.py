"""Classical inpainting with OpenCV: the baselines a learned model is measured against.

`inpaint` runs `cv2.inpaint` (Telea's fast marching or Navier-Stokes) on an RGB image whose
hole's pixels are set to 0 and the 8-bit mask, so the evaluation tool and the trainer's
validation fill holes the same way.
"""

import cv2
import numpy as np

METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
DEFAULT_RADIUS = 3


def inpaint(rgb, mask, method, radius=DEFAULT_RADIUS):
    """Fills the hole of an image with OpenCV's classical inpainting.

    Args:
        rgb: uint8 [H, W, 3] RGB (other dtypes are cast to uint8); the hole's pixels are not
            read: they are set to 0 first.
        mask: [H, W] (or [H, W, 1]); pixels above 0.5 are filled.
        method: "telea" (cv2.INPAINT_TELEA) or "ns" (cv2.INPAINT_NS).
        radius: the neighbourhood radius in pixels (cv2.inpaint's inpaintRadius).

    Returns:
        float32 [H, W, 3] RGB in 0..255: OpenCV's result, the image outside the hole.

    Raises:
        ValueError: an unknown `method`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown baseline {method!r}; expected one of {', '.join(METHODS)}")
    hole = np.asarray(mask) > 0.5
    if hole.ndim == 3:
        hole = hole[:, :, 0]
    bgr = np.where(hole[:, :, None], np.uint8(0), np.asarray(rgb, np.uint8)[:, :, ::-1])
    holes = np.where(hole, 255, 0).astype(np.uint8)
    return cv2.inpaint(np.ascontiguousarray(bgr), holes, radius, METHODS[method])[:, :, ::-1] \
        .astype(np.float32)
