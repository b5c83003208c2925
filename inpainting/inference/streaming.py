"""The generator on one very large image, with memory linear in its area.

`StreamedGenerator` runs a built `Generator` on one image: the network is the generator's own
(`inpainting.model.generator.forward`), and each of its stages runs layer by layer, its whole inputs
and outputs held in memory and everything else computed a strip or a tile at a time:

* Every convolution is computed in horizontal strips of output rows. A strip reads the input
  rows its kernel needs, with the image border's padding (zeros, or the mirror of the image)
  rebuilt from the row and column indices, and runs the layer's own VALID convolution
  (`Conv.convolve`). Only each layer's whole input and output are ever in memory, never the
  padded copies and temporaries of a whole-image convolution; an upsampling layer reads its
  input rows twice instead of enlarging the whole map; concatenated inputs are concatenated
  strip by strip.
* Contextual attention is computed in rectangular tiles of foreground positions
  (`attention_tiles`). A tile's scores against every background patch are one convolution of
  the background with the tile's query patches; the fuse step's neighbours (one position before
  and after in row-major order, one grid row above and below, and the positions where
  column-major order wraps from the last grid row to the first) are computed beside the tile, so
  every tile's fused scores, softmax, argmax and pasted patches equal those of the whole score
  matrix. The pasted patches of a tile are overlap-added into the output. Nothing of the size of
  the score matrix, of all background patches, or of all raw patches is ever built: the raw
  patches are read from the features cut into cells of the attention's rate
  (`attention.background_cells`, one copy of the features), as four products of the tile's
  weights with shifted views of the cells. Patch size, rate and softmax scale are those of the
  generator's `ContextualAttention` layer.

The result equals `Generator.call` up to float rounding (about 1e-6). With `attention="hole_only"`,
tiles that hold no position within `HOLE_ONLY_REACH` grid cells of the hole are not matched; each
of their positions pastes its own patch, as a known position almost always does (its best match
is itself), so the attention returns its input there and the offsets are 0. That is an
approximation: `bench/highres.py` measures its difference, and it makes the attention's cost
proportional to the hole's rows and columns instead of the whole image.

    streamed = StreamedGenerator(generator, memory_mb=1024)
    refined, flow = streamed(image, mask)   # [H, W, 3] in [-1, 1], [H, W, 1] {0, 1} (H, W % 8 == 0)
"""

import functools

import numpy as np
import tensorflow as tf

from inpainting.model import attention as att
from inpainting.model.generator import StageRunner, forward
from inpainting.model.layers import UpConv, downsample_nearest, fold_indices, resize_nearest

ATTENTION_MODES = ("exact", "hole_only")
# hole_only: tiles with a position this many cells (of the 1/8 grid) from the hole are matched.
HOLE_ONLY_REACH = 2
_BYTES = 4


