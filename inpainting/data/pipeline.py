"""The training and validation batches: images from a source, cropped, with holes and edges.

`image_dataset` reads a source (`inpainting.data.sources`: file lists, folders, TFDS, the
built-in samples) into cropped or resized [H, W, 3] uint8 images; `training_batches` and
`validation_batches` give them holes (`inpainting.data.masks`) and, for guided models, edges
(`inpainting.data.edges`).

Holes and edges
    `training_batches` gives every batch one hole: a trimmed DeepFill v1 box, a
    mask from a folder, or (`free_form`, DeepFill v2) the box joined with brush
    strokes. With `edges` a batch also carries the Canny edge map of its images
    (`canny_edges`, OpenCV's Canny(gray, 100, 200) in TensorFlow ops), the input
    of guided (sketch) models.

Every step is a TensorFlow op inside `tf.data` (no Python per element), decoded
in parallel with deterministic order, and every random draw is stateless.
"""

import tensorflow as tf

from inpainting.config import PREPROCESSING
from inpainting.data import masks, sources
from inpainting.data.edges import canny_edges
from inpainting.errors import DataError


AUGMENT = 2
BATCH = 3
# Folded into seed 0 for the fixed stroke mask of validation (the same for every run).
VALIDATION_STROKES = 5


def _resize(image, size):
    """Bilinear, antialiased resize of uint8 pixels, rounded back to uint8."""
    resized = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


def _cover(image, size):
    """Scales an image smaller than `size` on a side up to cover it, keeping the aspect ratio."""
    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    target = tf.constant(size, tf.float64)
    scale = tf.reduce_max(target / shape)

    def scale_up():
        new = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), tf.constant(size))
        return _resize(image, new)

    return tf.cond(scale > 1.0, scale_up, lambda: image)


def preprocess_image(image, image_size, *, preprocess="crop", key=None, flip=False):
    """Crops or resizes a decoded image to `image_size`, with optional random choices.

    Args:
        image: uint8 [h, w, 3].
        image_size: (H, W).
        preprocess: "crop" (after scaling up an image that is smaller on a side) or
            "resize" (bilinear, antialiased, aspect ratio not kept).
        key: stateless RNG key for a random crop offset (uniform) and flip; None for
            the centre crop and no flip.
        flip: whether to flip horizontally with probability 1/2 (needs `key`).

    Returns:
        uint8 [H, W, 3].
    """
    height, width = image_size
    if preprocess == "resize":
        image = _resize(image, [height, width])
    else:
        image = _cover(image, (height, width))
        spare = tf.shape(image)[:2] - tf.constant([height, width])
        if key is None:
            offset = spare // 2
        else:
            offset = tf.stack([
                tf.random.stateless_uniform([], sources.stream_seed(key, 0, axis), minval=0,
                                            maxval=spare[axis] + 1, dtype=tf.int32)
                for axis in (0, 1)])
        image = tf.slice(image, tf.concat([offset, [0]], 0), [height, width, 3])
    if key is not None and flip:
        mirror = tf.random.stateless_uniform([], sources.stream_seed(key, 1)) < 0.5
        image = tf.cond(mirror, lambda: tf.reverse(image, [1]), lambda: image)
    return tf.ensure_shape(image, [height, width, 3])




def _check_size(image_size):
    height, width = masks.size_pair(image_size, "image_size")
    if min(height, width) < 1:
        raise DataError(f"image_size must be positive, got {(height, width)}")
    return height, width


