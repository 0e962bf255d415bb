"""The built-in detection dataset: deterministic canvases, boxes on the ink, COCO, read back."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from cvtasks.config import CONFIG_DIR
from cvtasks.data.builtin import digits_detection as detection
from cvtasks.data.builtin.digits_detection import (
    MAX_DIGITS,
    MAX_OVERLAP,
    SIDE,
    SIZE,
    dataset_dir,
    draw_canvas,
    overlap,
    write_digits_detection,
)
from cvtasks.data.builtin.digits_localization import split_digits
from cvtasks.data.coco_detection import CocoDetectionDataModule
from cvtasks.registry import DATASETS
from tests.data.conftest import ground_truth_ap

COUNTS = {"train": 40, "val": 12, "test": 12}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits_detection(tmp_path_factory.mktemp("det"), COUNTS)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.*"))}


def test_layout_counts_and_categories(written):
    assert written.name == dataset_dir(COUNTS) == "digits-det-v1-40-12-12"
    for split, count in COUNTS.items():
        data = json.loads((written / "annotations" / f"{split}.json").read_text())
        assert len(data["images"]) == count == len(list((written / split).glob("*.png")))
        assert [c["name"] for c in data["categories"]] == [str(d) for d in range(10)]
        per_image = Counter(a["image_id"] for a in data["annotations"])
        assert set(per_image) == {i["id"] for i in data["images"]}  # every canvas has a digit
        assert max(per_image.values()) <= MAX_DIGITS
    with Image.open(written / "train" / "00000.png") as image:
        assert image.size == (SIZE, SIZE) and image.mode == "L"


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_cocoeval_scores_the_ground_truth_as_perfect(written, split):
    path = written / "annotations" / f"{split}.json"
    data = json.loads(path.read_text())
    assert min(i["id"] for i in data["images"]) == 1
    assert sorted(a["id"] for a in data["annotations"]) == list(
        range(1, len(data["annotations"]) + 1)
    )
    assert ground_truth_ap(path) == 1.0


def test_every_box_is_the_tight_box_of_its_ink_and_overlaps_are_bounded():
    images, _, indices = split_digits()
    for seed in range(30):
        rng = np.random.default_rng(seed)
        digits = [images[i] for i in rng.choice(indices["train"], size=5)]
        pixels, boxes, pasted, ink = draw_canvas(rng, digits)
        assert pixels.shape == (SIZE, SIZE) and pasted[0] == 0 and len(boxes) == len(pasted)
        inside = np.zeros((SIZE, SIZE), dtype=bool)
        for x, y, w, h in boxes:
            assert min(x, y) >= 0 and x + w <= SIZE and y + h <= SIZE
            assert SIDE[0] // 2 <= max(w, h) <= SIDE[1]
            region = ink[y : y + h, x : x + w] >= 0.25
            # ink reaches every edge of the box: it is tight
            assert region[0].any() and region[-1].any() and region[:, 0].any()
            assert region[:, -1].any()
            inside[y : y + h, x : x + w] = True
        assert (ink[~inside] < 0.25).all()  # no ink outside every box
        # the pixels show it: ink is brighter than the background
        assert pixels[ink >= 0.5].mean() > pixels[~inside].mean() + 40
        for i, a in enumerate(boxes):
            assert all(overlap(a, b) <= MAX_OVERLAP for b in boxes[i + 1 :])


def test_overlap_is_the_covered_share_of_the_smaller_box():
    assert overlap([0, 0, 10, 10], [5, 0, 10, 10]) == 0.5
    assert overlap([0, 0, 10, 10], [8, 8, 2, 2]) == 1.0
    assert overlap([0, 0, 10, 10], [10, 0, 5, 5]) == 0.0  # touching


def test_each_split_draws_from_its_own_digits(tmp_path, monkeypatch):
    images, targets, indices = split_digits()
    assert not set(indices["train"]) & (set(indices["val"]) | set(indices["test"]))
    # give each split the digits of one class only: the written labels show which pool was used
    pools = {
        split: [i for i in indices[split] if targets[i] == digit]
        for split, digit in (("train", 3), ("val", 5), ("test", 8))
    }
    monkeypatch.setattr(detection, "split_digits", lambda: (images, targets, pools))
    folder = write_digits_detection(tmp_path, {"train": 6, "val": 3, "test": 3})
    for split, digit in (("train", 3), ("val", 5), ("test", 8)):
        data = json.loads((folder / "annotations" / f"{split}.json").read_text())
        assert {a["category_id"] for a in data["annotations"]} == {digit + 1}


def test_deterministic_and_prefix_stable(written, tmp_path):
    again = write_digits_detection(tmp_path / "again", COUNTS)
    assert _files(again) == _files(written)
    smaller = write_digits_detection(tmp_path / "small", {"train": 5, "val": 1, "test": 1})
    for name in ("00000.png", "00004.png"):
        assert (smaller / "train" / name).read_bytes() == (written / "train" / name).read_bytes()


def test_written_once(written):
    stamp = (written / "annotations" / "train.json").stat().st_mtime_ns
    assert write_digits_detection(written.parent, COUNTS) == written
    assert (written / "annotations" / "train.json").stat().st_mtime_ns == stamp


def test_read_back_by_the_coco_detection_reader(written):
    module = DATASETS.build(
        "digits_detection", root=str(written.parent), augment=[], batch_size=4, **_nums(COUNTS)
    )
    assert isinstance(module, CocoDetectionDataModule)
    module.prepare_data()
    module.setup("fit")
    assert module.class_names == [str(d) for d in range(10)]
    assert {s: len(v) for s, v in module.splits.items()} == COUNTS
    data = json.loads((written / "annotations" / "val.json").read_text())
    first = [a for a in data["annotations"] if a["image_id"] == 1]
    sample = module.splits["val"][0]
    assert sample.labels == tuple(a["category_id"] - 1 for a in first)  # label = digit
    batch = next(iter(module.val_dataloader()))
    assert batch["image"].shape == (4, 3, SIZE, SIZE)
    assert len(batch["boxes"][0]) == len(first)


def _nums(counts: dict[str, int]) -> dict[str, int]:
    return {f"num_{split}": count for split, count in counts.items()}


def test_shipped_config_builds(written):
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "data" / "digits_detection.yaml"))
    assert cfg.pop("name") == "digits_detection" and cfg["image_size"] == SIZE
    assert not any("Flip" in spec["name"] for spec in cfg["augment"])  # a mirrored digit is none
    module = DATASETS.build("digits_detection", **{**cfg, "root": str(written.parent)})
    assert module.counts == {"train": 2000, "val": 300, "test": 300}
    overridden = {**cfg, "root": str(written.parent), **_nums(COUNTS)}
    module = DATASETS.build("digits_detection", **overridden)
    module.setup("fit")
    assert len(module.splits["train"]) == COUNTS["train"]
