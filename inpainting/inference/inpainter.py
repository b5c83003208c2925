"""Inpainting of whole images of any size with a loaded generator.

The network needs height and width that are multiples of 8: images are mirror-padded at the bottom
and right, inpainted, and cropped back, so no pixel of the user's image is cropped away. The
padding is known content (mask 0) and the result outside the hole is the input itself.

Images of more than `STREAM_PIXELS` pixels (and every image with `attention="hole_only"`) run
through `streaming.StreamedGenerator`, layer by layer in strips and tiles, whose memory grows
linearly with the area; smaller ones run as one traced graph, which is faster for them. Both give
the same result up to float rounding.
"""

import os

import numpy as np
import tensorflow as tf

from inpainting import imageio
from inpainting.inference import masktools
from inpainting.inference.streaming import ATTENTION_MODES, StreamedGenerator
from inpainting.model.attention import SCORE_BYTES
from inpainting.model.generator import GRID

# Larger images are streamed (see the module docstring): from about 1.5 megapixels on, the
# graph's whole-image temporaries cost more memory than streaming saves time.
STREAM_PIXELS = 1536 * 1024
# Measured peak RSS of the streamed v1 model (cnum 32) per pixel, and the process around it.
STREAM_BYTES_PER_PIXEL = 200
STREAM_BASE_BYTES = 1 << 30