def image_dataset(source, *, image_size, preprocess="crop", flip=True, seed=0, training=True,
                  data_dir=None, download=False, start_example=0, skipped_before=0,
                  shard=sources.WHOLE):
    """A stream of images from a source, cropped or resized to one size.

    Training: endless; each epoch visits every file once in an order drawn from
    (seed, epoch); position p is randomly cropped ("crop": uniform offset, after
    scaling up an image smaller than `image_size` on a side so it covers it,
    aspect ratio kept) or resized ("resize": bilinear, antialiased), then flipped
    horizontally with probability 1/2 when `flip`, both drawn from (seed, p).
    Otherwise: one pass in the source's order, centre crop (after the same
    scaling up) or resize, no flip. With a `shard` a training stream is one worker's
    part, cut before reading (`sources.Shard`): its positions, start and counts are
    its own, and its crops and flips those of the positions it holds.

    Decoding: png (8 and 16 bit), jpeg, bmp, webp; gray is replicated to RGB and
    alpha dropped. Unreadable files are skipped and counted (see the module
    docstring); positions count them, elements do not.

    Args:
        source: a `DataSource` or its text form (see `parse_dataset`).
        image_size: (H, W) of every image.
        preprocess: "crop" or "resize".
        flip: random horizontal flips (training only).
        seed: user seed (int).
        training: endless and random, or one deterministic pass.
        data_dir: TFDS data folder (None: TFDS's default).
        download: let TFDS download and prepare a missing dataset.
        start_example: first position of the stream; the stream from there is
            exactly what the uninterrupted stream yields from that position.
            Positions count unreadable files too, so with skipped files they run
            ahead of element indices (see `skipped_before`).
        skipped_before: the value the cumulative `skipped` count starts from.
        shard: the worker's `sources.Shard` of a training stream (default: the whole).

    Returns:
        `tf.data.Dataset` of {"image": uint8 [H, W, 3] RGB, "position": int64 scalar,
        "skipped": int64 scalar, the files skipped so far in this stream}.

    Raises:
        DataError: the source is malformed, missing, empty, not prepared (TFDS), or
            an argument is invalid.
    """
    height, width = _check_size(image_size)
    if preprocess not in PREPROCESSING:
        raise DataError(f"preprocess must be one of {', '.join(PREPROCESSING)}, got {preprocess!r}")
    if start_example < 0 or skipped_before < 0:
        raise DataError(f"start_example and skipped_before must be >= 0, got {start_example} "
                        f"and {skipped_before}")
    found = sources.source_items(source, seed=seed, start=start_example, training=training,
                                 data_dir=data_dir, download=download, shard=shard)

    def load(source_value, position):
        image = sources.decode_rgb(found.encoded(source_value))
        key = sources.stream_seed(found.key, AUGMENT, position) if training else None
        return preprocess_image(image, (height, width), preprocess=preprocess, key=key,
                                flip=flip and training)

    return sources.read_items(found.items, load, empty=tf.zeros([height, width, 3], tf.uint8),
                              label=found.label, num_items=found.size, start=found.first,
                              skipped_before=skipped_before, describe=found.describe,
                              span=found.span).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------ batches

def _stream(images, consumed=0, skipped_before=0):
    """The image stream of `images` after `consumed` images, `skipped_before` files skipped.

    `images` is a dataset of images (skipped by reading them) or a function of
    (start_example, skipped_before) returning one (started at the right position).
    """
    if isinstance(images, tf.data.Dataset):
        return images.skip(consumed) if consumed else images
    return images(start_example=consumed + skipped_before, skipped_before=skipped_before)


def _hole_options(mask_dir, free_form, strokes):
    """The stroke configuration to use (None without free_form); refuses mask_dir with it."""
    if not free_form:
        return None
    if mask_dir is not None:
        raise DataError(f"free_form brush strokes cannot be combined with mask_dir {mask_dir}: "
                        f"the holes come either from the mask folder or from boxes and strokes; "
                        f"drop one of the two")
    return masks.StrokeConfig.of(strokes)


