"""Contextual attention (Yu et al., CVPR 2018, section 4), in two formulations with one interface.

Foreground features `f` are matched against 3x3 patches of background features `b` at half
resolution; the softmax-weighted 4x4 raw background patches are pasted back (transposed
convolution, stride 2) to reconstruct `f`. The behaviour, quirks included, is that of the
original implementation (reference README, "Contextual attention"):

* Only the background patches are L2-normalised (by `max(||w||, 1e-4)`), so scores are not cosine
  similarities.
* "Fuse": the score matrix `[Hf*Wf, Hb*Wb]` is summed along its diagonal (3 neighbours in row-major
  flattened order, so neighbours wrap across row ends), re-ordered column-major, summed again and
  ordered back.
* A background patch is usable iff its whole 3x3 window in the half-resolution mask is 0 (zero
  padding at borders counts as usable). Unusable patches get logit 0 before `softmax(10 * s)` and
  weight 0 after it, so usable weights do not sum to 1.
* Pasting replaces every position, the known region included, and divides by 4.

`implementation="patches"` is the reference: `tf.image.extract_patches` and convolutions, as the
original computes it, with the batch folded into channels and block-diagonal kernels instead of a
per-example loop (memory grows with the batch squared; it is meant for checking).
`implementation="matmul"` computes the same numbers (up to rounding) with batched matrix
multiplications, pads, slices and `depth_to_space`, so it runs as TFLite built-in ops. It
reorders the sums to do less arithmetic: patch scores are pixel products summed along shifted
diagonals (one product C wide instead of 9C), and the paste sums the weights along shifted
diagonals before one product with the 2x2 pixel cells (4C wide instead of 16C, no overlap-add).
At 512x680 this takes the attention from 1.1 s to 0.5 s, in TensorFlow and in LiteRT (2 threads).
`attention_matmul_chunked` computes the same sums in row blocks, for memory linear in the image
area. The streamed attention (`inpainting.inference.streaming.attention_tiles`) computes them in tiles from
the same public pieces: `inverse_norms`, `usable_patches`, `kept_columns`, `column_major_step`,
`masked_softmax`, `best_index`, `background_cells`, `col2im` and `relative_offsets`.

Unlike the original, which used the first mask for the whole batch, each example may have its
own mask; a mask of batch size 1 is shared by all examples, which reproduces the original.
"""

import collections

import keras
import tensorflow as tf

from inpainting.config import ATTENTIONS
from inpainting.model import flow as flow_lib
from inpainting.model.layers import downsample_nearest

# Peak bytes per element of the score matrix (or of a block of it): the float32 scores and up to
# five copies of that size alive at once (fuse, transpose, softmax). Measured in graphs at
# 128**4 scores (the v1 generator at 1024x1024): 17.6 bytes for `attention_matmul` alone, 23 for
# the formulation the row blocks use; 6.45 GB peak RSS for the whole generator in one piece.
SCORE_BYTES = 4 * 6