def attention_memory_bytes(height, width):
    """Rough peak memory of the unchunked contextual attention for an image of this size."""
    positions = -(-height // GRID) * -(-width // GRID)
    return positions * positions * SCORE_BYTES


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def memory_bytes(height, width, memory_mb=None, cnum=32):
    """Rough peak memory of inpainting one image of this size.

    Streamed images (more than `STREAM_PIXELS`) need memory linear in the area plus the attention
    budget `memory_mb`; smaller ones at most the unchunked attention's (or the budget).
    """
    if height * width > STREAM_PIXELS:
        per_pixel = STREAM_BYTES_PER_PIXEL * cnum / 32
        return int(STREAM_BASE_BYTES + per_pixel * height * width + (memory_mb or 1024) * 2 ** 20)
    need = attention_memory_bytes(height, width)
    return need if memory_mb is None else min(need, memory_mb * 2 ** 20)


def check_size(height, width, path="image", memory_mb=None, cnum=32):
    """Raises ImageError for an image that would not fit in this machine's memory.

    With a `memory_mb` budget the attention runs in blocks and needs at most that much.
    """
    need = memory_bytes(height, width, memory_mb, cnum)
    have = _physical_memory()
    if have is not None and need > 0.8 * have:
        raise imageio.ImageError(
            f"{path}: {width}x{height} is too large to inpaint at full size on this machine "
            f"(it needs about {need / 2**30:.0f} GiB, the machine has {have / 2**30:.0f} GiB); "
            "downscale it or inpaint crops around the holes ({parameter}=resize or {parameter}=crop)",
            parameter="hr")


class Inpainter:
    """Runs a generator on single images of any size; one traced graph serves every size.

    Args:
        generator: a built `Generator`.
        attention: "exact", or "hole_only": contextual attention matches only the part of the
            image near the hole (approximate, much faster on large images; see
            `inpainting.inference.streaming`).
        progress: optional callable(done, total, what), told the progress of streamed images
            (layers of each part of the network, and attention tiles).
        mask_grow: pixels the hole is grown by (a disc) before it is filled; 0 fills the mask.
        mask_feather: width in pixels of the band around the (grown) hole over which the fill is
            blended into the image; 0 pastes it with a hard edge (`masktools`).

    Example:
        >>> inpainter = Inpainter(store.load_generator("places2_v1"))
        >>> result = inpainter(rgb_uint8, mask)  # [H, W, 3] uint8 and [H, W] {0, 1}
        >>> result["filled"].shape, result["flow"].shape
        ((H, W, 3), (H, W, 3))
    """

    def __init__(self, generator, attention="exact", progress=None, mask_grow=0, mask_feather=0):
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
        self.mask_grow = masktools.parse_pixels(mask_grow, "mask_grow")
        self.mask_feather = masktools.parse_pixels(mask_feather, "mask_feather")
        self.generator = generator
        self.attention = attention
        self.guided = generator.config.guided
        self.streamed = StreamedGenerator(generator, generator.contextual_attention.memory_mb or 1024,
                                          attention, progress)
        specs = [tf.TensorSpec([1, None, None, 3], tf.float32)]
        specs += [tf.TensorSpec([1, None, None, 1], tf.float32)] * (2 if self.guided else 1)
        self._run = tf.function(self._forward, input_signature=specs)

    def _forward(self, *inputs):
        out = self.generator(list(inputs), training=False)
        return out["refined"], out["flow"]

    def check_size(self, height, width, path="image"):
        """Refuses images whose attention would not fit in this machine's memory."""
        check_size(height, width, path, self.generator.contextual_attention.memory_mb,
                   self.generator.config.cnum)

    def streams(self, height, width):
        """Whether an image of this size runs through the `StreamedGenerator`."""
        return self.attention == "hole_only" or height * width > STREAM_PIXELS

    def __call__(self, rgb, mask, path="image", sketch=None):
        """Inpaints one image.

        Args:
            rgb: uint8 [H, W, 3] RGB.
            mask: float32 [H, W] in {0, 1}, 1 = hole.
            path: how to name the image in an error.
            sketch: guided models: float32 [H, W] in {0, 1}, the lines the fill should follow
                (only the hole part counts); None draws no lines. Other models take none.

        Returns:
            A dict: `filled` float32 [H, W, 3] RGB in 0..255, the network's output everywhere;
            `mask`, the hole it filled (grown by `mask_grow`); `weight`, the weight of the fill
            around it (`masktools.feather_weight`), or None without `mask_feather` (paste the
            fill with `imageio.compose(image, filled, mask, weight)`); and `flow` uint8 [H, W, 3],
            the colour-coded attention offsets enlarged x4 to the image's size.
        """
        height, width = mask.shape
        self.check_size(height, width, path)
        mask, weight = masktools.prepare(mask, self.mask_grow, self.mask_feather, path)
        imageio.check_sketch(sketch, self.guided, path)
        image, _ = imageio.pad_to_multiple(rgb, GRID)
        image = image.astype(np.float32) / 127.5 - 1.0
        inputs = [image, imageio.pad_to_multiple(mask.astype(np.float32), GRID, mode="constant")[0]]
        if self.guided:
            lines = np.zeros_like(mask) if sketch is None else sketch
            inputs.append(imageio.pad_to_multiple(lines.astype(np.float32), GRID, mode="constant")[0])
        if self.streams(*image.shape[:2]):
            refined, flow = self.streamed(*inputs)
        else:
            inputs = [tf.constant(x[None] if i == 0 else x[None, :, :, None]) for i, x in enumerate(inputs)]
            refined, flow = (x.numpy()[0] for x in self._run(*inputs))
        filled = (refined + 1.0) * 127.5
        flow = np.rint((flow + 1.0) * 127.5).astype(np.uint8)
        flow = np.repeat(np.repeat(flow, 4, axis=0), 4, axis=1)
        return {"filled": imageio.crop_to(filled, (height, width)), "mask": mask, "weight": weight,
                "flow": imageio.crop_to(flow, (height, width))}


def inpaint_image(inpainter, image, mask, output_path, flow_path=None, overwrite=False, sketch=None):
    """Inpaints a loaded image and writes the result (and optionally the flow).

    Pixels outside the hole (grown and feathered as the inpainter's `mask_grow` and
    `mask_feather` say) are bit-identical to the input; gray, 16-bit and alpha are preserved.

    Args:
        inpainter: an `Inpainter` or a `highres.HighResInpainter`.
        image: an `imageio.LoadedImage`.
        mask: float32 [H, W] in {0, 1}, 1 = hole, from `imageio.read_mask`.
        output_path: where to write the result; the format follows the extension.
        flow_path: optional path for the colour-coded attention flow (PNG).
        overwrite: replace existing files.
        sketch: for guided models, float32 [H, W] in {0, 1} (from `imageio.read_mask`), or None.
    """
    result = inpainter(image.rgb, mask, image.path, sketch)
    composed = imageio.compose(image, result["filled"], result["mask"], result["weight"])
    imageio.write_image(output_path, composed, overwrite)
    if flow_path:
        imageio.write_image(flow_path, result["flow"][..., ::-1], overwrite)
