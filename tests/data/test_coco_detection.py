"""The COCO detection reader: every box, crowd, negatives, category ids, layouts, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from cvtasks.data.annotations import AnnotationError, AnnotationWarning
from cvtasks.data.coco_detection import CocoDetectionDataModule
from cvtasks.registry import DATASETS

CATEGORIES = [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 12, "name": "owl"}]


def write_coco(folder: Path, images: list[list], name: str = "ann.json", prefix: str = "") -> Path:
    """``images[i]``: ``(category, bbox, iscrowd)`` triples of image ``img<i>.png`` (40x30).

    The PNGs go to ``folder``; ``file_name`` is ``prefix + img<i>.png``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    entries, annotations = [], []
    for i, objects in enumerate(images):
        Image.new("RGB", (40, 30), (10 * i, 0, 0)).save(folder / f"img{i}.png")
        entries.append({"id": i + 1, "file_name": f"{prefix}img{i}.png", "width": 40, "height": 30})
        for category, bbox, crowd in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": category,
                    "bbox": bbox,
                    "iscrowd": crowd,
                }
            )
    path = folder / name
    data = {"images": entries, "annotations": annotations, "categories": CATEGORIES}
    path.write_text(json.dumps(data))
    return path


def build(root: Path, annotations=None, **kwargs) -> CocoDetectionDataModule:
    kwargs = {"image_size": 20, "batch_size": 4, "augment": [], **kwargs}
    module = DATASETS.build("coco_detection", root=str(root), annotations=annotations, **kwargs)
    module.setup("fit")
    return module


IMAGES = [
    [(3, [4, 6, 8, 12], 0), (7, [20, 0, 20, 30], 0), (12, [0, 0, 10, 10], 1)],
    [],  # a negative
    [(12, [10, 10, 5, 5], 0)],
]


def test_every_box_crowd_and_negatives_with_ids_in_order(tmp_path):
    write_coco(tmp_path, IMAGES)
    module = build(tmp_path, {"train": "ann.json", "val": "ann.json", "test": "ann.json"})
    # ids 3, 7, 12 -> labels 0, 1, 2
    assert module.class_names == ["dog", "cat", "owl"] and module.num_classes == 3
    first, negative, last = module.splits["val"]
    assert first.boxes == ((4.0, 6.0, 12.0, 18.0), (20.0, 0.0, 40.0, 30.0), (0.0, 0.0, 10.0, 10.0))
    assert first.labels == (0, 1, 2) and first.crowd == (False, False, True)
    assert first.size == (30, 40) and first.source.endswith("ann.json: images[0]")
    assert negative.boxes == () and negative.labels == () and negative.crowd == ()
    assert last.labels == (2,)
    batch = next(iter(module.val_dataloader()))
    # 40x30 read at 20x20: x halves, y scales by 2/3
    torch.testing.assert_close(batch["boxes"][0][0], torch.tensor([2.0, 4.0, 6.0, 12.0]))
    assert [b.tolist() for b in batch["labels"]] == [[0, 1, 2], [], [2]]
    assert batch["crowd"][0].tolist() == [False, False, True]


def test_one_file_is_carved(tmp_path):
    write_coco(tmp_path, [[(3, [1, 1, 5, 5], 0)]] * 10 + [[]] * 10)
    module = build(tmp_path, "ann.json", val_fraction=0.2, test_fraction=0.2)
    assert {s: len(v) for s, v in module.splits.items()} == {"train": 12, "val": 4, "test": 4}


def write_export(root: Path) -> None:
    """A labelling tool's export: per-split folders, each with its images and its JSON."""
    for split in ("train", "valid", "test"):
        write_coco(root / split, IMAGES, name="_annotations.coco.json")
    for json_file in root.glob("*/_annotations.coco.json"):
        data = json.loads(json_file.read_text())
        # the grouping category such exports carry: a supercategory no annotation uses
        data["categories"] = [{"id": 0, "name": "animals", "supercategory": "none"}] + [
            {**c, "supercategory": "animals"} for c in CATEGORIES
        ]
        json_file.write_text(json.dumps(data))