def training_batches(images, *, batch_size, image_size, box_size, max_delta=(32, 32),
                     margins=(0, 0), seed=0, start_batch=0, skipped_before=0, mask_dir=None,
                     free_form=False, strokes=None, edges=False, shard=sources.WHOLE):
    """Training batches: images, one hole per batch, its box and gradient-penalty weights.

    As in DeepFill v1, every batch has one box and one mask repeated along the batch
    axis, so a distribution strategy can split every component along axis 0. The box
    comes from `masks.random_bbox` and the hole from `masks.bbox_to_mask` with a
    random trim; with `free_form` (DeepFill v2) the hole is the union of that
    trimmed box and a `masks.brush_stroke_mask`, while `bbox` stays the box. With
    `mask_dir`, batch k takes element k of `masks.mask_folder_dataset` and the box
    from `masks.mask_bbox`. Batch k's box, trim, strokes and alphas depend only on
    (seed, k), and the box, trim and alphas are the same with or without
    `free_form`.

    With a `shard` (worker k of N) a batch is that worker's part of the global batch
    k: batch_size / N images of its own image stream (which `images` must give),
    the hole and box of global batch k, and its part of the alphas.

    Args:
        images: the image stream: a function called as
            images(start_example=..., skipped_before=...), e.g.
            functools.partial(image_dataset, source, image_size=..., seed=...), or a
            dataset of {"image", "skipped", ...} (resuming it reads and drops the
            start_batch * B images before; `skipped_before` is then not needed).
        batch_size: B; the last incomplete batch is dropped.
        image_size: (H, W) of the images.
        box_size: (h, w) of the local critic's box.
        max_delta: maximum total trim of the box (see `masks.bbox_to_mask`).
        margins: distance of the box from the image edges.
        seed: user seed (int).
        start_batch: index of the first batch, to resume: a function's image
            stream starts at its item start_batch * B / N + skipped_before.
        skipped_before: the largest `skipped` of the last batch consumed before
            stopping (0 if no file was skipped): with it the resumed stream is
            exactly the uninterrupted one even when files were skipped.
        mask_dir: folder of mask images used instead of boxes.
        free_form: add DeepFill v2 brush strokes to the box hole (not with `mask_dir`).
        strokes: the strokes' `masks.StrokeConfig` (or a dict of its fields; None for
            the defaults); used only with `free_form`.
        edges: add "edge", the `canny_edges` of the images (unmasked), the input of
            guided (sketch) models.
        shard: this worker's `sources.Shard`; `batch_size` stays the global batch and
            must divide by its count.

    Returns:
        `tf.data.Dataset` of {"image": uint8 [B, H, W, 3], "mask": float32 [B, H, W, 1]
        (1 = hole), "bbox": int32 [B, 4] (top, left, height, width), "alpha_local":
        float32 [B, 1], "alpha_global": float32 [B, 1] (uniform in [0, 1)),
        "skipped": int64 [B], each example's cumulative count of skipped files}, plus
        "edge": float32 [B, H, W, 1] in {0, 1} with `edges`.

    Raises:
        DataError: a bad size or count, the box does not fit, a bad stroke
            configuration, or `free_form` together with `mask_dir`.
    """
    image_size, box_size, margins = masks.check_box(image_size, box_size, margins)
    if batch_size < 1 or start_batch < 0 or skipped_before < 0:
        raise DataError(f"batch_size must be >= 1 and start_batch, skipped_before >= 0, got "
                        f"{batch_size}, {start_batch}, {skipped_before}")
    if batch_size % shard.count:
        raise DataError(f"batch_size {batch_size} cannot be split evenly over {shard.count} workers")
    strokes = _hole_options(mask_dir, free_form, strokes)
    part = batch_size // shard.count
    stream = _stream(images, start_batch * part, skipped_before)
    parts = [stream.batch(part, drop_remainder=True),
             tf.data.Dataset.range(start_batch, sources.ENDLESS)]
    if mask_dir is not None:
        parts.append(masks.mask_folder_dataset(mask_dir, image_size, seed, start=start_batch))

    def assemble(batch, index, mask=None):
        key = sources.stream_seed(seed, BATCH, index)
        if mask is None:
            bbox = masks.random_bbox(sources.stream_seed(key, 0), image_size, box_size, margins)
            mask = masks.bbox_to_mask(bbox, image_size, max_delta, seed=sources.stream_seed(key, 1))
            if strokes is not None:
                mask = tf.maximum(mask, masks.brush_stroke_mask(
                    image_size, sources.stream_seed(key, 4), strokes))
        else:
            bbox = masks.mask_bbox(mask, box_size, image_size)
        own = slice(shard.index * part, (shard.index + 1) * part)
        out = {
            "image": batch["image"],
            "mask": tf.tile(mask[None], [part, 1, 1, 1]),
            "bbox": tf.tile(bbox[None], [part, 1]),
            "alpha_local": tf.random.stateless_uniform([batch_size, 1],
                                                       sources.stream_seed(key, 2))[own],
            "alpha_global": tf.random.stateless_uniform([batch_size, 1],
                                                        sources.stream_seed(key, 3))[own],
            "skipped": batch["skipped"],
        }
        if edges:
            out["edge"] = canny_edges(batch["image"])
        return out

    batches = tf.data.Dataset.zip(tuple(parts)).map(
        assemble, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)


