"""Inpainting of large images: the whole image at a working size, or crops around the holes.

DeepFill was trained on 256x256 images with holes up to 128 pixels across, and its contextual
attention compares every position with every other, so its time grows with the square of the
image area (minutes from about 2048x2048 on, on a 2-core CPU). `HighResInpainter` has three modes:

native
    The whole image at full resolution (`inpainter.Inpainter` as it is; it streams large images).
resize
    The whole image at a working size whose long side is `work_size` (images that small already
    run natively), the fill enlarged into the holes. The image is downscaled with area
    averaging; the mask so that every working pixel that overlaps a hole pixel is a hole (area
    averaging mixes the hole's content, e.g. the object to remove, into those pixels). Before
    the fill is enlarged (bicubic, OpenCV's kernel) it is pasted into the downscaled image, so
    near the hole border it blends into the real surroundings rather than into the network's
    reconstruction of them. The fill has the detail of the working image only: at 8000x6000
    with a working size of 512 each working pixel stands for 15.6x15.6 pixels, so the fill is
    that much blurrier than its surroundings, however small the hole. Use it for large holes,
    which the network fills best at the scale it was trained at.
crop
    Crops around the holes at full resolution, for small holes in large images. Each connected
    hole (8-connected) gets its bounding box padded on every side by `max(margin, its width)`,
    the width being twice the largest distance from one of its pixels to the nearest pixel
    outside it (a 40x60 box: 40, a 5-pixel line of any length: 6): the attention copies
    from the crop's known pixels, and at least the hole's own width of context on every side
    keeps the hole within the proportions the network was trained on. Boxes are clipped to the
    image and overlapping boxes merged (repeatedly) into one crop, so the crops are disjoint and
    each holds whole holes only. A crop whose long side exceeds `work_size` is inpainted the
    way resize mode inpaints an image.

With `mask_grow` the hole is grown before any of this, and crops are found around the grown
hole; with `mask_feather` around the band the fill is blended over too, which then receives the
fill as well (`masktools`).

In resize and crop modes `filled` holds the fill at the hole pixels (and the feathered band) and
0 elsewhere: the
full-size float32 array is allocated zeroed, which the operating system maps lazily, so only
the pages around the holes take memory (an 8000x6000 fill would take 576 MB). `flow` is the
working image's flow enlarged (nearest pixel) in resize mode; in crop mode each crop's flow, and
white (the colour of a zero offset, see `flow.flow_to_color`) outside the crops. Flow colours
are normalised per inpainted piece (image or crop).
"""

import cv2
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from inpainting.config import is_int
from inpainting.inference import masktools

MODES = ("native", "resize", "crop")
DEFAULT_WORK_SIZE = 512
DEFAULT_MARGIN = 128
MIN_WORK_SIZE = 64
NO_FLOW = 255  # white in every channel: the flow colour of a zero offset
_TILE = 1024  # the fill is enlarged in tiles of at most this many pixels square
_CUBIC_A = -0.75  # OpenCV's bicubic kernel parameter


