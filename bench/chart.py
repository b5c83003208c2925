"""Line charts drawn with OpenCV, for benchmark scripts on machines without a plotting library.

A figure is a grid of panels under a title and a legend. Each panel has its own axes (x from 0,
y fitted to the values with a margin, ticks at 1, 2 or 5 times a power of ten), curves of (x, y)
points with markers, and levels: horizontal lines across the whole panel (e.g. a baseline that
does not change). Values that are None or not finite are left out. `fills_grid` draws a
model's fills beside OpenCV's for bench/grid.py and bench/learn.py.
"""

import dataclasses
import math

import cv2
import numpy as np

from inpainting import files

FONT = cv2.FONT_HERSHEY_SIMPLEX
INK = (40, 40, 40)
GRID = (225, 225, 225)
BACKGROUND = (255, 255, 255)
FILL_COLUMNS = ("masked", "telea", "model", "original")
LABEL_HEIGHT = 18
# Panel margins in pixels: room for the y tick labels, the title, the x tick labels and label.
LEFT, RIGHT, TOP, BOTTOM = 62, 14, 26, 42
HEADER = 58  # the figure's title and legend


@dataclasses.dataclass
class Curve:
    """A line through (x, y) points, with a marker on each point; color is BGR."""

    label: str
    color: tuple
    points: list


@dataclasses.dataclass
class Level:
    """A horizontal line at y across the panel, solid or dashed; color is BGR."""

    label: str
    color: tuple
    y: float
    dashed: bool = False


@dataclasses.dataclass
class Panel:
    """One chart: a title above it, a label under its x axis, curves and levels."""

    title: str
    x_label: str
    curves: list = dataclasses.field(default_factory=list)
    levels: list = dataclasses.field(default_factory=list)


def finite(value):
    """Whether `value` is a finite number (None is not)."""
    return value is not None and math.isfinite(value)


def nice_ticks(low, high, count=5):
    """Tick values at multiples of 1, 2 or 5 times a power of ten in [low, high], about `count`.

    Returns:
        (ticks, step): the ticks in increasing order and their spacing.
    """
    span = high - low
    if not span > 0:
        return [low], 1.0
    raw = span / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = []
    value = first * step
    while value <= high + 1e-9 * span:
        ticks.append(float(f"{value:.12g}") if abs(value) >= 1e-12 * span else 0.0)
        value = (first + len(ticks)) * step
    return ticks, step