def validation_batches(images, *, count, image_size, box_size, mask_dir=None, free_form=False,
                       strokes=None, edges=False):
    """One validation batch: the first `count` images with the centre box (or fixed masks).

    Args:
        images: a finite image stream (e.g. `image_dataset(..., training=False)`), or
            a function returning it when called without arguments.
        count: number of images, the batch size (fewer when the stream is shorter).
        image_size: (H, W) of the images.
        box_size: (h, w) of the box.
        mask_dir: folder of mask images: example i gets the i-th mask of
            `masks.fixed_masks` and the box from `masks.mask_bbox`.
        free_form: add one fixed stroke mask (`masks.brush_stroke_mask` with the
            key stream_seed(0, VALIDATION_STROKES), the same in every run) to the
            centre box hole of every example (not with `mask_dir`).
        strokes: the strokes' `masks.StrokeConfig` (None for the defaults).
        edges: add "edge", the `canny_edges` of the images.

    Returns:
        `tf.data.Dataset` of one batch with the layout of `training_batches`;
        without `mask_dir` every example has the untrimmed centre box as hole
        (joined with the fixed strokes with `free_form`); both alphas are 0.5.

    Raises:
        DataError: a bad size or count, a bad stroke configuration, or
            `free_form` together with `mask_dir`.
    """
    image_size = _check_size(image_size)
    if count < 1:
        raise DataError(f"validation count must be >= 1, got {count}")
    strokes = _hole_options(mask_dir, free_form, strokes)
    if mask_dir is None:
        bbox = masks.center_bbox(image_size, box_size)
        hole = masks.bbox_to_mask(bbox, image_size)
        if strokes is not None:
            hole = tf.maximum(hole, masks.brush_stroke_mask(
                image_size, sources.stream_seed(0, VALIDATION_STROKES), strokes))
        holes, boxes = hole[None], bbox[None]
    else:
        holes = masks.fixed_masks(mask_dir, image_size, count)
        boxes = tf.stack([masks.mask_bbox(hole, box_size, image_size) for hole in holes])

    def assemble(batch):
        size = tf.shape(batch["image"])[0]
        if mask_dir is None:
            mask, bbox = tf.tile(holes, [size, 1, 1, 1]), tf.tile(boxes, [size, 1])
        else:
            mask, bbox = holes[:size], boxes[:size]
        half = tf.fill([size, 1], 0.5)
        out = {"image": batch["image"], "mask": mask, "bbox": bbox, "alpha_local": half,
               "alpha_global": half, "skipped": batch["skipped"]}
        if edges:
            out["edge"] = canny_edges(batch["image"])
        return out

    stream = images if isinstance(images, tf.data.Dataset) else images()
    return stream.take(count).batch(count).map(assemble).prefetch(tf.data.AUTOTUNE)
