"""Growing the hole before it is filled and feathering the fill into the image after.

A mask drawn tight around an object leaves its outline or shadow behind, and a fill pasted with a
hard edge can meet the photo with a visible seam. Two settings, both 0 (off) by default:

mask_grow
    The hole is dilated by a disc of this radius in pixels: every pixel whose Euclidean distance
    to a hole pixel is at most `mask_grow` becomes hole, so the network fills it too.
mask_feather
    The fill is blended into the image over the pixels at distance 1 to `mask_feather` from the
    (grown) hole, with the weight `s(1 - d / (mask_feather + 1))` of the fill, `s(t) = t * t *
    (3 - 2 * t)` (smoothstep): 1 in the hole, falling smoothly with the distance `d`, 0 beyond
    the band. Pixels farther out stay identical to the input; in the band each pixel lies between
    the fill and the input.

Distances are computed in tiles around the holes, so on a large image with small holes only the
tiles near them take memory.
"""

import numpy as np
from scipy import ndimage

from inpainting.config import is_int
from inpainting.errors import ImageError, InpaintingError

PARAMETERS = ("mask_grow", "mask_feather")
_TILE = 1024  # distances are computed in tiles of this many pixels square (or twice the reach)


def parse_pixels(value, parameter):
    """A number of pixels from an integer or its decimal text (a flag, a query parameter).

    Raises:
        InpaintingError naming `parameter`: not a whole number, or negative.
    """
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if is_int(value) and value >= 0:
        return int(value)
    raise InpaintingError(f"{{parameter}} must be a whole number of pixels, 0 or more, got {value!r}",
                          parameter=parameter)


def check(mask_grow, mask_feather, size, path="image"):
    """Refuses settings that are not whole numbers of 0 or more, or larger than the image.

    Args:
        mask_grow, mask_feather: numbers of pixels.
        size: (height, width) of the image.
        path: how to name the image in an error.

    Raises:
        InpaintingError: not a whole number of 0 or more; ImageError: more than the image's long
            side. Both name the parameter.
    """
    for parameter, value in zip(PARAMETERS, (mask_grow, mask_feather)):
        value = parse_pixels(value, parameter)
        if value > max(size):
            raise ImageError(f"{path}: {{parameter}}={value} is larger than the image "
                             f"({size[1]}x{size[0]}); give at most {max(size)} pixels",
                             parameter=parameter)


def _distances(hole, reach):
    """Yields (tile, distance): the slices of a tile of `hole` and each of its pixels' distance to
    the nearest hole pixel, exact where it is at most `reach` and larger elsewhere. Tiles with no
    hole pixel within `reach` are left out."""
    height, width = hole.shape
    step = max(_TILE, 2 * reach)
    for top in range(0, height, step):
        for left in range(0, width, step):
            y0, x0 = max(0, top - reach), max(0, left - reach)
            near = hole[y0:top + step + reach, x0:left + step + reach]
            if not near.any():
                continue
            distance = ndimage.distance_transform_edt(~near)
            yield ((slice(top, top + step), slice(left, left + step)),
                   distance[top - y0:top - y0 + step, left - x0:left - x0 + step])


def grow(mask, pixels):
    """The hole dilated by a disc of radius `pixels` (module docstring).

    Args:
        mask: [H, W], values above 0.5 are holes.
        pixels: 0 or more.

    Returns:
        float32 [H, W] in {0, 1}, 1 = hole (`mask` itself for 0 pixels).
    """
    if pixels == 0:
        return np.asarray(mask, np.float32)
    hole = np.asarray(mask) > 0.5
    grown = np.zeros(hole.shape, np.float32)
    for tile, distance in _distances(hole, pixels):
        grown[tile] = distance <= pixels
    return grown


def feather_weight(mask, pixels):
    """The weight of the fill when it is blended into the image (module docstring).

    Args:
        mask: [H, W], values above 0.5 are holes (the grown hole).
        pixels: the width of the band, 1 or more.

    Returns:
        float32 [H, W]: 1 in the hole, in (0, 1) in the band, 0 beyond. Allocated zeroed, so only
        the tiles near holes take memory.
    """
    hole = np.asarray(mask) > 0.5
    weight = np.zeros(hole.shape, np.float32)
    for tile, distance in _distances(hole, pixels):
        t = np.clip(1 - distance / (pixels + 1), 0, 1)
        weight[tile] = np.where(distance <= pixels, t * t * (3 - 2 * t), 0)
    return weight


def prepare(mask, mask_grow=0, mask_feather=0, path="image"):
    """The hole to fill and the weight of the fill, for one image.

    Args:
        mask: float32 [H, W] in {0, 1}, 1 = hole, as the user gave it.
        mask_grow, mask_feather: numbers of pixels (module docstring).
        path: how to name the image in an error.

    Returns:
        (hole float32 [H, W] in {0, 1}: the grown hole; weight float32 [H, W] from
        `feather_weight`, or None without feathering: the fill replaces the hole exactly).

    Raises:
        InpaintingError or ImageError: settings `check` refuses.
    """
    check(mask_grow, mask_feather, mask.shape, path)
    hole = grow(mask, int(mask_grow))
    return hole, (feather_weight(hole, int(mask_feather)) if mask_feather else None)


def changed(hole, weight):
    """bool [H, W]: the pixels the fill reaches (the hole, and the feathered band)."""
    return np.asarray(hole) > 0.5 if weight is None else weight > 0