def tick_text(value, step):
    """A tick label with as many decimals as the tick spacing needs; 12k / 3.5M for large ones."""
    if abs(value) >= 10_000 and step >= 1000:
        for scale, suffix in ((1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                return f"{value / scale:.{max(0, -math.floor(math.log10(step / scale)))}f}{suffix}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{value:.{decimals}f}"


def _range(values, pad, start_at_zero=False):
    """(low, high) covering `values` with a margin of `pad` of the span on each side."""
    values = [v for v in values if finite(v)]
    if not values:
        return (0.0, 1.0)
    low, high = (0.0 if start_at_zero else min(values)), max(values)
    if high - low <= 0:
        half = abs(high) * 0.05 or 1.0
        return (low - half, high + half) if not start_at_zero else (0.0, high + 2 * half)
    margin = (high - low) * pad
    return (low if start_at_zero else low - margin, high + margin)


def _text(image, text, origin, scale=0.4, color=INK, align="left"):
    (width, height), _ = cv2.getTextSize(text, FONT, scale, 1)
    x, y = origin
    if align == "right":
        x -= width
    elif align == "center":
        x -= width // 2
    cv2.putText(image, text, (int(x), int(y)), FONT, scale, color, 1, cv2.LINE_AA)
    return width, height


def _dashed(image, start, end, color, thickness=1, dash=7, gap=5):
    (x0, y0), (x1, y1) = start, end
    length = math.hypot(x1 - x0, y1 - y0)
    position = 0.0
    while position < length:
        stop = min(position + dash, length)
        a = (round(x0 + (x1 - x0) * position / length), round(y0 + (y1 - y0) * position / length))
        b = (round(x0 + (x1 - x0) * stop / length), round(y0 + (y1 - y0) * stop / length))
        cv2.line(image, a, b, color, thickness, cv2.LINE_AA)
        position = stop + gap


def draw_panel(image, panel, box):
    """Draws `panel` into the region `box` = (left, top, width, height) of `image`."""
    left, top, width, height = box
    x0, y0 = left + LEFT, top + TOP
    x1, y1 = left + width - RIGHT, top + height - BOTTOM
    xs = [x for curve in panel.curves for x, y in curve.points if finite(x) and finite(y)]
    ys = [y for curve in panel.curves for _, y in curve.points if finite(y)]
    ys += [level.y for level in panel.levels if finite(level.y)]
    x_low, x_high = _range(xs, 0.04, start_at_zero=True)
    y_low, y_high = _range(ys, 0.08)

    def px(x):
        return round(x0 + (x - x_low) / (x_high - x_low) * (x1 - x0))

    def py(y):
        return round(y1 - (y - y_low) / (y_high - y_low) * (y1 - y0))

    _text(image, panel.title, (left + width // 2, top + 17), 0.45, align="center")
    ticks, step = nice_ticks(y_low, y_high)
    for tick in ticks:
        cv2.line(image, (x0, py(tick)), (x1, py(tick)), GRID, 1)
        _text(image, tick_text(tick, step), (x0 - 5, py(tick) + 4), align="right")
    ticks, step = nice_ticks(x_low, x_high)
    for tick in ticks:
        cv2.line(image, (px(tick), y0), (px(tick), y1), GRID, 1)
        _text(image, tick_text(tick, step), (px(tick), y1 + 15), align="center")
    _text(image, panel.x_label, ((x0 + x1) // 2, y1 + 33), align="center")
    cv2.rectangle(image, (x0, y0), (x1, y1), INK, 1)
    for level in panel.levels:
        if finite(level.y):
            line = _dashed if level.dashed else (lambda im, a, b, c, t: cv2.line(im, a, b, c, t, cv2.LINE_AA))
            line(image, (x0 + 1, py(level.y)), (x1 - 1, py(level.y)), level.color, 2)
    for curve in panel.curves:
        points = [(px(x), py(y)) for x, y in curve.points if finite(x) and finite(y)]
        if len(points) > 1:
            cv2.polylines(image, [np.array(points, np.int32)], False, curve.color, 2, cv2.LINE_AA)
        for point in points:
            cv2.circle(image, point, 3, curve.color, -1, cv2.LINE_AA)


def draw_figure(panels, columns, title, legend, panel_size=(380, 270)):
    """A figure of `panels` in rows of `columns`.

    Args:
        panels: `Panel`s, filled row by row.
        columns: panels per row.
        title: the text above everything.
        legend: [(label, BGR color, dashed)] shown under the title.
        panel_size: (width, height) of one panel in pixels.

    Returns:
        uint8 [H, W, 3] BGR image.
    """
    rows = max(1, math.ceil(len(panels) / columns))
    width, height = panel_size
    image = np.full((HEADER + rows * height, columns * width, 3), BACKGROUND, np.uint8)
    _text(image, title, (image.shape[1] // 2, 22), 0.55, align="center")
    x = 20
    for label, color, dashed in legend:
        if dashed:
            _dashed(image, (x, 43), (x + 30, 43), color, 2)
        else:
            cv2.line(image, (x, 43), (x + 30, 43), color, 2, cv2.LINE_AA)
        text_width, _ = _text(image, label, (x + 38, 47))
        x += 38 + text_width + 24
    for index, panel in enumerate(panels):
        row, column = divmod(index, columns)
        draw_panel(image, panel, (column * width, HEADER + row * height, width, height))
    return image


def fills_grid(runner, photos, kinds, scale=1):
    """A picture of a model's fills beside OpenCV Telea's, as uint8 BGR (for `write_png`): for
    each photo and kind of hole a row of FILL_COLUMNS (masked | telea | model | original), with a
    label row on top.

    Args:
        runner: an `inpainting.inference.runners` runner.
        photos: [(name, uint8 RGB [H, W, 3], {kind: mask [H, W], 1 = hole})].
        kinds: the kinds of holes to show, in order.
        scale: enlargement (nearest neighbour) for display.
    """
    from inpainting import classical, metrics

    rows = []
    for name, rgb, masks in photos:
        for kind in kinds:
            mask = masks[kind]
            masked = np.where(mask[:, :, None] > 0.5, np.uint8(255), rgb)
            telea = metrics.compose(rgb, classical.inpaint(rgb, mask, "telea"), mask)
            model = metrics.compose(rgb, runner.run(rgb, mask, name).filled, mask)
            rows.append(np.concatenate([masked, telea, model, rgb], 1))
    grid = cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR)
    if scale > 1:
        grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    width = grid.shape[1] // len(FILL_COLUMNS)
    labels = np.full((LABEL_HEIGHT, grid.shape[1], 3), 255, np.uint8)
    for index, column in enumerate(FILL_COLUMNS):
        cv2.putText(labels, column, (index * width + 4, LABEL_HEIGHT - 5), FONT, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.concatenate([labels, grid], 0)


def write_png(path, image):
    """Writes `image` as PNG to `path` through a temporary file renamed into place."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the figure")
    files.write_bytes(path, encoded.tobytes())
