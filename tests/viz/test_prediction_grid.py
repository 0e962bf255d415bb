"""The TensorBoard prediction grid: one picture per task output, the grid, the callback's guards."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_lightning.loggers import CSVLogger

from cvtasks.registry import TASKS
from cvtasks.viz.boxes import PREDICTION_COLOUR, TRUTH_COLOUR
from cvtasks.viz.prediction_grid import CELL_SIDE, PredictionGrid, draw_one, tile
from tests.cli.conftest import TINY_TASKS
from tests.conftest import TINY

GREY = Image.new("RGB", (32, 32), (128, 128, 128))
TASK = SimpleNamespace(class_names=["zero", "one"], skeleton=[(0, 1)])


def colours(picture: Image.Image) -> set[tuple[int, int, int]]:
    return {tuple(c) for c in np.asarray(picture).reshape(-1, 3).tolist()}


def test_class_tag_is_green_when_right_and_red_when_wrong():
    result = {"label": 1, "class_name": "one", "probability": 0.9}
    right = draw_one(GREY, result, {"label": torch.tensor(1)}, TASK)
    wrong = draw_one(GREY, result, {"label": torch.tensor(0)}, TASK)
    assert right.size == (CELL_SIDE, CELL_SIDE)  # 32 px enlarged 4x
    assert TRUTH_COLOUR in colours(right) and PREDICTION_COLOUR not in colours(right)
    assert PREDICTION_COLOUR in colours(wrong)


def test_box_prediction_and_true_box():
    result = {"label": 1, "class_name": "one", "probability": 0.8, "box": [4, 4, 20, 20]}
    truth = {"label": torch.tensor(1), "box": torch.tensor([0.5, 0.5, 0.5, 0.5])}
    picture = draw_one(GREY, result, truth, TASK)
    pixels = np.asarray(picture)
    assert tuple(pixels[32, 36]) == TRUTH_COLOUR  # true box left edge x = 8 px * 4
    assert tuple(pixels[40, 16]) == PREDICTION_COLOUR  # predicted box left edge x = 4 px * 4


def test_points_and_masks_and_nothing_to_draw():
    points = {"keypoints": [[8.0, 8.0], [24.0, 24.0]], "confidence": [0.9, 0.9]}
    assert draw_one(GREY, points, {}, TASK).size == (CELL_SIDE, CELL_SIDE)
    mask = torch.zeros(32, 32, dtype=torch.long)
    mask[:16] = 1
    panels = draw_one(GREY, {"mask": mask}, {"mask": mask}, TASK)
    assert panels.width == 3 * CELL_SIDE  # image, prediction, truth
    assert draw_one(GREY, {"embedding": [0.1, 0.2]}, {}, TASK) is None


def test_pair_is_drawn_with_its_verdict():
    result = {"distance": 0.2, "threshold": 0.5, "embedding": [0.0]}
    picture = draw_one(GREY, result, {"same": torch.tensor(1)}, TASK, other=GREY)
    assert picture.width > 2 * 32


def test_tile_lays_out_rows():
    grid = tile([GREY] * 5, columns=2)
    assert grid.size == (2 * 34, 3 * 34)
    with pytest.raises(ValueError):
        tile([], 2)


@pytest.mark.parametrize("name", ["classification", "segmentation", "landmarks"])
def test_grid_of_a_real_tasks_predictions(name):
    kwargs, data = TINY_TASKS[name]
    torch.manual_seed(0)
    task = TASKS.build(name, **kwargs).eval()
    side = data["image_size"]
    batch = {"image": torch.randn(3, 3, side, side), "skipped": torch.tensor(0)}
    if name == "segmentation":
        batch["mask"] = torch.randint(0, 4, (3, side, side))
    if name == "classification":
        batch["label"] = torch.tensor([0, 1, 2])
    grid = PredictionGrid(columns=2).draw(task, batch, data["mean"], data["std"])
    panels = 3 if name == "segmentation" else 1  # image, prediction, truth
    assert grid.width == 2 * (panels * CELL_SIDE + 2)
    assert grid.height >= 2 * (CELL_SIDE + 2)  # two rows (segmentation adds a legend)


def test_callback_does_nothing_without_tensorboard(tmp_path):
    def fail(*args):
        raise AssertionError("the model must not run without a TensorBoard logger")

    trainer = SimpleNamespace(
        loggers=[CSVLogger(tmp_path)], sanity_checking=False, is_global_zero=True
    )
    batch = {"image": torch.zeros(2, 3, 8, 8)}
    PredictionGrid().on_validation_batch_end(trainer, fail, None, batch, 0)


def test_tensorboard_run_writes_the_prediction_grid(run_train):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    run = run_train(*TINY, "logger=tensorboard").check()
    events = list((run.run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, list(run.run_dir.rglob("*"))
    acc = event_accumulator.EventAccumulator(str(events[0].parent), size_guidance={"images": 0})
    acc.Reload()
    assert "val/predictions" in acc.Tags()["images"]
    image = acc.Images("val/predictions")[-1]
    assert image.width >= CELL_SIDE and image.height >= CELL_SIDE