def test_the_split_folder_export_is_found_and_read(tmp_path):
    write_export(tmp_path)
    module = build(tmp_path)
    assert module.class_names == ["dog", "cat", "owl"]  # the grouping category is no class
    assert set(module.annotations) == {"train", "val", "test"}
    for split in ("train", "val", "test"):
        folder = "valid" if split == "val" else split
        paths = [Path(s.path) for s in module.splits[split]]
        assert paths == [tmp_path / folder / f"img{i}.png" for i in range(3)]
        assert module.splits[split][0].labels == (0, 1, 2)
    assert next(iter(module.test_dataloader()))["image"].shape == (3, 3, 20, 20)


def test_without_files_or_export_the_error_says_both_ways(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        DATASETS.build("coco_detection", root=str(tmp_path))
    message = str(err.value)
    assert f"{tmp_path / 'train' / '_annotations.coco.json'} does not exist" in message
    assert "data.annotations=<file.json>" in message and "valid/" in message


def test_layout_options_conflicting_with_annotations_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"data.layout=split_folders reads root/<split>/_annot"):
        DATASETS.build(
            "coco_detection", root=str(tmp_path), annotations="a.json", layout="split_folders"
        )
    with pytest.raises(ValueError, match=r"data.layout=files needs data.annotations=<file.json>"):
        DATASETS.build("coco_detection", root=str(tmp_path), layout="files")
    with pytest.raises(ValueError, match=r"data.layout must be one of 'auto', 'files'"):
        DATASETS.build("coco_detection", root=str(tmp_path), layout="folders")


def test_a_file_name_missing_everywhere_names_both_places(tmp_path):
    path = write_coco(tmp_path / "labels", IMAGES[:1])
    (tmp_path / "labels" / "img0.png").unlink()
    with pytest.raises(AnnotationError) as err:
        build(tmp_path, "labels/ann.json")
    message = str(err.value)
    assert f"{path}: images[0].file_name: 'img0.png' does not exist" in message
    assert (
        str(tmp_path / "img0.png") in message and str(tmp_path / "labels" / "img0.png") in message
    )


@pytest.mark.parametrize(
    ("bad", "field", "why"),
    [
        ((3, [30, 5, 20, 10], 0), "annotations[1].bbox", "outside"),
        ((3, [5, 5, 0, 4], 0), "annotations[1].bbox", "<= 0"),
        ((99, [5, 5, 4, 4], 0), "annotations[1].category_id", "99 names no entry of 'categories'"),
    ],
)
def test_a_bad_box_names_file_and_field_or_is_skipped_and_counted(tmp_path, bad, field, why):
    path = write_coco(tmp_path, [[(3, [1, 1, 4, 4], 0), bad, (7, [2, 2, 6, 6], 0)], []])
    with pytest.raises(AnnotationError) as err:
        build(tmp_path, "ann.json", val_fraction=0, test_fraction=0)
    message = str(err.value)
    assert message.startswith(f"{path}: {field}") and why in message
    assert "data.on_bad_annotation=skip to skip such boxes" in message
    with pytest.warns(AnnotationWarning) as caught:
        module = build(tmp_path, "ann.json", on_bad_annotation="skip", val_fraction=0.5)
    assert len(caught) == 1  # one summary line
    assert "skipped 1 bad annotation(s)" in str(caught[0].message) and field in str(
        caught[0].message
    )
    assert module.skipped_annotations == {"train": 1}
    kept = next(s for items in module.splits.values() for s in items if s.boxes)
    assert kept.labels == (0, 1)  # the image stays with its good boxes


def test_splits_with_different_categories_are_refused(tmp_path):
    write_coco(tmp_path, IMAGES, name="train.json")
    val = write_coco(tmp_path, IMAGES, name="val.json")
    data = json.loads(val.read_text())
    data["categories"][0]["name"] = "lion"
    val.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"val.json: 'categories' differ from those of"):
        build(tmp_path, {"train": "train.json", "val": "val.json"})


def test_the_shipped_config_composes(compose_train, tmp_path):
    from omegaconf import OmegaConf

    write_export(tmp_path)
    cfg = compose_train("data=coco_detection", f"data.root={tmp_path}", "data.image_size=32")
    options = OmegaConf.to_container(cfg.data, resolve=True)
    module = DATASETS.build(options.pop("name"), **{**options, "num_workers": 0})
    module.setup("fit")
    assert module.num_classes == 3 and len(module.splits["val"]) == 3
