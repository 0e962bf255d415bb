"""The built-in localization dataset: deterministic canvases, COCO files, read back."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvtasks.data.builtin.digits_localization import (
    COPIES,
    DIGITS_LOC_DIR,
    EMPTY_SHARE,
    SIZE,
    draw_canvas,
    write_digits_localization,
)
from cvtasks.data.cache import default_cache_dir
from cvtasks.data.coco_boxes import CocoBoxesDataModule
from cvtasks.data.coco_format import load_coco
from cvtasks.registry import DATASETS
from tests.data.conftest import ground_truth_ap

SOURCES = {"train": 1257, "val": 270, "test": 270}  # the digits dataset's stratified split


@pytest.fixture(scope="module")
def written() -> Path:
    # The session's temporary cache (tests/conftest.py), shared with the other tests that use it.
    return write_digits_localization(default_cache_dir() / "data")


def test_draw_canvas_is_deterministic_and_the_box_holds_the_ink():
    digit = np.zeros((8, 8))
    digit[2:6, 3:5] = 16  # a bar: ink in rows 2-5, columns 3-4 of the 8x8 cell
    first = draw_canvas(np.random.default_rng(5), digit)
    again = draw_canvas(np.random.default_rng(5), digit)
    np.testing.assert_array_equal(first[0], again[0])
    pixels, (x, y, w, h) = first
    assert pixels.shape == (SIZE, SIZE) and pixels.dtype == np.uint8
    assert min(x, y) >= 0 and x + w <= SIZE and y + h <= SIZE and min(w, h) > 0
    inside = np.zeros_like(pixels, dtype=bool)
    inside[y : y + h, x : x + w] = True
    assert pixels[inside].mean() > pixels[~inside].mean() + 40  # the box holds the bright ink
    empty, box = draw_canvas(np.random.default_rng(5), None)
    assert box is None and empty.shape == (SIZE, SIZE)


def test_layout_counts_and_nothing_share(written):
    assert written.name == DIGITS_LOC_DIR
    for split, sources in SOURCES.items():
        coco = load_coco(written / "annotations" / f"{split}.json")
        objects = sources * COPIES[split]
        assert len(coco.annotations) == objects
        empty = len(coco.images) - objects
        assert empty / len(coco.images) == pytest.approx(EMPTY_SHARE, abs=0.01)
        assert len(list((written / split).glob("*.png"))) == len(coco.images)
        assert [c["name"] for c in coco.categories.values()] == [str(d) for d in range(10)]
        counts = Counter(
            ann["category_id"] for anns in coco.annotations.values() for _, ann in anns
        )
        assert sorted(counts) == list(range(1, 11))


def test_boxes_lie_inside_and_files_match(written):
    data = json.loads((written / "annotations" / "val.json").read_text())
    for image in data["images"][:20]:
        with Image.open(written / image["file_name"]) as opened:
            assert opened.size == (SIZE, SIZE) and opened.mode == "L"
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        assert min(x, y) >= 0 and x + w <= SIZE and y + h <= SIZE and min(w, h) >= 4


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_cocoeval_scores_the_ground_truth_as_perfect(written, split):
    # image and annotation ids count from 1: COCOeval reads an id of 0 as "unmatched"
    path = written / "annotations" / f"{split}.json"
    data = json.loads(path.read_text())
    assert min(i["id"] for i in data["images"]) == 1
    assert min(a["id"] for a in data["annotations"]) == 1
    assert ground_truth_ap(path) == 1.0


def test_written_once(written):
    stamp = (written / "annotations" / "train.json").stat().st_mtime_ns
    assert write_digits_localization(written.parent) == written
    assert (written / "annotations" / "train.json").stat().st_mtime_ns == stamp


def test_read_back_by_the_coco_reader(written):
    module = DATASETS.build("digits_localization", batch_size=8, augment=[])
    assert isinstance(module, CocoBoxesDataModule)
    module.prepare_data()
    module.setup("fit")
    assert module.class_names == [str(d) for d in range(10)] and module.num_classes == 10
    assert len(module.splits["test"]) == round(SOURCES["test"] / (1 - EMPTY_SHARE))
    batch = next(iter(module.val_dataloader()))
    assert batch["image"].shape == (8, 3, SIZE, SIZE)
    assert batch["box"].min() >= 0 and batch["box"].max() <= 1
    assert set(batch["label"].tolist()) <= set(range(11))