def working_size(height, width, work_size):
    """The size an image is inpainted at in resize mode.

    Returns:
        (height, width) scaled so the long side is `work_size`, each side rounded and at least
        1; the input size if its long side is at most `work_size`.
    """
    long_side = max(height, width)
    if long_side <= work_size:
        return height, width
    scale = work_size / long_side
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrink_mask(mask, size):
    """Downscales a {0, 1} mask so that no hole pixel is lost.

    Args:
        mask: float32 [H, W] in {0, 1}, 1 = hole (or lines, for a sketch).
        size: (height, width) to shrink to.

    Returns:
        bool [height, width]: True where the small pixel overlaps a hole pixel (area averaging
        above 0; OpenCV ignores overlaps below 1/1000 of a pixel).
    """
    small = cv2.resize(np.asarray(mask, np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return small > 0


def _cubic_weights(start, stop, size, small_size):
    """Bicubic weights of output rows `start:stop` when `small_size` rows are enlarged to `size`.

    The convention of cv2.resize with INTER_CUBIC: output row i samples the input at
    (i + 0.5) * small_size / size - 0.5 with Keys' kernel (a = -0.75), rows beyond the border
    repeating the border row.

    Returns:
        (weights [stop - start, hi - lo], lo, hi): the output rows are weights @ input[lo:hi].
    """
    position = (np.arange(start, stop) + 0.5) * (small_size / size) - 0.5
    base = np.floor(position)
    taps = np.arange(-1, 3)
    distance = np.abs((position - base)[:, None] - taps)
    a = _CUBIC_A
    near = ((a + 2) * distance - (a + 3)) * distance * distance + 1
    far = ((a * distance - 5 * a) * distance + 8 * a) * distance - 4 * a
    kernel = np.where(distance <= 1, near, np.where(distance < 2, far, 0.0))
    rows = np.clip(base.astype(np.int64)[:, None] + taps, 0, small_size - 1)
    lo, hi = int(rows.min()), int(rows.max()) + 1
    weights = np.zeros((len(position), hi - lo))
    np.add.at(weights, (np.arange(len(position))[:, None], rows - lo), kernel)
    return weights, lo, hi


def enlarge_into_holes(small, hole, out):
    """Enlarges an image bicubically to the size of `hole`, computing and writing hole pixels only.

    Equal to `cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)` clipped to 0..255 at the
    hole pixels, without the full-size image: the enlargement is computed tile by tile over the
    hole's bounding box in each tile.

    Args:
        small: float [h, w, C], h <= H and w <= W.
        hole: bool [H, W].
        out: [H, W, C] array (or view) whose hole pixels receive the result.
    """
    height, width = hole.shape
    for top in range(0, height, _TILE):
        for left in range(0, width, _TILE):
            tile = hole[top:top + _TILE, left:left + _TILE]
            rows, cols = np.flatnonzero(tile.any(axis=1)), np.flatnonzero(tile.any(axis=0))
            if rows.size == 0:
                continue
            y0, y1 = top + rows[0], top + rows[-1] + 1
            x0, x1 = left + cols[0], left + cols[-1] + 1
            wy, ylo, yhi = _cubic_weights(y0, y1, height, small.shape[0])
            wx, xlo, xhi = _cubic_weights(x0, x1, width, small.shape[1])
            part = np.tensordot(wy, small[ylo:yhi, xlo:xhi], axes=1)  # [y, small x, C]
            part = np.matmul(wx, part)  # [y, x, C]
            inside = hole[y0:y1, x0:x1]
            out[y0:y1, x0:x1][inside] = np.clip(part[inside], 0, 255)


def enlarge_nearest(small, out):
    """Enlarges an image into `out` by nearest pixel: each pixel takes the small pixel its centre
    falls in (exactly, in integers), computed in bands so no full-size temporary is made.

    Args:
        small: [h, w, C].
        out: [H, W, C] array (or view), H >= h and W >= w.
    """
    height, width = out.shape[:2]
    rows = (2 * np.arange(height) + 1) * small.shape[0] // (2 * height)
    cols = (2 * np.arange(width) + 1) * small.shape[1] // (2 * width)
    for top in range(0, height, _TILE):
        out[top:top + _TILE] = small[rows[top:top + _TILE]][:, cols]


def _hole_width(inside):
    """Twice the largest distance from a True pixel to the nearest False pixel (or the border)."""
    return 2 * float(ndimage.distance_transform_edt(np.pad(inside, 1)).max())


def _merge_overlapping(boxes):
    """Replaces overlapping boxes by their union until none overlap; boxes: int [n, 4]."""
    while len(boxes) > 1:
        top, left, bottom, right = boxes.T
        pairs = []
        for i in range(len(boxes) - 1):
            rest = slice(i + 1, None)
            hits = np.flatnonzero((top[rest] < bottom[i]) & (top[i] < bottom[rest])
                                  & (left[rest] < right[i]) & (left[i] < right[rest]))
            pairs += [(i, i + 1 + j) for j in hits]
        if not pairs:
            break
        edges = np.array(pairs).T
        graph = coo_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(len(boxes),) * 2)
        count, group = connected_components(graph, directed=False)
        merged = np.empty((count, 4), np.int64)
        merged[:, :2] = np.iinfo(np.int64).max
        merged[:, 2:] = np.iinfo(np.int64).min
        for column, reduce in ((0, np.minimum), (1, np.minimum), (2, np.maximum), (3, np.maximum)):
            reduce.at(merged[:, column], group, boxes[:, column])
        boxes = merged
    return boxes


def crop_boxes(hole, margin=DEFAULT_MARGIN):
    """The crops of crop mode: disjoint boxes around the holes with context (module docstring).

    Args:
        hole: bool [H, W], True = hole.
        margin: the least context, in pixels, on each side of a hole's bounding box.

    Returns:
        A list of (top, left, bottom, right) boxes (bottom and right exclusive) in reading order;
        every hole pixel lies in exactly one box. Empty if there is no hole.
    """
    height, width = hole.shape
    labels, _ = ndimage.label(hole, structure=np.ones((3, 3), bool))
    boxes = []
    for index, (rows, cols) in enumerate(ndimage.find_objects(labels), 1):
        pad = max(margin, int(np.ceil(_hole_width(labels[rows, cols] == index))))
        boxes.append((max(0, rows.start - pad), max(0, cols.start - pad),
                      min(height, rows.stop + pad), min(width, cols.stop + pad)))
    del labels
    if not boxes:
        return []
    boxes = _merge_overlapping(np.array(boxes, np.int64))
    boxes = boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]
    return [tuple(int(v) for v in box) for box in boxes]


