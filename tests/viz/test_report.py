"""The report base: it keeps the worst samples of every batch and draws them worst first."""

from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from cvtasks.viz.pairs import to_picture
from cvtasks.viz.report import Report, batch_sample
from cvtasks.viz.views import View

SIDE = 6  # side of each sample's picture; the grid adds 8 pixels of margin per cell


class ShadeView(View):
    """Pictures a result as a grey square whose shade is the sample's id."""

    def picture(self, image, result):
        return Image.new("RGB", (SIDE, SIDE), (result["id"],) * 3)


class WrongnessReport(Report):
    """Scores each sample by its ``wrong`` target."""

    def scores(self, outputs, batch):
        return batch["wrong"]


def predictor(view=ShadeView):
    """Predicts, for one image, its id: the value its pixels were filled with."""
    task = SimpleNamespace(view=view) if view else SimpleNamespace()
    return SimpleNamespace(task=task, predict=lambda b: [{"id": int(b["image"][0, 0, 0, 0])}])


def batch(ids, wrong):
    images = torch.stack([torch.full((3, 4, 4), float(i)) for i in ids])
    return {"image": images, "wrong": torch.tensor(wrong), "name": [f"s{i}" for i in ids]}


def cell_shades(grid, count, columns=4):
    cell = SIDE + 8
    return [
        grid.getpixel(((k % columns) * cell + 4, (k // columns) * cell + 4))[0]
        for k in range(count)
    ]


def test_the_worst_samples_of_all_batches_are_kept_worst_first():
    report = WrongnessReport(predictor(), [0.0] * 3, [1.0] * 3, keep=3)
    report.update(None, batch([10, 20, 30], [0.5, 0.9, 0.1]))
    report.update(None, batch([40, 50], [0.7, 0.2]))
    grid = report.worst_grid()
    wrong = {10: 0.5, 20: 0.9, 30: 0.1, 40: 0.7, 50: 0.2}
    expected = sorted(wrong, key=lambda i: -wrong[i])[:3]  # 20, 40, 10
    assert cell_shades(grid, 3) == expected
    assert grid.size == (3 * (SIDE + 8), SIDE + 8 + 18)  # one row of three captioned cells


def test_a_report_with_no_samples_draws_no_grid_and_no_charts():
    report = WrongnessReport(predictor(), [0.0] * 3, [1.0] * 3)
    assert report.worst_grid() is None and report.charts({}) == {}


def test_without_a_picture_from_the_view_the_input_image_is_shown():
    mean, std = [0.5] * 3, [0.25] * 3
    report = WrongnessReport(predictor(view=None), mean, std)
    sample = batch_sample(batch([0], [1.0]), 0)
    assert sample["name"] == "s0" and sample["image"].shape == (3, 4, 4)
    picture = report.picture(sample)
    assert np.array_equal(np.asarray(picture), np.asarray(to_picture(sample["image"], mean, std)))
    assert report.caption(sample, 0.25) == "score 0.250"
