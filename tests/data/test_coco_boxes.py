"""The COCO boxes reader on small files written here, its bad-input policies and augmentations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cvtasks.data.annotations import AnnotationError, AnnotationWarning
from cvtasks.data.coco_format import load_coco
from cvtasks.data.datamodule import DropBadSamples
from cvtasks.data.images import BadImageError
from cvtasks.data.scan import DuplicateFileError
from cvtasks.registry import DATASETS
from tests.data.conftest import deadline, make_fifo

CATEGORIES = [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}]  # labels: dog 1, cat 2


def write_coco(root: Path, boxes: list[list], name: str = "ann.json", size=(40, 30)) -> Path:
    """Images ``img<i>.png`` (``size`` = width, height); ``boxes[i]``: ``(category, bbox)`` list."""
    width, height = size
    images, annotations = [], []
    for i, objects in enumerate(boxes):
        file_name = f"img{i}.png"
        if not (root / file_name).exists():
            Image.new("RGB", (width, height), (10 * i, 0, 0)).save(root / file_name)
        images.append({"id": 100 + i, "file_name": file_name, "width": width, "height": height})
        for category, bbox in objects:
            annotations.append(
                {"id": len(annotations), "image_id": 100 + i, "category_id": category, "bbox": bbox}
            )
    path = root / name
    data = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    path.write_text(json.dumps(data))
    return path


def build(root: Path, annotations, **kwargs):
    kwargs = {"image_size": 16, "batch_size": 4, "augment": [], **kwargs}
    module = DATASETS.build("coco_boxes", root=str(root), annotations=annotations, **kwargs)
    module.setup("fit")
    return module


def test_reads_labels_boxes_and_nothing(tmp_path):
    boxes = [[(3, [4, 6, 8, 12])], [], [(7, [0, 0, 40, 30])]]
    write_coco(tmp_path, boxes)
    module = build(tmp_path, {"train": "ann.json", "val": "ann.json", "test": "ann.json"})
    assert module.class_names == ["dog", "cat"] and module.num_classes == 2
    samples = module.splits["val"]
    assert [s.label for s in samples] == [1, 0, 2]
    assert samples[0].box == (4.0, 6.0, 12.0, 18.0) and samples[1].box is None
    batch = next(iter(module.val_dataloader()))
    assert batch["label"].tolist() == [1, 0, 2]
    # (cx, cy, w, h) normalized: x 4..12 of 40, y 6..18 of 30
    torch.testing.assert_close(batch["box"][0], torch.tensor([0.2, 0.4, 0.2, 0.4]))
    torch.testing.assert_close(batch["box"][1], torch.zeros(4))
    torch.testing.assert_close(batch["box"][2], torch.tensor([0.5, 0.5, 1.0, 1.0]))
    assert batch["orig_size"].tolist() == [[30, 40]] * 3
    assert batch["image"].shape == (3, 3, 16, 16)


def test_a_file_name_not_under_root_is_taken_beside_the_json(tmp_path):
    # a labelling tool's export: the split folder holds its images and its JSON
    (tmp_path / "train").mkdir()
    write_coco(tmp_path / "train", [[(3, [4, 6, 8, 12])], []])
    module = build(
        tmp_path, {"train": "train/ann.json", "val": "train/ann.json", "test": "train/ann.json"}
    )
    assert [s.path for s in module.splits["val"]] == [
        str(tmp_path / "train" / f"img{i}.png") for i in range(2)
    ]
    assert next(iter(module.val_dataloader()))["label"].tolist() == [1, 0]


def test_one_file_is_carved_into_splits(tmp_path):
    write_coco(tmp_path, [[(3, [1, 1, 5, 5])]] * 10 + [[]] * 10)
    module = build(tmp_path, "ann.json", val_fraction=0.2, test_fraction=0.2)
    sizes = {split: len(samples) for split, samples in module.splits.items()}
    assert sizes == {"train": 12, "val": 4, "test": 4}
    labels = [s.label for s in module.splits["val"]]
    assert sorted(labels) == [0, 0, 1, 1]  # stratified by label


def test_several_objects_keep_the_largest_or_fail(tmp_path):
    write_coco(tmp_path, [[(3, [0, 0, 4, 4]), (7, [10, 10, 20, 10]), (3, [1, 1, 2, 2])]])
    module = build(tmp_path, "ann.json", val_fraction=0, test_fraction=0)
    assert module.splits["train"][0].label == 2
    assert module.splits["train"][0].box == (10.0, 10.0, 30.0, 20.0)
    with pytest.raises(AnnotationError, match=r"ann\.json: images\[0\].*3 objects"):
        build(tmp_path, "ann.json", multiple_objects="error")


def test_crowd_annotations_are_ignored(tmp_path):
    path = write_coco(tmp_path, [[(3, [0, 0, 4, 4])]])
    data = json.loads(path.read_text())
    data["annotations"][0]["iscrowd"] = 1
    path.write_text(json.dumps(data))
    module = build(tmp_path, "ann.json", val_fraction=0, test_fraction=0)
    assert module.splits["train"][0].label == 0


@pytest.mark.parametrize(
    ("bbox", "why"),
    [([30, 5, 20, 10], "outside"), ([-5, 5, 4, 4], "outside"), ([5, 5, -3, 4], "<= 0")],
)
def test_a_bad_box_names_file_and_field(tmp_path, bbox, why):
    path = write_coco(tmp_path, [[(3, [1, 1, 4, 4])], [(3, bbox)]])
    with pytest.raises(AnnotationError) as err:
        build(tmp_path, "ann.json")
    assert f"{path}: annotations[1].bbox" in str(err.value) and why in str(err.value)


def test_a_box_a_rounding_error_past_the_edge_is_clipped(tmp_path):
    write_coco(tmp_path, [[(3, [30.0, 20.0, 10.4, 10.3])]])
    module = build(tmp_path, "ann.json", val_fraction=0, test_fraction=0)
    assert module.splits["train"][0].box == (30.0, 20.0, 40.0, 30.0)


def test_an_annotation_naming_a_missing_image(tmp_path):
    path = write_coco(tmp_path, [[(3, [1, 1, 4, 4])]])
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 9, "image_id": 555, "category_id": 3, "bbox": [1, 1, 2, 2]})
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"annotations\[1\]\.image_id: 555"):
        load_coco(path)


def test_an_image_file_that_does_not_exist(tmp_path):
    path = write_coco(tmp_path, [[(3, [1, 1, 4, 4])], []])
    (tmp_path / "img1.png").unlink()
    with pytest.raises(AnnotationError) as err:
        build(tmp_path, "ann.json")
    assert f"{path}: images[1].file_name: 'img1.png' does not exist" in str(err.value)


def test_skip_drops_and_counts_bad_annotations(tmp_path):
    boxes = [
        [(3, [1, 1, 4, 4])],
        [(3, [35, 1, 9, 4])],
        [(3, [1, 1, 0, 4])],
        [],
        [(7, [2, 2, 3, 3])],
    ]
    path = write_coco(tmp_path, boxes)
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 9, "image_id": 555, "category_id": 3, "bbox": [1, 1, 2, 2]})
    path.write_text(json.dumps(data))
    (tmp_path / "img3.png").unlink()
    with pytest.warns(AnnotationWarning, match="skipped 4 bad annotation"):
        module = build(
            tmp_path, "ann.json", on_bad_annotation="skip", val_fraction=0, test_fraction=0
        )
    assert module.skipped_annotations == {"train": 4}
    assert sorted(s.label for s in module.splits["train"]) == [1, 2]


def test_structural_faults_always_raise(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text("{not json")
    with pytest.raises(AnnotationError, match="not valid JSON"):
        load_coco(path)
    path.write_text(json.dumps({"images": {}, "annotations": [], "categories": []}))
    with pytest.raises(AnnotationError, match="'images' must be a list"):
        load_coco(path)
    images = [{"id": 1, "file_name": "a.png", "width": 0, "height": 4}]
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": []}))
    with pytest.raises(AnnotationError, match=r"images\[0\]\.width: 0"):
        load_coco(path)


def test_size_comes_from_the_file_when_the_json_omits_it(tmp_path):
    path = write_coco(tmp_path, [[(3, [1, 1, 4, 4])]])
    data = json.loads(path.read_text())
    del data["images"][0]["width"], data["images"][0]["height"]
    path.write_text(json.dumps(data))
    module = build(tmp_path, "ann.json", val_fraction=0, test_fraction=0)
    assert module.splits["train"][0].size == (30, 40)


def test_an_image_of_another_size_than_declared_is_a_bad_image(tmp_path):
    write_coco(tmp_path, [[(3, [1, 1, 4, 4])]])
    Image.new("RGB", (20, 20)).save(tmp_path / "img0.png")
    module = build(tmp_path, "ann.json", val_fraction=0, test_fraction=0)
    with pytest.raises(BadImageError, match=r"img0\.png.*20x20.*40x30"):
        module.train_dataset[0]


def test_splits_must_share_categories(tmp_path):
    write_coco(tmp_path, [[(3, [1, 1, 4, 4])]])
    other = write_coco(tmp_path, [[(3, [1, 1, 4, 4])]], name="val.json")
    data = json.loads(other.read_text())
    data["categories"][0]["name"] = "lion"
    other.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match="categories"):
        build(tmp_path, {"train": "ann.json", "val": "val.json"})


def test_missing_root_or_annotations_say_what_to_set():
    with pytest.raises(ValueError, match=r"data\.root=.*data\.annotations="):
        DATASETS.build("coco_boxes", annotations="a.json")


def test_empty_batch_carries_box_keys(tmp_path):
    write_coco(tmp_path, [[(3, [1, 1, 4, 4])]])
    module = build(tmp_path, "ann.json", val_fraction=0, test_fraction=0)
    batch = DropBadSamples(module.empty_batch())([None, None])
    assert batch["box"].shape == (0, 4) and batch["orig_size"].shape == (0, 2)
    assert batch["skipped"].item() == 2


# -- augmentations move the box -------------------------------------------------------------
def one_box(tmp_path, bbox, **kwargs):
    write_coco(tmp_path, [[(3, bbox)]], size=(40, 40))
    module = build(tmp_path, "ann.json", val_fraction=0, test_fraction=0, image_size=40, **kwargs)
    return module.train_dataset[0]


def test_a_flipped_image_has_the_flipped_box(tmp_path):
    sample = one_box(tmp_path, [4, 6, 8, 12], augment=[{"name": "HorizontalFlip", "p": 1.0}])
    # x 4..12 of 40 mirrors to 28..36: cx 0.8; y and sizes unchanged
    torch.testing.assert_close(sample["box"], torch.tensor([0.8, 0.3, 0.2, 0.3]))
    assert sample["label"].item() == 1


def test_flip_moves_pixels_and_box_together(tmp_path):
    write_coco(tmp_path, [[(3, [4, 6, 8, 12])]], size=(40, 40))
    pixels = np.zeros((40, 40, 3), dtype=np.uint8)
    pixels[6:18, 4:12] = 255  # the object is the white box
    Image.fromarray(pixels).save(tmp_path / "img0.png")
    flip = [{"name": "HorizontalFlip", "p": 1.0}]
    module = build(
        tmp_path, "ann.json", val_fraction=0, test_fraction=0, image_size=40, augment=flip
    )
    sample = module.train_dataset[0]
    cx, cy, w, h = (float(v) * 40 for v in sample["box"])
    white = sample["image"][0] > 0
    rows, cols = torch.nonzero(white, as_tuple=True)
    assert (int(cols.min()), int(cols.max()) + 1) == pytest.approx((cx - w / 2, cx + w / 2))
    assert (int(rows.min()), int(rows.max()) + 1) == pytest.approx((cy - h / 2, cy + h / 2))


SHIFT = [{"name": "Affine", "translate_px": {"x": [30, 30], "y": [0, 0]}, "p": 1.0}]


def test_a_box_pushed_partly_out_is_clipped(tmp_path):
    sample = one_box(tmp_path, [0, 0, 20, 20], augment=SHIFT, out_of_frame="clip")
    # x 0..20 moves to 30..50 and is clipped to 30..40
    torch.testing.assert_close(sample["box"], torch.tensor([0.875, 0.25, 0.25, 0.5]))
    assert sample["label"].item() == 1


def test_a_box_mostly_out_of_frame_turns_into_nothing(tmp_path):
    sample = one_box(tmp_path, [0, 0, 20, 20], augment=SHIFT, out_of_frame="nothing")
    assert sample["label"].item() == 0 and torch.equal(sample["box"], torch.zeros(4))


def test_a_box_out_of_frame_entirely_is_nothing_under_clip_too(tmp_path):
    far = [{"name": "Affine", "translate_px": {"x": [20, 20], "y": [0, 0]}, "p": 1.0}]
    sample = one_box(tmp_path, [30, 0, 8, 8], augment=far, out_of_frame="clip")
    assert sample["label"].item() == 0


def test_bad_policies_are_rejected(tmp_path):
    write_coco(tmp_path, [[(3, [1, 1, 4, 4])]])
    with pytest.raises(ValueError, match=r"data\.out_of_frame"):
        build(tmp_path, "ann.json", out_of_frame="drop")
    with pytest.raises(ValueError, match=r"data\.multiple_objects"):
        build(tmp_path, "ann.json", multiple_objects="first")
    with pytest.raises(ValueError, match=r"data\.on_bad_annotation"):
        build(tmp_path, "ann.json", on_bad_annotation="ignore")


def test_a_fifo_named_by_file_name_is_reported_not_opened(tmp_path):
    write_coco(tmp_path, [[(3, [1, 1, 4, 4])], [(7, [2, 2, 5, 5])]])
    (tmp_path / "img1.png").unlink()
    make_fifo(tmp_path / "img1.png")
    fifo = r"images\[1\]\.file_name: 'img1\.png' is a FIFO"
    with deadline(), pytest.raises(AnnotationError, match=fifo):
        build(tmp_path, "ann.json", val_fraction=0, test_fraction=0)


def test_two_image_entries_naming_one_file_are_an_error(tmp_path):
    write_coco(tmp_path, [[(3, [1, 1, 4, 4])], [(7, [2, 2, 5, 5])], []])
    (tmp_path / "img1.png").unlink()
    (tmp_path / "img1.png").symlink_to(tmp_path / "img0.png")  # one picture, two labels
    with pytest.raises(DuplicateFileError) as info:
        build(tmp_path, "ann.json", val_fraction=0, test_fraction=0)
    assert "ann.json: images[0])" in str(info.value) and "ann.json: images[1])" in str(info.value)


def test_another_file_sharing_train_images_is_an_error(tmp_path):
    write_coco(tmp_path, [[(3, [1, 1, 4, 4])], []])
    write_coco(tmp_path, [[(3, [1, 1, 4, 4])]], name="val.json")  # img0.png again
    with pytest.raises(DuplicateFileError, match=r"img0\.png is named by .*ann\.json: images\[0\]"):
        build(tmp_path, {"train": "ann.json", "val": "val.json"}, test_fraction=0)


def test_an_exif_turned_image_explains_its_size_mismatch(tmp_path):
    write_coco(tmp_path, [[(3, [1, 1, 4, 4])]])  # declared 40x30
    exif = Image.Exif()
    exif[274] = 8
    Image.new("RGB", (40, 30)).save(tmp_path / "img0.png", exif=exif)  # reads as 30x40
    module = build(tmp_path, "ann.json", val_fraction=0, test_fraction=0)
    with pytest.raises(BadImageError, match=r"30x40 but its annotation says 40x30; its EXIF"):
        module.train_dataset[0]


def test_an_omitted_size_is_read_in_the_displayed_frame(tmp_path):
    path = write_coco(tmp_path, [[(3, [1, 1, 4, 4])]])
    data = json.loads(path.read_text())
    del data["images"][0]["width"], data["images"][0]["height"]
    path.write_text(json.dumps(data))
    exif = Image.Exif()
    exif[274] = 6
    Image.new("RGB", (40, 30)).save(tmp_path / "img0.jpg", exif=exif)
    path.write_text(path.read_text().replace("img0.png", "img0.jpg"))
    module = build(tmp_path, "ann.json", val_fraction=0, test_fraction=0)
    assert module.splits["train"][0].size == (40, 30)  # (height, width) as read_image turns it
    assert module.train_dataset[0]["orig_size"].tolist() == [40, 30]
