"""Charts drawn with Pillow alone: a confusion matrix, bars, curves, a grid of pictures.

Evaluation reports need a handful of plain charts; Pillow (already a dependency) draws them, so
cvtasks does not pull in matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

INK = (30, 30, 30)
GRID = (225, 225, 225)
LINE = (31, 119, 180)
MARK = (214, 39, 40)
BAR = (44, 160, 44)
MARGIN = 60


def _font(size: int = 12) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont) -> float:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return right - left


def _axes(size: tuple[int, int], title: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    draw.text(((size[0] - _text_width(draw, title, font)) / 2, 8), title, fill=INK, font=font)
    return canvas, draw


def confusion_chart(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str = "confusion matrix"
) -> Image.Image:
    """A confusion matrix as a heat map with counts: rows true classes, columns predicted.

    Each row is shaded by its share of that row's total, so small classes read as well as big ones.
    """
    n = len(matrix)
    if any(len(row) != n for row in matrix) or len(labels) != n:
        raise ValueError(f"a confusion matrix must be {len(labels)}x{len(labels)}")
    cell = max(22, min(60, 600 // max(1, n)))
    left, top = 110, 60
    canvas, draw = _axes((left + cell * n + 20, top + cell * n + 50), title)
    font = _font(max(9, min(13, cell // 3)))
    for i, row in enumerate(matrix):
        total = max(1, sum(row))
        for j, count in enumerate(row):
            share = count / total
            shade = (int(255 - 200 * share), int(255 - 120 * share), 255)
            x, y = left + j * cell, top + i * cell
            draw.rectangle([x, y, x + cell, y + cell], fill=shade, outline=GRID)
            text = str(int(count))
            colour = "white" if share > 0.6 else INK
            w = _text_width(draw, text, font)
            draw.text((x + (cell - w) / 2, y + cell / 2 - 6), text, fill=colour, font=font)
        draw.text((4, top + i * cell + cell / 2 - 6), str(labels[i])[:14], fill=INK, font=font)
    for j, label in enumerate(labels):
        draw.text((left + j * cell + 2, top - 16), str(label)[:5], fill=INK, font=font)
    draw.text((left, top + cell * n + 8), "columns: predicted, rows: true", fill=INK, font=font)
    return canvas


def bar_chart(
    values: Mapping[str, float | None], title: str, ylabel: str = "", ymax: float = 1.0
) -> Image.Image:
    """Vertical bars of ``values`` (``None`` is drawn as "n/a"), on a scale from 0 to ``ymax``."""
    names = list(values)
    width = max(360, 70 * len(names) + 2 * MARGIN)
    height = 320
    canvas, draw = _axes((width, height), title)
    font = _font(11)
    bottom, plot_h = height - 50, height - 100
    _y_grid(draw, MARGIN, bottom, width - 20, plot_h, ymax, font)
    step = (width - MARGIN - 20) / max(1, len(names))
    for k, name in enumerate(names):
        x = MARGIN + k * step + step * 0.15
        value = values[name]
        if value is None:
            draw.text((x, bottom - 14), "n/a", fill=INK, font=font)
        else:
            top = bottom - plot_h * max(0.0, min(1.0, value / ymax))
            draw.rectangle([x, top, x + step * 0.7, bottom], fill=BAR)
            draw.text((x, top - 14), f"{value:.2f}", fill=INK, font=font)
        draw.text((x, bottom + 6), name[:10], fill=INK, font=font)
    draw.text((4, 30), ylabel, fill=INK, font=font)
    return canvas


def _y_grid(
    draw: ImageDraw.ImageDraw,
    left: float,
    bottom: float,
    right: float,
    plot_h: float,
    ymax: float,
    font: ImageFont.ImageFont,
) -> None:
    for k in range(6):
        y = bottom - plot_h * k / 5
        draw.line([left, y, right, y], fill=GRID)
        draw.text((left - 36, y - 6), f"{ymax * k / 5:.2f}", fill=INK, font=font)
    draw.line([left, bottom, right, bottom], fill=INK)
    draw.line([left, bottom, left, bottom - plot_h], fill=INK)


def line_chart(
    xs: Sequence[float],
    ys: Sequence[float],
    title: str,
    xlabel: str,
    ylabel: str,
    mark: tuple[float, float, str] | None = None,
    diagonal: bool = False,
) -> Image.Image:
    """One curve ``ys(xs)`` on ``[min x, max x] x [0, 1]``, optionally with a marked point.

    Args:
        xs: x values (increasing or not; drawn in the given order).
        ys: y values in [0, 1].
        title: chart title.
        xlabel: x axis label.
        ylabel: y axis label.
        mark: ``(x, y, label)`` of a point to mark (e.g. the chosen threshold on a ROC curve).
        diagonal: draw the chance line ``y = x`` (ROC curves).
    """
    if len(xs) != len(ys) or not xs:
        raise ValueError(f"need as many y as x values (got {len(xs)} and {len(ys)})")
    width, height = 480, 380
    canvas, draw = _axes((width, height), title)
    font = _font(11)
    left, right, bottom = MARGIN, width - 20, height - 50
    plot_w, plot_h = right - left, height - 100
    lo, hi = min(xs), max(xs)
    span = (hi - lo) or 1.0
    _y_grid(draw, left, bottom, right, plot_h, 1.0, font)

    def at(x: float, y: float) -> tuple[float, float]:
        return left + plot_w * (x - lo) / span, bottom - plot_h * max(0.0, min(1.0, y))

    for k in range(5):
        x = lo + span * k / 4
        draw.text((at(x, 0)[0] - 10, bottom + 6), f"{x:.2g}", fill=INK, font=font)
    if diagonal:
        draw.line([at(lo, 0), at(hi, 1)], fill=GRID, width=2)
    draw.line([at(x, y) for x, y in zip(xs, ys)], fill=LINE, width=2)
    if mark is not None:
        x, y = at(mark[0], mark[1])
        draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=MARK)
        draw.text((x + 8, y + 4), mark[2], fill=MARK, font=font)
    draw.text(((width - _text_width(draw, xlabel, font)) / 2, height - 22), xlabel, fill=INK)
    draw.text((4, 30), ylabel, fill=INK, font=font)
    return canvas


def curves_chart(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    colours: Mapping[str, tuple[int, int, int]] | None = None,
    bold: str | None = None,
) -> Image.Image:
    """Several curves ``name: (xs, ys)`` on ``[0, 1] x [0, 1]`` with a legend at the right.

    Args:
        curves: each curve's x and y values in [0, 1], by legend name, drawn in that order.
        title: chart title.
        xlabel: x axis label.
        ylabel: y axis label.
        colours: each curve's colour (default: all in the chart's line colour).
        bold: the name of a curve drawn thick and dark on top (e.g. a mean over the others).
    """
    if not curves:
        raise ValueError("no curves to draw")
    for name, (xs, ys) in curves.items():
        if len(xs) != len(ys) or not xs:
            raise ValueError(f"curve {name!r} needs as many y as x values ({len(xs)}, {len(ys)})")
    legend_w, width, height = 150, 480, 380
    # the legend lists every curve: many classes make the canvas taller, not the plot
    canvas, draw = _axes((width + legend_w, max(height, 50 + 16 * len(curves))), title)
    font = _font(11)
    left, right, bottom = MARGIN, width - 20, height - 50
    plot_w, plot_h = right - left, height - 100
    _y_grid(draw, left, bottom, right, plot_h, 1.0, font)

    def at(x: float, y: float) -> tuple[float, float]:
        clip = max(0.0, min(1.0, x)), max(0.0, min(1.0, y))
        return left + plot_w * clip[0], bottom - plot_h * clip[1]

    for k in range(5):
        draw.text((at(k / 4, 0)[0] - 10, bottom + 6), f"{k / 4:.2g}", fill=INK, font=font)
    order = [name for name in curves if name != bold] + ([bold] if bold in curves else [])
    for row, name in enumerate(order):
        xs, ys = curves[name]
        colour = INK if name == bold else (colours or {}).get(name, LINE)
        line_w = 3 if name == bold else 2
        draw.line([at(x, y) for x, y in zip(xs, ys)], fill=colour, width=line_w)
        y = 40 + 16 * row
        draw.line([width, y + 6, width + 18, y + 6], fill=colour, width=line_w)
        draw.text((width + 24, y), str(name)[:18], fill=INK, font=font)
    draw.text(((width - _text_width(draw, xlabel, font)) / 2, height - 22), xlabel, fill=INK)
    draw.text((4, 30), ylabel, fill=INK, font=font)
    return canvas


def image_grid(
    images: Sequence[Image.Image], columns: int = 4, captions: Sequence[str] | None = None
) -> Image.Image:
    """Pictures in rows of ``columns`` cells (each cell as big as the largest picture).

    Args:
        images: the pictures.
        columns: cells per row.
        captions: a line of text under each picture, or ``None``.
    """
    if not images:
        raise ValueError("no pictures to arrange")
    cell_w = max(p.width for p in images) + 8
    text_h = 18 if captions else 0
    cell_h = max(p.height for p in images) + 8 + text_h
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    canvas = Image.new("RGB", (cell_w * columns, cell_h * rows), "white")
    draw = ImageDraw.Draw(canvas)
    for k, picture in enumerate(images):
        x, y = (k % columns) * cell_w + 4, (k // columns) * cell_h + 4
        canvas.paste(picture, (x, y))
        if captions:
            draw.text((x, y + picture.height + 2), captions[k], fill=INK, font=_font(11))
    return canvas