def block_rows_for(grid_height, grid_width, memory_mb):
    """Rows of the 1/rate grid per block so a block's scores fit in `memory_mb` megabytes.

    A block of k rows is counted as (k + 2) * grid_width rows of the score matrix, each with
    grid_height * grid_width columns, at SCORE_BYTES per element. (It computes the scores of
    k + 5 grid rows, not all their copies at once. Measured for `attention_matmul_chunked` alone
    at a 128 x 128 grid in a graph: 0.71, 0.84 and 1.0 GB above its inputs with 1, 3 and 8 rows
    per block, which include about 0.6 GB that do not depend on the block size.) Works on ints
    or int32 scalar tensors; at least 1.
    """
    columns = grid_height * grid_width
    budget = int(memory_mb * 2 ** 20) // SCORE_BYTES
    return tf.maximum(budget // tf.maximum(grid_width * columns, 1) - 2, 1)


def _shape(x):
    """Static dimensions where known, dynamic scalars elsewhere."""
    static = x.shape.as_list()
    dynamic = tf.shape(x)
    return [dynamic[i] if s is None else s for i, s in enumerate(static)]


def _im2col(x, size):
    """The `size` x `size` patches (odd size, stride 1, zero padding) of `x` [B, H, W, C] as channels.

    Returns [B, H, W, size*size*C] ordered (row, col, channel), as `tf.image.extract_patches` with
    'SAME' padding, using pad and slices only.
    """
    pad = size // 2
    _, height, width, _ = _shape(x)
    x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return tf.concat([x[:, dy:dy + height, dx:dx + width, :]
                      for dy in range(size) for dx in range(size)], axis=-1)


def _shift(x, step, axis):
    """out[i] = x[i - step] along `axis` (1 or 2), zero where that index is outside."""
    if step == 0:
        return x
    pads = [[0, 0]] * 4
    pads[axis] = [step, 0] if step > 0 else [0, -step]
    x = tf.pad(x, pads)
    # Static slice bounds keep the other dimensions known (TFLite needs the channels).
    index = [slice(None)] * 4
    index[axis] = slice(None, -step) if step > 0 else slice(-step, None)
    return x[tuple(index)]


def col2im(patches, rate, channels):
    """Overlap-adds raw patches: the transposed convolution (kernel 2*rate, stride rate, SAME).

    This is how contextual attention pastes its weighted raw patches (before dividing by 4).

    Args:
        patches: [B, h, w, 4 * rate**2 * channels]: each (2*rate)-wide patch as 2x2 blocks of
            rate x rate pixels, ordered (block row, block col, row in block, col in block, channel).
        rate: stride of the patches.
        channels: channels per pixel.

    Returns:
        [B, h*rate, w*rate, channels]: output pixel `rate*i + k - rate//2` receives row `k` of the
        patch at `i` (the same for columns), as `tf.nn.conv2d_transpose` with 'SAME' does.
    """
    phases = {}
    for by in (0, 1):
        for sy in range(rate):
            shift_y, phase_y = divmod(by * rate + sy - rate // 2, rate)
            for bx in (0, 1):
                for sx in range(rate):
                    shift_x, phase_x = divmod(bx * rate + sx - rate // 2, rate)
                    # Channel slices of the 4-D tensor: TFLite slices tensors of at most 5 dimensions.
                    start = (((by * 2 + bx) * rate + sy) * rate + sx) * channels
                    term = patches[:, :, :, start:start + channels]
                    term = _shift(_shift(term, shift_y, 1), shift_x, 2)
                    key = (phase_y, phase_x)
                    phases[key] = term if key not in phases else phases[key] + term
    stacked = tf.concat([phases[(py, px)] for py in range(rate) for px in range(rate)], axis=-1)
    return tf.nn.depth_to_space(stacked, rate) if rate > 1 else stacked


def _diagonal_sum(scores, k):
    """out[p, q] = sum over t in [-(k//2), k//2] of scores[p + t, q + t], zero outside; [B, P, L].

    Constant slice bounds (counted from the end) keep the slices in LiteRT's XNNPACK delegate.
    """
    d = k // 2
    return _sum_of_slices(tf.pad(scores, [[0, 0], [d, d], [d, d]]), (1, 2), k)


def _fuse(scores, height, width, k):
    """The original's fuse step on `scores` [B, P, L] with P = L = height * width."""
    b = _shape(scores)[0]
    scores = _diagonal_sum(scores, k)
    scores = tf.reshape(scores, [b, height, width, height, width])
    scores = tf.reshape(tf.transpose(scores, [0, 2, 1, 4, 3]), [b, height * width, height * width])
    scores = _diagonal_sum(scores, k)
    scores = tf.reshape(scores, [b, width, height, width, height])
    return tf.reshape(tf.transpose(scores, [0, 2, 1, 4, 3]), [b, height * width, height * width])


def usable_patches(mask, ksize):
    """1.0 where the `ksize` x `ksize` window (zero padded) of `mask` [B, h, w, 1] is all zero.

    Returns:
        float [B, h*w], row-major over positions.
    """
    window_max = tf.nn.max_pool2d(mask, ksize, 1, "SAME")  # max pooling ignores the padding
    b = _shape(mask)[0]
    return tf.reshape(tf.cast(tf.equal(window_max, 0.0), mask.dtype), [b, -1])


def relative_offsets(index, height, width):
    """The offsets from each position of a grid to the background position it copies.

    Args:
        index: int32 [B, h*w], per position (row-major), the row-major index of its background
            position (the argmax of its weights).
        height, width: the grid (h, w).

    Returns:
        int32 [B, h, w, 2]: (dy, dx) from each position to its background position.
    """
    b = _shape(index)[0]
    index = tf.reshape(index, [b, height, width])
    rows = tf.reshape(tf.range(height, dtype=tf.int32), [1, -1, 1])
    cols = tf.reshape(tf.range(width, dtype=tf.int32), [1, 1, -1])
    return tf.stack([index // width - rows, index % width - cols], axis=-1)


def _inputs(f, b, mask):
    f = tf.convert_to_tensor(f)
    b = tf.convert_to_tensor(b, f.dtype)
    return f, b, None if mask is None else tf.cast(mask, f.dtype)


def _padded_grid(x, pad):
    """`x` [B, h, w, C] zero-padded by `pad` on each side and flattened: [B, (h+2pad)*(w+2pad), C]."""
    batch, height, width, channels = _shape(x)
    x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return tf.reshape(x, [batch, (height + 2 * pad) * (width + 2 * pad), channels])


def _patch_products(rows, keys, height, width, ksize):
    """Dot products of `ksize` x `ksize` foreground patches with every background patch (zero padded).

    Args:
        rows: `_padded_grid` rows of the foreground for n grid rows: the padded rows r .. r+n+2p-1
            (p = ksize // 2) hold the windows of grid rows r .. r+n-1. [B, (n+2p)*(w+2p), C].
        keys: `_padded_grid` of the whole background, [B, (h+2p)*(w+2p), C].
        height, width: the grid.
        ksize: the patch size.

    Returns:
        [B, n*w, h*w], row-major over positions. A patch product is the sum over the window's
        offsets d of the pixel products <f[p + d], b[q + d]>, so the pixel products of the padded
        grids (one product `C` wide, instead of `ksize**2 * C` for patches) are summed along
        shifted diagonals, one grid axis at a time. The shifts are slices with constant bounds,
        which LiteRT runs in XNNPACK.
    """
    batch = _shape(rows)[0]
    pad = ksize // 2
    grid_h, grid_w = height + 2 * pad, width + 2 * pad
    pixels = tf.matmul(rows, keys, transpose_b=True)
    pixels = tf.reshape(pixels, [batch, -1, grid_w, grid_h, grid_w])
    for axes in ((2, 4), (1, 3)):  # columns of both windows, then rows
        pixels = _sum_of_slices(pixels, axes, ksize)
    return tf.reshape(pixels, [batch, -1, height * width])


def _sum_of_slices(x, axes, k):
    """Sum over s in [0, k) of x sliced to [s, s - k + 1) along every axis in `axes`.

    The terms are added one after the other (a control dependency in graphs, where the executor
    would otherwise slice all k at once): at most two slices and two sums of the size of the
    result are alive beside `x`. The gradient is the same sum of slices of the upstream gradient
    zero-padded by k - 1 on both sides of those axes (dx[i] = sum over s of dy[i - s]): slices and
    adds, where TensorFlow's own gradient writes each slice's gradient into a tensor of zeros the
    size of `x` (StridedSliceGrad, a sixth of a v1 generator update) and adds those up.
    """

    @tf.custom_gradient
    def summed(x):
        def grad(dy):
            pads = [[0, 0]] * dy.shape.rank
            for axis in axes:
                pads[axis] = [k - 1, k - 1]
            return _slices_added(tf.pad(dy, pads), axes, k)

        return _slices_added(x, axes, k), grad

    return summed(x)


def _slices_added(x, axes, k):
    total = None
    for start in range(k):
        index = [slice(None)] * x.shape.rank
        for axis in axes:
            index[axis] = slice(start, start - k + 1 or None)
        with tf.control_dependencies([] if total is None or tf.executing_eagerly() else [total]):
            term = x[tuple(index)]
        total = term if total is None else total + term
        del term
    return total


def inverse_norms(x, ksize):
    """What the scores of the background patches are multiplied by: 1 / max(L2 norm, 1e-4).

    Args:
        x: background features at 1/rate, [B, h, w, C].
        ksize: the patch size (odd); patches are centred on each position and zero padded.

    Returns:
        [B, h*w], row-major over the patches' centres.
    """
    squares = tf.reduce_sum(tf.square(x), axis=-1, keepdims=True)
    b = _shape(x)[0]
    norms = tf.sqrt(tf.reshape(tf.reduce_sum(_im2col(squares, ksize), axis=-1), [b, -1]))
    return 1.0 / tf.maximum(norms, tf.cast(1e-4, x.dtype))


def _cell_weights(weights, height, width):
    """What each output cell takes from each cell of the background, for n rows of output cells.

    A raw patch (2*rate wide, stride rate, zero padding of rate // 2 before and rate - rate // 2
    after, as `extract_patches` with 'SAME' pads) is 2x2 cells of rate x rate pixels
    of the padded background, so pasting it adds its cells to the four output cells it covers:
    output cell c receives background cell c' with weight sum over k in {0, 1}^2 of
    weights[c - k, c' - k]. The weights are summed along shifted diagonals (pads), and the paste
    becomes one product `rate**2 * C` wide instead of `4 * rate**2 * C`, with no overlap-add.

    Args:
        weights: [B, (n+1)*w, h*w], the weights of the foreground grid rows r-1 .. r+n-1 (zero
            for rows outside the grid).
        height, width: the grid.

    Returns:
        [B, n*(w+1), (h+1)*(w+1)] for the output cell rows r .. r+n-1.
    """
    batch = _shape(weights)[0]
    weights = tf.reshape(weights, [batch, -1, width, height, width])
    after, before = [[0, 0], [0, 0], [0, 1], [0, 0], [0, 1]], [[0, 0], [0, 0], [1, 0], [0, 0], [1, 0]]
    weights = tf.pad(weights, after) + tf.pad(weights, before)  # columns: c = c_f + k, c' = c_b + k
    weights = (tf.pad(_drop_row(weights, first=True), [[0, 0], [0, 0], [0, 0], [0, 1], [0, 0]])  # k = 0
               + tf.pad(_drop_row(weights, first=False), [[0, 0], [0, 0], [0, 0], [1, 0], [0, 0]]))
    return tf.reshape(weights, [batch, -1, (height + 1) * (width + 1)])


def _drop_row(x, first):
    """`x` without its first (or last) element along axis 1; the gradient pads a zero back in
    (TensorFlow's own, StridedSliceGrad, is several times slower on these score-sized tensors)."""

    @tf.custom_gradient
    def dropped(x):
        def grad(dy):
            pads = [[0, 0]] * dy.shape.rank
            pads[1] = [1, 0] if first else [0, 1]
            return tf.pad(dy, pads)

        return (x[:, 1:] if first else x[:, :-1]), grad

    return dropped(x)


def background_cells(b, rate):
    """The background cut into rate x rate cells, from which every raw patch is read.

    The raw patch of grid position (ky, kx) (2*rate wide, stride rate, zero padded as
    `extract_patches` with 'SAME' pads: rate // 2 before, rate - rate // 2 after) is the 2x2 cells
    (ky + by, kx + bx), by, bx in {0, 1}, of the padded background; concatenated in that order they
    are the patch as `col2im` takes it.

    Args:
        b: background features [B, H, W, C], H and W multiples of `rate`.
        rate: the cell size.

    Returns:
        [B, (h+1)*(w+1), rate*rate*C] for the h x w grid of 1/rate: cell (y, x) is row
        y * (w + 1) + x, its pixels ordered (row in cell, column in cell, channel).
    """
    batch, _, _, channels = _shape(b)
    low, high = rate // 2, rate - rate // 2
    padded = tf.pad(b, [[0, 0], [low, high], [low, high], [0, 0]])
    cells = tf.nn.space_to_depth(padded, rate) if rate > 1 else padded
    return tf.reshape(cells, [batch, -1, rate * rate * channels])


def _cells_to_image(cells, rate, height, width, full_h, full_w):
    """Pasted output cells [B, (h+1)*(w+1), r*r*C] -> [B, H, W, C], not divided by 4."""
    batch = _shape(cells)[0]
    cells = tf.reshape(cells, [batch, height + 1, width + 1, _shape(cells)[2]])
    image = tf.nn.depth_to_space(cells, rate) if rate > 1 else cells
    low = rate // 2
    return image[:, low:low + full_h, low:low + full_w, :]


def attention_matmul(f, b, mask, ksize=3, rate=2, fuse_k=3, softmax_scale=10.0, fuse=True):
    """Contextual attention with batched matrix multiplications. See the module docstring.

    Args:
        f: foreground features [B, H, W, C]; H and W multiples of `rate`.
        b: background features, the same shape as `f`.
        mask: [B or 1, H, W, 1], 1 = hole, or None (every patch usable).
        ksize: matching patch size (odd).
        rate: downscaling of the matching; raw patches are `2*rate` wide with stride `rate`.
        fuse_k: size of the fuse kernel (odd).
        softmax_scale: multiplies the scores before the softmax.
        fuse: whether to apply the fuse step.

    Returns:
        (y [B, H, W, C], offsets int32 [B, H/rate, W/rate, 2]): the reconstruction and, per
        position, the (dy, dx) from it to the background patch of largest weight.
    """
    m = _matching(f, b, mask, ksize, rate)
    weights = _masked_softmax_all(_fused_scores(m, fuse_k, fuse), m.usable, softmax_scale)
    # argmax is 0 on a row whose weights are all 0, as in the original.
    offsets = relative_offsets(tf.argmax(weights, axis=-1, output_type=tf.int32), m.height, m.width)
    # Output cell rows 0 .. h take the weights of grid rows -1 .. h (the outer two are zero).
    weights = _cell_weights(tf.pad(weights, [[0, 0], [m.width, m.width], [0, 0]]), m.height, m.width)
    return m.image(tf.matmul(weights, m.cells)), offsets


def matching_scores(f, b, mask, ksize=3, rate=2, fuse_k=3, fuse=True):
    """The scores contextual attention's softmax weighs, in one piece: what its offsets maximise.

    Args:
        f, b, mask, ksize, rate, fuse_k, fuse: as `attention_matmul`.

    Returns:
        (scores [B, P, L], usable [B, 1, L]): per position of the 1/rate grid (row-major), the
        (fused) score of every background patch, and 1.0 for the usable patches. A position's
        offset points at the usable patch of largest score; the softmax multiplies the scores by
        `softmax_scale`.
    """
    m = _matching(f, b, mask, ksize, rate)
    return _fused_scores(m, fuse_k, fuse), m.usable


def _fused_scores(m, fuse_k, fuse):
    """The scores of every foreground position of `m` (a `_Matching`), fused if `fuse`."""
    scores = m.scores(m.queries)
    return _fuse(scores, m.height, m.width, fuse_k) if fuse else scores


_Matching = collections.namedtuple(
    "_Matching", "height width queries scores usable cells image")


def _matching(f, b, mask, ksize, rate):
    """What both matmul formulations start from.

    Returns:
        A `_Matching`: height and width of the 1/rate grid; `queries`, the foreground's
        `_padded_grid`; `scores(rows)`, the patch products of `_padded_grid` rows of the
        foreground (`_patch_products`) with every background patch, divided by the background
        patches' `max(norm, 1e-4)`; `usable` [B, 1, L], 1.0 for usable background patches;
        `cells`, the `background_cells`; and `image(pasted)`, pasted output cells as the
        output [B, H, W, C] (`_cells_to_image`, divided by 4).
    """
    same = b is f
    f, b, mask = _inputs(f, b, mask)
    batch, full_h, full_w, _ = _shape(f)
    fd = downsample_nearest(f, rate)
    bd = fd if same else downsample_nearest(b, rate)
    _, height, width, _ = _shape(fd)
    queries = _padded_grid(fd, ksize // 2)
    keys = queries if same else _padded_grid(bd, ksize // 2)
    inverse_norm = inverse_norms(bd, ksize)[:, None, :]

    def scores(rows):
        return _patch_products(rows, keys, height, width, ksize) * inverse_norm

    def image(pasted):
        return _cells_to_image(pasted, rate, height, width, full_h, full_w) / 4.0

    usable = _usable(mask, batch, height, width, ksize, rate, f.dtype)[:, None, :]
    return _Matching(height, width, queries, scores, usable, background_cells(b, rate), image)


def _masked_softmax_all(scores, usable, scale):
    """The original's masked softmax over all columns: unusable patches (`usable` 0) get logit 0
    before `softmax(scale * logits)` and weight 0 after it."""
    return tf.nn.softmax(scores * (usable * scale), axis=-1) * usable


def _usable(mask, batch, height, width, ksize, rate, dtype):
    """`usable_patches` of the mask (None: all usable) at 1/rate, broadcast to [B, h*w]."""
    if mask is None:
        return tf.ones([batch, height * width], dtype)
    return tf.broadcast_to(usable_patches(downsample_nearest(mask, rate), ksize), [batch, height * width])


def best_index(weights, columns):
    """The background patch of largest weight per position, as the argmax over all patches gives it.

    Args:
        weights: [B, n, K], the weights of n positions on the kept columns (`kept_columns`).
        columns: int32 [B, K], the patch of each kept column.

    Returns:
        int32 [B, n]: the patch of largest weight; 0 for a position whose weights are all 0 (no
        usable patch), which is the original's argmax over all columns.
    """
    best = tf.argmax(weights, axis=-1, output_type=tf.int32)
    return tf.where(tf.reduce_max(weights, axis=-1) > 0, tf.gather(columns, best, batch_dims=1), 0)


def kept_columns(usable):
    """The background patches whose scores a softmax needs: the usable ones, in order.

    Unusable patches have weight exactly 0 and add `exp(0 - max)` each to the softmax's
    denominator, so only the usable columns need their scores (`masked_softmax`). K is the
    largest number of usable columns in the batch (at least 1); examples with fewer keep some
    unusable columns, with weight 0. The streamed attention (`inpainting.inference.streaming`) uses it.

    Args:
        usable: [B, L], `usable_patches` of the mask.

    Returns:
        (columns int32 [B, K], valid [B, 1, K], 1.0 where the kept column is usable, and rest,
        the number of left-out columns).
    """
    total = tf.shape(usable)[1]
    keep = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(usable > 0, tf.int32), axis=1)), 1)
    columns = tf.argsort(usable, axis=1, direction="DESCENDING", stable=True)[:, :keep]
    valid = tf.gather(usable, columns, batch_dims=1)[:, None, :]
    return columns, valid, tf.cast(total - keep, usable.dtype)  # rest: left-out columns, logit 0


def masked_softmax(kept_scores, valid, rest, scale):
    """The original's masked softmax, computed from the kept columns only (`kept_columns`).

    Unusable patches get logit 0 before `softmax(scale * logits)` and weight 0 after it; the
    `rest` left-out columns count in the denominator as logits 0.

    Args:
        kept_scores: [B, n, K], the (fused) scores of n positions on the kept columns.
        valid, rest: as `kept_columns` returns them.
        scale: multiplies the scores before the softmax.

    Returns:
        [B, n, K], the weights of the kept columns, equal to the whole softmax's there.
    """
    logits = kept_scores * (valid * scale)
    largest = tf.reduce_max(logits, axis=-1, keepdims=True)
    largest = tf.where(rest > 0, tf.maximum(largest, 0.0), largest)
    exp = tf.exp(logits - largest)
    denominator = tf.reduce_sum(exp, axis=-1, keepdims=True) + rest * tf.exp(-largest)
    return exp / denominator * valid


def _shift_columns(x, step):
    """out[..., s] = x[..., s + step] along the last axis of a 3-D tensor, zero outside."""
    if step > 0:
        return tf.pad(x, [[0, 0], [0, 0], [0, step]])[:, :, step:]
    return tf.pad(x, [[0, 0], [0, 0], [-step, 0]])[:, :, :step]


def column_major_step(position, step, height, width):
    """The position `step` places away in column-major order, for the fuse step's second pass.

    Args:
        position: int32 tensor of row-major indices into a `height` x `width` grid.
        step: how many places (negative: before).
        height, width: the grid.

    Returns:
        (int32 row-major index of that position, clipped into the grid; bool, whether it exists,
        i.e. is not before the first or after the last position), each shaped as `position`.
    """
    total = height * width
    index = (position % width) * height + position // width + step
    exists = (index >= 0) & (index < total)
    index = tf.clip_by_value(index, 0, total - 1)
    return (index % height) * width + index // height, exists


def attention_matmul_chunked(f, b, mask, ksize=3, rate=2, softmax_scale=10.0, fuse=True,
                             block_rows=8):
    """`attention_matmul` with memory linear in the image area: the score matrix in row blocks.

    The output is pasted `block_rows` rows of output cells (the 1/rate grid plus one row and
    column, see `_cell_weights`) at a time; a block needs the weights of its foreground grid rows
    and of the row above. The fuse step (with fuse_k = 3) mixes a score with its neighbours along
    the diagonal in row-major order and then in column-major order; the first pass needs one
    score row above and below, the second the first-pass rows of the positions one grid row
    above and below and, at the first and last grid rows, the column-major neighbours that wrap
    to the other end. Those rows are computed beside each block (the two wrap rows once), so
    every block's weights equal the unchunked ones and the result is the same up to rounding.
    Memory grows with block_rows * width * L instead of L**2 (see `block_rows_for`).

    Args: those of `attention_matmul` (fuse_k is 3), and block_rows: rows per block, a positive
        int or int32 scalar tensor.

    Returns: as `attention_matmul`.
    """
    m = _matching(f, b, mask, ksize, rate)
    height, width = m.height, m.width
    total = height * width
    pad = ksize // 2
    grid_w = width + 2 * pad

    def scores(top, bottom):
        """The scores of the grid rows [top, bottom), before the fuse: [B, (bottom-top)*w, L]."""
        return m.scores(m.queries[:, top * grid_w:(bottom + 2 * pad) * grid_w])

    def first_pass(top, bottom):
        """Rows [top*w, bottom*w) of the first fuse pass: row r is the sum over u in {-1, 0, 1} of
        S[r + u, s + u], with S zero outside, so it needs the score rows top*w - 1 .. bottom*w."""
        low, high = tf.maximum(top - 1, 0), tf.minimum(bottom + 1, height)
        padded = tf.pad(scores(low, high), [[0, 0], [width, width], [0, 0]])  # rows low-1 .. high
        start = (top - low + 1) * width - 1
        n = (bottom - top) * width
        rows = padded[:, start:start + n + 2]
        return _shift_columns(rows[:, :n], -1) + rows[:, 1:n + 1] + _shift_columns(rows[:, 2:n + 2], 1)

    if fuse:  # the first-pass rows of the first and last grid rows, where column-major order wraps
        edges = tf.concat([first_pass(0, 1), first_pass(height - 1, height)], axis=1)
        neighbours = {step: column_major_step(tf.range(total), step, height, width) for step in (-1, 0, 1)}

    def fused(top, bottom):
        """The fused scores of the grid rows [top, bottom): [B, (bottom-top)*w, L]."""
        if not fuse:
            return scores(top, bottom)
        low, high = tf.maximum(top - 1, 0), tf.minimum(bottom + 1, height)
        rows = tf.concat([first_pass(low, high), edges], axis=1)
        inner = (high - low) * width
        out = 0.0
        for step in (-1, 0, 1):
            row, row_exists = column_major_step(tf.range(top * width, bottom * width), step, height, width)
            grid_row = row // width
            local = tf.where((grid_row >= low) & (grid_row < high), row - low * width,
                             tf.where(grid_row == 0, inner + row % width, inner + width + row % width))
            picked = tf.gather(rows, local, axis=1) * tf.cast(row_exists, rows.dtype)[None, :, None]
            column, column_exists = neighbours[step]
            out += tf.gather(picked, column, axis=2) * tf.cast(column_exists, picked.dtype)[None, None, :]
        return out

    block_rows = tf.maximum(tf.cast(block_rows, tf.int32), 1)
    blocks = (height + block_rows) // block_rows  # over the h + 1 rows of output cells

    def block(i, pasted, indices):
        top = i * block_rows
        bottom = tf.minimum(top + block_rows, height + 1)
        low, high = tf.maximum(top - 1, 0), tf.minimum(bottom, height)  # the weights it pastes
        weights = _masked_softmax_all(fused(low, high), m.usable, softmax_scale)
        index = tf.argmax(weights[:, (top - low) * width:], axis=-1, output_type=tf.int32)
        # Grid rows top-1 .. bottom-1, zero outside the grid.
        weights = tf.pad(weights, [[0, 0], [(low - top + 1) * width, (bottom - high) * width], [0, 0]])
        out = tf.matmul(_cell_weights(weights, height, width), m.cells)
        # Every block is written block_rows rows long (the last one padded) so that the
        # TensorArrays stack: ONNX has a conversion for stacking and none for concatenating.
        out = tf.pad(out, [[0, 0], [0, (top + block_rows - bottom) * (width + 1)], [0, 0]])
        index = tf.pad(index, [[0, 0], [0, (top + block_rows - high) * width]])
        # Blocks are stacked position-major ([n, B, ...]).
        pasted = pasted.write(i, tf.transpose(out, [1, 0, 2]))
        indices = indices.write(i, tf.transpose(index))
        return i + 1, pasted, indices

    arrays = (tf.TensorArray(m.cells.dtype, size=blocks), tf.TensorArray(tf.int32, size=blocks))
    _, pasted, indices = tf.while_loop(lambda i, *_: i < blocks, block, (tf.constant(0), *arrays))
    # The reshapes restore the ranks that the TensorArrays lose; the slices drop the padding.
    batch, _, cell_size = _shape(m.cells)
    pasted = tf.reshape(pasted.stack(), [-1, batch, cell_size])[:(height + 1) * (width + 1)]
    pasted = tf.transpose(pasted, [1, 0, 2])
    index = tf.transpose(tf.reshape(indices.stack(), [-1, batch])[:total])
    return m.image(pasted), relative_offsets(index, height, width)


def _fold_batch(x):
    """[B, H, W, C] -> [1, H, W, B*C] (batch-major channels)."""
    b, h, w, c = _shape(x)
    return tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, b * c])


def _unfold_batch(x, batch):
    """[1, H, W, B*C] -> [B, H, W, C]."""
    _, h, w, bc = _shape(x)
    return tf.transpose(tf.reshape(x, [h, w, batch, bc // batch]), [2, 0, 1, 3])


def _block_diagonal(kernels):
    """Per-example kernels [B, kh, kw, C, L] -> one block-diagonal kernel [kh, kw, B*C, B*L]."""
    b, kh, kw, c, l = _shape(kernels)
    eye = tf.eye(b, dtype=kernels.dtype)
    return tf.reshape(tf.einsum("bhwcl,be->hwbcel", kernels, eye), [kh, kw, b * c, b * l])


def attention_patches(f, b, mask, ksize=3, rate=2, fuse_k=3, softmax_scale=10.0, fuse=True):
    """Reference contextual attention on `tf.image.extract_patches` and convolutions.

    Same arguments and results as `attention_matmul`.
    """
    f, b, mask = _inputs(f, b, mask)
    batch, full_h, full_w, channels = _shape(f)
    size = 2 * rate
    raw = tf.image.extract_patches(b, [1, size, size, 1], [1, rate, rate, 1], [1, 1, 1, 1], "SAME")
    raw = tf.transpose(tf.reshape(raw, [batch, -1, size, size, channels]), [0, 2, 3, 4, 1])
    fd = downsample_nearest(f, rate)
    bd = downsample_nearest(b, rate)
    _, height, width, _ = _shape(fd)
    locations = height * width
    keys = tf.image.extract_patches(bd, [1, ksize, ksize, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME")
    keys = tf.transpose(tf.reshape(keys, [batch, -1, ksize, ksize, channels]), [0, 2, 3, 4, 1])
    norms = tf.sqrt(tf.reduce_sum(tf.square(keys), axis=[1, 2, 3], keepdims=True))
    keys = keys / tf.maximum(norms, tf.cast(1e-4, keys.dtype))
    scores = tf.nn.conv2d(_fold_batch(fd), _block_diagonal(keys), 1, "SAME")
    scores = _unfold_batch(scores, batch)  # [B, h, w, L]
    if fuse:
        kernel = tf.reshape(tf.eye(fuse_k, dtype=scores.dtype), [fuse_k, fuse_k, 1, 1])
        scores = tf.nn.conv2d(tf.reshape(scores, [batch, locations, locations, 1]), kernel, 1, "SAME")
        scores = tf.transpose(tf.reshape(scores, [batch, height, width, height, width]), [0, 2, 1, 4, 3])
        scores = tf.nn.conv2d(tf.reshape(scores, [batch, locations, locations, 1]), kernel, 1, "SAME")
        scores = tf.transpose(tf.reshape(scores, [batch, width, height, width, height]), [0, 2, 1, 4, 3])
    scores = tf.reshape(scores, [batch, height, width, locations])
    if mask is None:
        mask = tf.zeros([1, full_h, full_w, 1], f.dtype)
    md = downsample_nearest(mask, rate)
    windows = tf.image.extract_patches(md, [1, ksize, ksize, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME")
    usable = tf.cast(tf.equal(tf.reduce_mean(windows, axis=-1), 0.0), f.dtype)
    usable = tf.reshape(usable, [-1, 1, 1, locations])
    weights = tf.nn.softmax(scores * usable * softmax_scale, axis=3) * usable
    index = tf.reshape(tf.argmax(weights, axis=3, output_type=tf.int32), [batch, -1])
    offsets = relative_offsets(index, height, width)
    y = tf.nn.conv2d_transpose(_fold_batch(weights), _block_diagonal(raw),
                               [1, full_h, full_w, batch * channels], rate, "SAME")
    return _unfold_batch(y, batch) / 4.0, offsets


@keras.saving.register_keras_serializable(package="inpainting")
class ContextualAttention(keras.layers.Layer):
    """Contextual attention layer: reconstructs foreground features from background patches.

    Args:
        ksize: matching patch size (odd), 3 in DeepFill.
        rate: matching runs at 1/rate resolution; raw patches are 2*rate wide, stride rate.
        fuse_k: size of the fuse kernel (odd), 3 in DeepFill.
        softmax_scale: multiplies the scores before the softmax, 10 in DeepFill.
        fuse: whether to apply the fuse step.
        implementation: "matmul" (fast, TFLite built-ins) or "patches" (the reference).
        block_rows: with "matmul", process the score matrix `block_rows` rows of the 1/rate grid
            at a time (`attention_matmul_chunked`): the same result up to rounding with memory
            linear in the image area. None computes the whole matrix at once.
        memory_mb: with "matmul" and no `block_rows`, a memory budget for the score matrix: inputs
            whose whole matrix would exceed it run in blocks that fit (`block_rows_for`), smaller
            ones in one piece. None: no budget.
        flow_upsample: how the colour-coded flow is enlarged to the features' size: "nearest"
            (DeepFill v1) or "bilinear" (v2).
        flow_dtype: float type of the flow colouring; "float64" reproduces the original exactly,
            "float32" is needed where float64 kernels are missing (TFLite).

    Call arguments:
        inputs: `[f, b, mask]`: features [B, H, W, C] (H, W multiples of `rate`), background
            features of the same shape, and a mask [B or 1, H, W, 1] (1 = hole) or None.

    Returns:
        A dict: `output` [B, H, W, C]; `offsets` int32 [B, H/rate, W/rate, 2], the (dy, dx) to the
        patch of largest weight; `flow` float32 [B, H, W, 3] in [-1, 1], the offsets colour-coded.

    Example:
        >>> layer = ContextualAttention()
        >>> out = layer([tf.random.normal([1, 32, 32, 8])] * 2 + [None])
        >>> out["output"].shape, out["flow"].shape
        (TensorShape([1, 32, 32, 8]), TensorShape([1, 32, 32, 3]))

    Reference: Yu et al., "Generative Image Inpainting with Contextual Attention", CVPR 2018.
    """

    def __init__(self, ksize=3, rate=2, fuse_k=3, softmax_scale=10.0, fuse=True,
                 implementation="matmul", flow_upsample="nearest", flow_dtype="float64",
                 block_rows=None, memory_mb=None, **kwargs):
        super().__init__(**kwargs)
        if implementation not in ATTENTIONS:
            raise ValueError(f"implementation must be one of {ATTENTIONS}, got {implementation!r}")
        if ksize % 2 == 0 or fuse_k % 2 == 0:
            raise ValueError(f"ksize and fuse_k must be odd, got {ksize} and {fuse_k}")
        if rate < 1:
            raise ValueError(f"rate must be >= 1, got {rate}")
        self.ksize = ksize
        self.rate = rate
        self.fuse_k = fuse_k
        self.softmax_scale = softmax_scale
        self.fuse = fuse
        self.implementation = implementation
        self.flow_upsample = flow_upsample
        self.flow_dtype = flow_dtype
        self._check_chunking("block_rows", block_rows, block_rows is None or block_rows >= 1)
        self.block_rows = block_rows
        self._check_chunking("memory_mb", memory_mb, memory_mb is None or memory_mb > 0)
        self.memory_mb = memory_mb

    def _check_chunking(self, name, value, positive):
        """Chunking (`block_rows`, `memory_mb`) needs the matmul formulation and fuse_k = 3."""
        if value is not None and (self.implementation != "matmul" or self.fuse_k != 3 or not positive):
            raise ValueError(f"{name} needs implementation='matmul', fuse_k=3 and a positive value, "
                             f"got {value!r} with {self.implementation!r}, fuse_k={self.fuse_k}")

    def call(self, inputs):
        f, b, mask = inputs
        if f.shape.is_fully_defined() and b.shape.is_fully_defined() and f.shape != b.shape:
            raise ValueError(f"f and b must have the same shape, got {f.shape} and {b.shape}")
        for dim in f.shape[1:3]:
            if dim is not None and dim % self.rate:
                raise ValueError(f"height and width must be multiples of rate={self.rate}, got {f.shape}")
        if self.block_rows is not None:
            y, offsets = attention_matmul_chunked(f, b, mask, self.ksize, self.rate, self.softmax_scale,
                                                  self.fuse, self.block_rows)
        elif self.memory_mb is not None:
            grid = tf.shape(f)[1:3] // self.rate
            rows = block_rows_for(grid[0], grid[1], self.memory_mb)
            y, offsets = tf.cond(
                rows >= grid[0],
                lambda: attention_matmul(f, b, mask, self.ksize, self.rate, self.fuse_k,
                                         self.softmax_scale, self.fuse),
                lambda: attention_matmul_chunked(f, b, mask, self.ksize, self.rate,
                                                 self.softmax_scale, self.fuse, rows))
        else:
            attend = attention_matmul if self.implementation == "matmul" else attention_patches
            y, offsets = attend(f, b, mask, self.ksize, self.rate, self.fuse_k, self.softmax_scale,
                                self.fuse)
        return {"output": y, "offsets": offsets, "flow": self.flow(offsets)}

    def flow(self, offsets):
        """The colour-coded `offsets` as the layer returns them.

        Args:
            offsets: int32 [B, h, w, 2], the (dy, dx) of each position of the 1/rate grid.

        Returns:
            float32 [B, h*rate, w*rate, 3] in [-1, 1], enlarged as `flow_upsample` says.
        """
        flow = flow_lib.flow_to_color(offsets, dtype=tf.as_dtype(self.flow_dtype))
        return flow_lib.upsample_flow(flow, self.rate, self.flow_upsample)

    def compute_output_shape(self, input_shape):
        f_shape = input_shape[0]
        b, h, w, _ = f_shape
        small = lambda v: None if v is None else v // self.rate
        return {"output": tuple(f_shape), "offsets": (b, small(h), small(w), 2), "flow": (b, h, w, 3)}

    def get_config(self):
        config = super().get_config()
        config.update(ksize=self.ksize, rate=self.rate, fuse_k=self.fuse_k,
                      softmax_scale=self.softmax_scale, fuse=self.fuse,
                      implementation=self.implementation, flow_upsample=self.flow_upsample,
                      flow_dtype=self.flow_dtype, block_rows=self.block_rows, memory_mb=self.memory_mb)
        return config

