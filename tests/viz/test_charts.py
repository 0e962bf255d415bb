"""Pillow charts of evaluation reports."""

import pytest
from PIL import Image

from cvtasks.viz.charts import bar_chart, confusion_chart, curves_chart, image_grid, line_chart


def test_confusion_chart_checks_its_shape_and_shades_the_diagonal():
    chart = confusion_chart([[5, 0], [1, 4]], ["a", "b"])
    assert chart.mode == "RGB" and chart.width > 100
    with pytest.raises(ValueError, match="2x2"):
        confusion_chart([[1, 2, 3], [1, 2, 3]], ["a", "b"])


def test_line_and_bar_charts():
    curve = line_chart([0, 0.5, 1], [0, 0.8, 1], "ROC", "FAR", "TAR", (0.5, 0.8, "t"), True)
    assert curve.size == (480, 380)
    assert any(c == (214, 39, 40) for _, c in curve.getcolors(1 << 20))  # the marked point
    with pytest.raises(ValueError, match="as many y as x"):
        line_chart([0, 1], [0], "t", "x", "y")
    bars = bar_chart({"bg": 0.9, "circle": None}, "IoU")
    assert bars.height == 320


def test_image_grid_places_every_picture():
    pictures = [Image.new("RGB", (10, 10), c) for c in ("red", "blue", "green")]
    grid = image_grid(pictures, columns=2, captions=["a", "b", "c"])
    assert grid.size == (36, 2 * (18 + 18))
    assert grid.getpixel((4, 4)) == (255, 0, 0) and grid.getpixel((22, 4)) == (0, 0, 255)
    with pytest.raises(ValueError):
        image_grid([])


def test_curves_chart_draws_each_curve_in_its_colour_and_grows_for_its_legend():
    xs = [0.0, 0.5, 1.0]
    curves = {"a": (xs, [1.0, 0.8, 0.2]), "b": (xs, [0.9, 0.5, 0.0]), "mean": (xs, [1, 0.6, 0.1])}
    colours = {"a": (255, 0, 0), "b": (0, 0, 255)}
    chart = curves_chart(curves, "PR", "recall", "precision", colours, bold="mean")
    assert chart.size == (480 + 150, 380)
    found = {c for _, c in chart.getcolors(1 << 20)}
    assert {(255, 0, 0), (0, 0, 255), (30, 30, 30)} <= found
    many = {f"class {k}": (xs, [0.5] * 3) for k in range(40)}
    assert curves_chart(many, "PR", "recall", "precision").height == 50 + 16 * 40
    with pytest.raises(ValueError, match="curve 'a' needs as many y as x"):
        curves_chart({"a": ([0, 1], [0])}, "t", "x", "y")
    with pytest.raises(ValueError, match="no curves"):
        curves_chart({}, "t", "x", "y")