class HighResInpainter:
    """Inpaints large images at a working size or in crops around the holes (module docstring).

    It is called like `inpainter.Inpainter`, so `inpainter.inpaint_image` takes it as it is.

    Args:
        inpainter: an `inpainter.Inpainter`.
        mode: "native" (the whole image at full size), "resize" (the whole image at a working
            size, the fill enlarged) or "crop" (crops around the holes at full size).
        work_size: resize: the working image's long side; crop: crops with a longer side are
            downscaled to it. At least `MIN_WORK_SIZE`.
        margin: crop: the least context, in pixels, around each hole's bounding box (0 or more;
            a hole gets at least its own width).
        progress: optional callable `progress(done, total, what)`, called after each piece (the
            image, or each crop) with a description such as "420x380 at x=1200, y=300".
        mask_grow, mask_feather: pixels the hole is grown by before it is filled, and the width
            of the band over which the fill is blended into the image (`masktools`); give them
            here, not to `inpainter`.

    Example:
        >>> inpainter = HighResInpainter(Inpainter(generator), mode="crop", margin=128)
        >>> result = inpainter(rgb_uint8, mask)  # e.g. 8000x6000 with small holes
        >>> imageio.compose(image, result["filled"], mask)
    """

    def __init__(self, inpainter, mode="native", work_size=DEFAULT_WORK_SIZE, margin=DEFAULT_MARGIN,
                 progress=None, mask_grow=0, mask_feather=0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not is_int(work_size) or work_size < MIN_WORK_SIZE:
            raise ValueError(f"work_size must be an integer of at least {MIN_WORK_SIZE}, got {work_size!r}")
        if not is_int(margin) or margin < 0:
            raise ValueError(f"margin must be an integer of 0 or more, got {margin!r}")
        if getattr(inpainter, "mask_grow", 0) or getattr(inpainter, "mask_feather", 0):
            raise ValueError("give mask_grow and mask_feather to the HighResInpainter, not to its inpainter")
        self.mask_grow = masktools.parse_pixels(mask_grow, "mask_grow")
        self.mask_feather = masktools.parse_pixels(mask_feather, "mask_feather")
        self.inpainter = inpainter
        self.mode = mode
        self.work_size = int(work_size)
        self.margin = int(margin)
        self.progress = progress

    def check_size(self, height, width, path="image"):
        """Refuses images whose largest inpainted piece would not fit in this machine's memory."""
        if self.mode == "native":
            self.inpainter.check_size(height, width, path)
        elif self.mode == "resize":
            self.inpainter.check_size(*working_size(height, width, self.work_size), path)
        else:
            self.inpainter.check_size(min(height, self.work_size), min(width, self.work_size), path)

    def __call__(self, rgb, mask, path="image", sketch=None):
        """Inpaints one image.

        Args:
            rgb: uint8 [H, W, 3] RGB.
            mask: float32 [H, W] in {0, 1}, 1 = hole.
            path: how to name the image in an error.
            sketch: guided models: float32 [H, W] in {0, 1}, the lines the fill should follow;
                None draws no lines.

        Returns:
            A dict: `filled` float32 [H, W, 3] RGB in 0..255 (native: the network's output
            everywhere; resize and crop: the fill at the hole pixels and the feathered band, 0
            elsewhere), `mask` and `weight` (the grown hole and the weight of the fill, or None
            without feathering: compose with `imageio.compose(image, filled, mask, weight)`),
            and `flow` uint8 [H, W, 3], the colour-coded attention offsets at the image's size.
        """
        height, width = mask.shape
        mask, weight = masktools.prepare(mask, self.mask_grow, self.mask_feather, path)
        if self.mode == "native":
            result = self.inpainter(rgb, mask, path, sketch)
            self._report(1, 1, _describe(0, 0, mask.shape, mask.shape))
            return {"filled": result["filled"], "mask": mask, "weight": weight, "flow": result["flow"]}
        self.check_size(height, width, path)
        reach = masktools.changed(mask, weight)  # the pixels that take the fill
        filled = np.zeros((height, width, 3), np.float32)  # lazily mapped: see the module docstring
        flow = np.full((height, width, 3), NO_FLOW, np.uint8)
        boxes = [(0, 0, height, width)] if self.mode == "resize" else crop_boxes(reach, self.margin)
        for done, (top, left, bottom, right) in enumerate(boxes, 1):
            region = (slice(top, bottom), slice(left, right))
            size = self._inpaint_region(rgb[region], mask[region], reach[region],
                                        None if sketch is None else sketch[region], path,
                                        filled[region], flow[region])
            self._report(done, len(boxes), _describe(top, left, (bottom - top, right - left), size))
        return {"filled": filled, "mask": mask, "weight": weight, "flow": flow}

    def _report(self, done, total, what):
        if self.progress is not None:
            self.progress(done, total, what)

    def _inpaint_region(self, rgb, mask, reach, sketch, path, filled, flow):
        """Inpaints one region (natively, or at the working size if larger) and writes its fill at
        the `reach` pixels (the hole and the feathered band) of `filled` and its flow into `flow`.
        Returns the size it ran at."""
        height, width = reach.shape
        size = working_size(height, width, self.work_size)
        if size == (height, width):
            result = self.inpainter(rgb, mask, path, sketch)
            filled[reach] = result["filled"][reach]
            flow[...] = result["flow"]
            return size
        small_rgb = cv2.resize(rgb, size[::-1], interpolation=cv2.INTER_AREA)
        small_hole = shrink_mask(mask, size)
        small_sketch = None if sketch is None else shrink_mask(sketch, size).astype(np.float32)
        result = self.inpainter(small_rgb, small_hole.astype(np.float32), path, small_sketch)
        composite = np.where(small_hole[..., None], result["filled"], small_rgb.astype(np.float32))
        enlarge_into_holes(composite, reach, filled)
        enlarge_nearest(result["flow"], flow)
        return size


def _describe(top, left, size, work):
    """A piece for progress reports: "WxH at x=X, y=Y", with the working size if it differs."""
    text = f"{size[1]}x{size[0]} at x={left}, y={top}"
    return text if tuple(work) == tuple(size) else f"{text}, inpainted at {work[1]}x{work[0]}"
