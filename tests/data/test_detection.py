"""The detection data core: boxes through resize, crop and visibility, list batches, splits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cvtasks.data.detection import (
    DetectionDataModule,
    DetectionSample,
    Splits,
)
from cvtasks.data.images import BadImageError
from tests.data.conftest import write_png

NAMES = ["a", "b", "c", "d", "e"]


class Listed(DetectionDataModule):
    """A detection reader over samples given in code."""

    def __init__(self, splits: Splits, **kwargs) -> None:
        self.given = splits
        super().__init__(**kwargs)

    def read_splits(self) -> tuple[list[str], Splits]:
        return list(NAMES), self.carve(self.given)


def sample(path: Path, objects=(), size=(40, 80)) -> DetectionSample:
    """``objects``: ``(box, label, crowd)`` triples; the image is ``size`` (height, width)."""
    if not path.exists():
        write_png(path, value=90, size=size)
    return DetectionSample(
        str(path),
        tuple(tuple(float(v) for v in box) for box, _, _ in objects),
        tuple(label for _, label, _ in objects),
        tuple(crowd for _, _, crowd in objects),
        size,
        source=path.name,
    )


def build(splits: Splits, **kwargs) -> Listed:
    kwargs = {"image_size": 40, "batch_size": 4, "augment": [], **kwargs}
    module = Listed(splits, **kwargs)
    module.setup("fit")
    return module


def test_resize_scales_boxes_into_input_pixels(tmp_path):
    # an 80x40 (width x height) file read at 40x20: every coordinate halves
    objects = [((10, 8, 30, 20), 2, False), ((60, 30, 80, 40), 0, True)]
    one = sample(tmp_path / "a.png", objects)
    module = build({"train": [one], "val": [one], "test": [one]}, image_size=[20, 40])
    item = module.val_dataset[0]
    assert item["image"].shape == (3, 20, 40)
    torch.testing.assert_close(item["boxes"], torch.tensor([[5.0, 4, 15, 10], [30, 15, 40, 20]]))
    assert item["labels"].tolist() == [2, 0] and item["labels"].dtype == torch.int64
    assert item["crowd"].tolist() == [False, True] and item["crowd"].dtype == torch.bool
    assert item["orig_size"].tolist() == [40, 80]


CROP = [{"name": "Crop", "x_min": 20, "y_min": 0, "x_max": 60, "y_max": 40}]
OBJECTS = [
    ((10, 8, 30, 20), 2, False),  # half inside: (20, 8, 30, 20) -> (0, 8, 10, 20)
    ((60, 30, 80, 40), 0, False),  # wholly outside: dropped
    ((50, 10, 70, 30), 1, True),  # half inside: (50, 10, 60, 30) -> (30, 10, 40, 30)
    ((14, 0, 24, 10), 3, False),  # 0.4 inside: (20, 0, 24, 10) -> (0, 0, 4, 10)
    ((0, 30, 22, 40), 4, False),  # 2/22 inside: under any threshold used here
]


def test_a_crop_moves_clips_and_drops_boxes_under_min_visibility(tmp_path):
    one = sample(tmp_path / "a.png", OBJECTS)
    module = build({"train": [one], "val": [one], "test": [one]}, augment=CROP)
    item = module.train_dataset[0]
    assert item["image"].shape == (3, 40, 40)
    expected = torch.tensor([[0.0, 8, 10, 20], [30, 10, 40, 30], [0, 0, 4, 10]])
    torch.testing.assert_close(item["boxes"], expected)
    assert item["labels"].tolist() == [2, 1, 3]
    assert item["crowd"].tolist() == [False, True, False]  # the flag travels with its box


def test_min_visibility_sets_which_partial_boxes_stay(tmp_path):
    one = sample(tmp_path / "a.png", OBJECTS)
    splits = {"train": [one], "val": [one], "test": [one]}
    strict = build(splits, augment=CROP, min_visibility=0.45).train_dataset[0]
    assert strict["labels"].tolist() == [2, 1]  # the box 0.4 in view is gone
    loose = build(splits, augment=CROP, min_visibility=0.05).train_dataset[0]
    assert loose["labels"].tolist() == [2, 1, 3, 4]
    with pytest.raises(ValueError, match=r"data.min_visibility must be in \[0, 1\], got 1.5"):
        build(splits, min_visibility=1.5)


def test_a_batch_keeps_per_image_lists_and_negatives(tmp_path):
    full = sample(tmp_path / "a.png", OBJECTS[:1])
    empty = sample(tmp_path / "b.png", [])
    module = build({"train": [full, empty], "val": [full, empty], "test": [full]})
    batch = next(iter(module.val_dataloader()))
    assert batch["image"].shape == (2, 3, 40, 40)
    assert [b.shape for b in batch["boxes"]] == [(1, 4), (0, 4)]
    assert [b.tolist() for b in batch["labels"]] == [[2], []]
    assert batch["labels"][1].dtype == torch.int64 and batch["crowd"][1].dtype == torch.bool
    assert batch["orig_size"].tolist() == [[40, 80], [40, 80]]
    assert batch["index"].tolist() == [0, 1] and batch["skipped"].item() == 0


def test_a_batch_of_skipped_images_is_the_empty_batch(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    broken = DetectionSample(str(bad), ((1.0, 1.0, 5.0, 5.0),), (0,), (False,), (0, 0), "bad")
    module = build({"train": [broken], "val": [broken], "test": [broken]}, on_bad_image="skip")
    with pytest.warns(UserWarning, match="bad.png"):
        batch = next(iter(module.val_dataloader()))
    assert batch["image"].shape == (0, 3, 40, 40)
    assert batch["boxes"] == [] and batch["labels"] == [] and batch["crowd"] == []
    assert batch["orig_size"].shape == (0, 2) and batch["skipped"].item() == 1


def test_missing_splits_are_carved_with_negatives_apart(tmp_path):
    positives = [sample(tmp_path / f"p{i}.png", [((1, 1, 9, 9), i % 2, False)]) for i in range(10)]
    negatives = [sample(tmp_path / f"n{i}.png", []) for i in range(10)]
    module = build({"train": positives + negatives}, val_fraction=0.2, test_fraction=0.2)
    sizes = {split: len(items) for split, items in module.splits.items()}
    assert sizes == {"train": 12, "val": 4, "test": 4}
    for split in ("val", "test"):
        assert sum(not s.boxes for s in module.splits[split]) == 2  # a share of the negatives
    paths = [s.path for items in module.splits.values() for s in items]
    assert len(paths) == len(set(paths)) == 20


def test_the_declared_size_is_checked_unless_unknown(tmp_path):
    path = tmp_path / "a.png"
    wrong = sample(path, [((1, 1, 5, 5), 0, False)], size=(40, 80))._replace(size=(10, 10))
    unknown = wrong._replace(size=(0, 0))
    module = build({"train": [wrong], "val": [unknown], "test": [unknown]})
    with pytest.raises(BadImageError, match="it is 80x40 but its annotation says 10x10"):
        module.train_dataset[0]
    assert module.val_dataset[0]["boxes"].shape == (1, 4)