def _window(conv, size, first, stop):
    """The input indices along one axis that outputs [first, stop) of `conv` read.

    Returns (indices into an axis of `size`, inside): `inside` is None for mirror padding, where
    every index is folded into the image, or a bool mask of the indices that are not zero padding.
    """
    k, s, d = conv.kernel_size, conv.strides, conv.dilation_rate
    if conv.padding == "same":  # TF's SAME: the smaller half of the padding before
        out = -(-size // s)
        before = max((out - 1) * s + (k - 1) * d + 1 - size, 0) // 2
    else:
        before = d * (k - 1) // 2
    index = np.arange(first * s - before, (stop - 1) * s - before + (k - 1) * d + 1)
    if conv.padding == "same":
        return np.clip(index, 0, size - 1), (index >= 0) & (index < size)
    return fold_indices(tf.constant(index, tf.int32), size, conv.padding).numpy(), None


@functools.lru_cache(maxsize=None)
def _columns(conv, width):
    """`_window` of all output columns: the same for every strip of a layer, so computed once."""
    return _window(conv, width, 0, -(-width // conv.strides))


def _conv_of(layer):
    """(the convolution of a `Conv` or `UpConv` layer, the factor the layer enlarges its input by)."""
    return (layer.conv, 2) if isinstance(layer, UpConv) else (layer, 1)


def _output_size(layer, size):
    """The output height (or width) of `layer` for an input of `size`."""
    conv, scale = _conv_of(layer)
    return -(-scale * size // conv.strides)


def tile_shape(grid_height, grid_width, memory_mb):
    """(rows, cols) of attention tiles whose working set fits `memory_mb` megabytes.

    A tile of r x c positions computes scores for about (r + 4) * (c + 2) positions against all
    grid_height * grid_width background patches and keeps a few matrices of r * c by that many;
    among the tiles that fit, the one with the fewest extra positions per tile position wins.
    """
    columns = grid_height * grid_width
    best = (1, min(8, grid_width))
    best_cost = None
    for cols in sorted({grid_width, 256, 128, 64, 48, 32, 24, 16, 8}):
        if cols > grid_width:
            continue
        for rows in range(1, grid_height + 1):
            extended = (min(rows + 2, grid_height) + 2) * (cols + 2)
            need = columns * _BYTES * (2 * extended + 2 * (rows + 4) * cols + 5 * rows * cols)
            if need > memory_mb * 2 ** 20:
                break
            cost = extended / (rows * cols)
            if best_cost is None or cost < best_cost:
                best, best_cost = (rows, cols), cost
    return best


def _tile_plan(top, rows, left, cols, height, width):
    """Where a tile's fuse neighbours are: segment starts and, per neighbour step, their rows.

    Segments are runs of `cols` positions (row-major indices start .. start + cols - 1) whose
    first-pass fused scores the tile needs: the grid rows top - 1 .. top + rows at the tile's
    columns, and the wrap rows of column-major order (the last grid row one column to the left,
    for the tile's first grid row; the first grid row one column to the right, for its last).

    Returns (starts int32 [S], segment int32 [3, rows], exists float32 [3, rows, cols]): for
    step -1, 0, 1, the segment holding each tile row's column-major neighbour and whether that
    neighbour exists (it does not before the first or after the last position).
    """
    main = list(range(max(top - 1, 0), min(top + rows + 1, height)))
    starts = [y * width + left for y in main]
    wrap_top = wrap_bottom = None
    if top == 0:
        wrap_top = len(starts)
        starts.append((height - 1) * width + left - 1)
    if top + rows == height:
        wrap_bottom = len(starts)
        starts.append(left + 1)
    x = np.arange(left, left + cols)
    segment = np.zeros((3, rows), np.int32)
    exists = np.ones((3, rows, cols), np.float32)
    for i, y in enumerate(range(top, top + rows)):
        segment[1, i] = main.index(y)
        if y > 0:
            segment[0, i] = main.index(y - 1)
        else:
            segment[0, i] = wrap_top
            exists[0, i] = x >= 1
        if y < height - 1:
            segment[2, i] = main.index(y + 1)
        else:
            segment[2, i] = wrap_bottom
            exists[2, i] = x <= width - 2
    return np.array(starts, np.int32), segment, exists


def _cell_of(positions, width):
    """The row of `attention.background_cells` where the raw patch of grid `positions` (row-major
    indices into a grid `width` wide) starts."""
    return positions // width * (width + 1) + positions % width


def _cell_shifts(width):
    """How far the four cells of a raw patch are from its first, in `attention.col2im` order."""
    return [by * (width + 1) + bx for by in (0, 1) for bx in (0, 1)]


@tf.function
def _match_tile(queries_padded, inv_norm, cells, column_cells, columns, valid, rest, starts, segment,
                exists, rows, cols, ksize, rate, softmax_scale):
    """Fused scores, weights, best match and pasted patches of one tile (see the module docstring).

    Args:
        queries_padded: [h + 2p, w + 2p, C], the 1/rate features zero-padded by p = ksize // 2.
        inv_norm: [L], `attention.inverse_norms` of the background patches.
        cells: `attention.background_cells` of the features (batch removed).
        column_cells: int32 [n], `_cell_of` the kept columns.
        columns, valid, rest: `attention.kept_columns` of the usable patches (batch removed).
        starts, segment, exists: `_tile_plan`.
        rows, cols: the tile's size.
        ksize, rate, softmax_scale: the attention's (`attention.attention_matmul`).

    Returns:
        (contribution [rate (rows + 2), rate (cols + 2), C], the overlap-added pasted patches of
        the tile, whose first row and column are rate (top - 1) and rate (left - 1); index int32
        [rows * cols], the background position of largest weight).
    """
    pad = ksize // 2
    padded_shape = tf.shape(queries_padded)
    height, width = padded_shape[0] - 2 * pad, padded_shape[1] - 2 * pad
    channels = queries_padded.shape[-1]
    total = height * width
    extended = tf.reshape(starts[:, None] + tf.range(-1, cols + 1)[None, :], [-1])  # [m]
    inside = tf.cast((extended >= 0) & (extended < total), queries_padded.dtype)
    clipped = tf.clip_by_value(extended, 0, total - 1)
    qy, qx = clipped // width, clipped % width
    flat = tf.reshape(queries_padded, [-1, channels])
    kernel = tf.stack([tf.gather(flat, (qy + oy) * (width + 2 * pad) + qx + ox) for oy in range(ksize)
                       for ox in range(ksize)]) * inside[None, :, None]  # [k * k, m, C]
    kernel = tf.reshape(tf.transpose(kernel, [0, 2, 1]), [ksize, ksize, channels, -1])
    scores = tf.nn.conv2d(queries_padded[None], kernel, 1, "VALID")  # [1, h, w, m]
    scores = tf.reshape(scores, [total, -1]) * inv_norm[:, None]
    # First fuse pass: first[s, p] = S[s - 1, p - 1] + S[s, p] + S[s + 1, p + 1].
    scores = tf.pad(tf.reshape(scores, [total, -1, cols + 2]), [[1, 1], [0, 0], [0, 0]])
    first = (scores[:total, :, :cols] + scores[1:total + 1, :, 1:cols + 1]
             + scores[2:, :, 2:])
    first = tf.reshape(first, [total, -1])
    # Second pass, in column-major order, on the kept background columns only.
    fused = 0.0
    for step in (-1, 0, 1):
        row, row_exists = att.column_major_step(columns, step, height, width)
        picked = tf.gather(first, row) * tf.cast(row_exists, first.dtype)[:, None]
        picked = tf.gather(tf.reshape(picked, [tf.shape(row)[0], -1, cols]), segment[step + 1], axis=1)
        fused += picked * exists[step + 1][None]
    fused = tf.transpose(tf.reshape(fused, [-1, rows * cols]))  # [n, K]
    weights = att.masked_softmax(fused[None], valid[None, None], rest, softmax_scale)[0]
    index = att.best_index(weights[None], columns[None])[0]
    # weights @ raw patches: the weights spread over the cell grid, times the four shifted cells.
    size = height * (width + 1) - 1  # the last cell row's extra column holds no position
    spread = tf.scatter_nd(column_cells[:, None], tf.transpose(weights), [size, rows * cols])
    pasted = tf.concat([tf.matmul(spread, cells[shift:shift + size], transpose_a=True)
                        for shift in _cell_shifts(width)], -1)
    return _overlap_add(pasted, rows, cols, channels, rate), index


@tf.function
def _copy_tile(cells, positions, width, rows, cols, rate):
    """`_match_tile`'s contribution when every position of the tile pastes its own patch."""
    first = _cell_of(positions, width)
    pasted = tf.concat([tf.gather(cells, first + shift) for shift in _cell_shifts(width)], -1)
    return _overlap_add(pasted, rows, cols, cells.shape[-1] // rate ** 2, rate)


def _overlap_add(pasted, rows, cols, channels, rate):
    """Pasted patches [rows * cols, 4 rate**2 C] -> their overlap-added pixels around the tile."""
    pasted = tf.reshape(pasted, [1, rows, cols, 4 * rate ** 2 * channels])
    pasted = tf.pad(pasted, [[0, 0], [1, 1], [1, 1], [0, 0]])
    return att.col2im(pasted, rate, channels)[0]


def attention_tiles(features, mask, memory_mb=1024, mode="exact", progress=None, tile=None,
                    ksize=3, rate=2, softmax_scale=10.0):
    """Contextual attention of a feature map with itself, tile by tile, with the fuse step.

    Args:
        features: float32 [H, W, C] array, H and W multiples of `rate` (the generator's 1/4-size
            features).
        mask: float32 [H, W] NumPy array, 1 = hole.
        memory_mb: working-set budget of one tile (`tile_shape`).
        mode: "exact", or "hole_only" (see the module docstring).
        progress: optional callable(done, total), called after each tile.
        tile: (rows, cols) of the tiles instead of `tile_shape`'s choice.
        ksize, rate, softmax_scale: as `attention.attention_matmul` takes them (the defaults are
            DeepFill's); the fuse kernel is 3.

    Returns:
        (output float32 [H, W, C], offsets int32 [H/rate, W/rate, 2]) as
        `attention.attention_matmul` gives for `f = b = features`.
    """
    if mode not in ATTENTION_MODES:
        raise ValueError(f"attention mode must be one of {ATTENTION_MODES}, got {mode!r}")
    features = tf.convert_to_tensor(features, tf.float32)
    height, width, channels = features.shape
    if height % rate or width % rate:
        raise ValueError(f"features height and width must be multiples of rate={rate}, "
                         f"got {height}x{width}")
    small = downsample_nearest(features[None], rate)[0]
    grid_h, grid_w = height // rate, width // rate
    total = grid_h * grid_w
    pad = ksize // 2
    queries_padded = tf.pad(small, [[pad, pad], [pad, pad], [0, 0]])
    inv_norm = att.inverse_norms(small[None], ksize)[0]
    del small
    cells = att.background_cells(features[None], rate)[0]
    grid_mask = downsample_nearest(tf.constant(mask[None, :, :, None]), rate)
    usable = att.usable_patches(grid_mask, ksize)
    columns, valid, rest = att.kept_columns(usable)
    columns, valid = columns[0], valid[0, 0]
    column_cells = _cell_of(columns, grid_w)
    if mode == "hole_only":
        reach = 2 * HOLE_ONLY_REACH + 1
        near = tf.nn.max_pool2d(grid_mask, reach, 1, "SAME")[0, :, :, 0].numpy() > 0

    rows, cols = tile or tile_shape(grid_h, grid_w, memory_mb)
    # A border of one grid cell (`rate` pixels) around the image holds the tiles' overflow.
    output = np.zeros((rate * (grid_h + 2), rate * (grid_w + 2), channels), np.float32)
    index = np.zeros((grid_h, grid_w), np.int32)
    tiles = [(top, left) for top in range(0, grid_h, rows) for left in range(0, grid_w, cols)]
    for done, (top, left) in enumerate(tiles, 1):
        r, c = min(rows, grid_h - top), min(cols, grid_w - left)
        if mode == "hole_only" and not near[top:top + r, left:left + c].any():
            positions = (np.arange(top, top + r)[:, None] * grid_w + np.arange(left, left + c)).ravel()
            block = _copy_tile(cells, tf.constant(positions, tf.int32), grid_w, r, c, rate)
            index[top:top + r, left:left + c] = positions.reshape(r, c)
        else:
            starts, segment, exists = _tile_plan(top, r, left, c, grid_h, grid_w)
            block, best = _match_tile(queries_padded, inv_norm, cells, column_cells, columns, valid,
                                      rest, tf.constant(starts), tf.constant(segment),
                                      tf.constant(exists), r, c, ksize, rate, softmax_scale)
            index[top:top + r, left:left + c] = best.numpy().reshape(r, c)
        output[rate * top:rate * (top + r + 2), rate * left:rate * (left + c + 2)] += block.numpy()
        if progress is not None:
            progress(done, len(tiles))
    offsets = att.relative_offsets(tf.constant(index.reshape(1, total)), grid_h, grid_w)[0].numpy()
    return output[rate:-rate, rate:-rate] / 4.0, offsets


class StreamedGenerator(StageRunner):
    """Runs a built `Generator` on one large image with memory linear in its area.

    The network is `inpainting.model.generator.forward`, as in `Generator.call`; this is the stage runner
    it is run with: every stage in strips of rows, the attention in tiles (`attention_tiles`,
    with the generator's `ContextualAttention` settings), the attention branch of stage 2 before
    the other, and progress reported per layer and tile.

    Args:
        generator: a built `Generator` (v1 or v2, guided or not).
        memory_mb: budget of the attention tiles and, divided by 8, of the convolution strips.
        attention: "exact", or "hole_only" (approximate; see the module docstring).
        progress: optional callable(done, total, what) reporting the layers and attention tiles.

    Call arguments:
        image: float32 [H, W, 3] in [-1, 1]; mask: float32 [H, W] (1 = hole); sketch: for guided
        models, float32 [H, W] or None. H and W multiples of 8.

    Returns:
        (refined float32 [H, W, 3] in [-1, 1], the raw stage-2 output; flow float32
        [H / 4, W / 4, 3] in [-1, 1]), as `Generator.call` gives for one image.
    """

    # The attention branch first, so that its features are gone before the other branch's output.
    attention_first = True

    def __init__(self, generator, memory_mb=1024, attention="exact", progress=None):
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
        layer = generator.contextual_attention
        if not layer.fuse or layer.fuse_k != 3:
            raise ValueError("streamed contextual attention needs the fuse step with fuse_k=3, got "
                             f"fuse={layer.fuse}, fuse_k={layer.fuse_k}")
        super().__init__(generator)
        self.memory_mb = memory_mb
        self.attention = attention
        self.progress = progress
        self._convolve = {}

    def _report(self, done, total, what):
        if self.progress is not None:
            self.progress(done, total, what)

    def _rows(self, layer, source, in_size, first, stop):
        """Output rows [first, stop) of `layer`, whose input rows [a, b) `source(a, b)` gives."""
        conv, scale = _conv_of(layer)
        if conv.name not in self._convolve:
            self._convolve[conv.name] = tf.function(conv.convolve, reduce_retracing=True)
        height, width = (scale * n for n in in_size)
        cols, cols_inside = _columns(conv, width)
        rows, rows_inside = _window(conv, height, first, stop)
        # An enlarged map's row and column i are the input's i // scale.
        rows, cols = rows // scale, cols // scale
        low = rows.min()
        x = source(low, rows.max() + 1)[np.ix_(rows - low, cols)]
        if rows_inside is not None:
            x *= (rows_inside[:, None] & cols_inside[None, :])[:, :, None]
        return self._convolve[conv.name](tf.constant(x[None]))[0].numpy()

    def _chain(self, layers, inputs):
        """The layers applied in turn to the channel-concatenation of `inputs`, strip by strip.

        Only the last layer's output is stored whole: each strip of it computes the rows of the
        earlier layers it needs (a few rows more than the strip, recomputed by the next strip).
        """
        sizes = [tuple(inputs[0].shape[:2])]
        for layer in layers:
            sizes.append(tuple(_output_size(layer, n) for n in sizes[-1]))
        # Bytes per output row of the whole chain: every layer's input and output rows.
        channels = sum(a.shape[-1] for a in inputs)
        row_bytes = 0
        for layer, (h, w), (out_h, out_w) in zip(layers, sizes, sizes[1:]):
            filters = _conv_of(layer)[0].filters
            row_bytes += _BYTES * (h * w * channels + 3 * out_h * out_w * filters) / sizes[-1][0]
            channels = filters
        strip = max(1, int(self.memory_mb * 2 ** 20 / 8 // row_bytes))

        out_h = sizes[-1][0]
        out = None
        for first in range(0, out_h, strip):
            stop = min(first + strip, out_h)
            y = self._read(layers, sizes, inputs, len(layers), first, stop)
            if out is None:
                out = np.empty((out_h,) + y.shape[1:], np.float32)
            out[first:stop] = y
        return out

    def _read(self, layers, sizes, inputs, index, first, stop):
        """Rows [first, stop) of the output of layers[index - 1] in a chain (index 0: its inputs).

        A method and partials rather than nested closures: a closure that refers to itself is a
        reference cycle, which would keep each chain's inputs alive until the garbage collector
        happens to run.
        """
        if index == 0:
            return np.concatenate([np.asarray(x[first:stop]) for x in inputs], axis=-1)
        source = functools.partial(self._read, layers, sizes, inputs, index - 1)
        return self._rows(layers[index - 1], source, sizes[index - 1], first, stop)

    def concat(self, tensors):
        """The tensors themselves: `run` concatenates them strip by strip."""
        return list(tensors)

    def run(self, stage, x):
        """One stage on one image: a [1, H, W, C] tensor, or a list of them to concatenate.

        Layers reading more than the stage's smallest size are chained; the chains' inputs are
        read in strips, and only their outputs are stored whole.
        """
        layers = self.generator.stages[stage]
        inputs = [t[0] for t in (x if isinstance(x, list) else [x])]  # views, read a strip at a time
        heights = [inputs[0].shape[0]]  # heights[i]: the input height of layers[i]
        for layer in layers:
            heights.append(_output_size(layer, heights[-1]))
        chain = []
        for i, layer in enumerate(layers):
            if chain and heights[i] == min(heights):
                inputs = [self._chain(chain, inputs)]
                chain = []
                self._report(i, len(layers), stage)
            chain.append(layer)
        out = tf.convert_to_tensor(self._chain(chain, inputs)[None])
        self._report(len(layers), len(layers), stage)
        return out

    def attend(self, features, mask):
        """The generator's contextual attention in tiles (`attention_tiles`), with its settings."""
        layer = self.generator.contextual_attention
        small_mask = resize_nearest(mask, features.shape[1:3])[0, :, :, 0].numpy()
        output, offsets = attention_tiles(
            features[0], small_mask, self.memory_mb, self.attention,
            lambda done, total: self._report(done, total, "attention"),
            ksize=layer.ksize, rate=layer.rate, softmax_scale=layer.softmax_scale)
        offsets = tf.constant(offsets[None])
        return {"output": tf.convert_to_tensor(output[None]), "offsets": offsets,
                "flow": layer.flow(offsets)}

    def __call__(self, image, mask, sketch=None):
        inputs = [image[None], mask[None, :, :, None]]
        if self.generator.config.guided:
            inputs.append(np.zeros_like(inputs[1]) if sketch is None else sketch[None, :, :, None])
        out = forward(self.generator, self, inputs)
        return out["refined"][0].numpy(), out["flow"][0].numpy()
