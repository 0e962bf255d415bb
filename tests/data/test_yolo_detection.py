"""The YOLO detection reader on small datasets written here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cvtasks.data.annotations import AnnotationError, AnnotationWarning
from cvtasks.data.images import BadImageWarning
from cvtasks.registry import DATASETS
from tests.data.detection_files import CLASSES, IMAGES, Img, write_yolo

ALL_TRAIN = {"val_fraction": 0, "test_fraction": 0}


def build(root: Path, **kwargs):
    kwargs = {"image_size": 16, "batch_size": 4, "augment": [], **kwargs}
    module = DATASETS.build("yolo_detection", root=str(root), **kwargs)
    module.setup("fit")
    return module


def names_yaml(classes=CLASSES) -> str:
    return f"names: {classes}\n"


def test_reads_splits_boxes_and_negatives(tmp_path):
    write_yolo(tmp_path, IMAGES[:2], split="train")
    write_yolo(tmp_path, IMAGES[2:], split="val")
    (tmp_path / "labels" / "val" / "c.txt").unlink()  # a missing label file: a negative too
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/val\n" + names_yaml())
    module = build(tmp_path, test_fraction=0)
    assert module.class_names == CLASSES
    train = {Path(s.path).stem: s for s in module.splits["train"]}
    assert train["a"].labels == (1, 0) and train["a"].crowd == (False, False)
    torch.testing.assert_close(
        torch.tensor(train["a"].boxes), torch.tensor([[4.0, 6.0, 12.0, 18.0], [20, 2, 40, 30]])
    )
    assert train["b"].labels == (2,)  # the crowd box has no YOLO line
    assert train["a"].source == str(tmp_path / "labels" / "train" / "a.txt")
    batch = next(iter(module.val_dataloader()))
    assert batch["labels"][0].tolist() == [] and batch["boxes"][0].shape == (0, 4)  # c
    # d is 40 wide, 30 high, resized to 16 x 16
    scale = torch.tensor([16 / 40, 16 / 30, 16 / 40, 16 / 30])
    expected = torch.tensor([[1.0, 1.0, 39.0, 29.0], [5.0, 5.0, 9.0, 9.0]]) * scale
    torch.testing.assert_close(batch["boxes"][1], expected)
    assert batch["labels"][1].tolist() == [1, 1] and batch["orig_size"].tolist()[1] == [30, 40]


def test_a_list_file_names_the_images_of_a_split(tmp_path):
    write_yolo(tmp_path, IMAGES)
    (tmp_path / "val.txt").write_text("./images/train/b.png\n\n./images/train/gone.png\n")
    (tmp_path / "data.yaml").write_text("train: images/train\nval: val.txt\n" + names_yaml())
    with pytest.raises(AnnotationError, match=r"val\.txt:3: image '.*gone\.png' does not exist"):
        build(tmp_path)
    with pytest.warns(AnnotationWarning, match="skipped 1 bad annotation"):
        module = build(tmp_path, on_bad_annotation="skip", test_fraction=0)
    assert [Path(s.path).name for s in module.splits["val"]] == ["b.png"]
    assert module.skipped_annotations == {"train": 0, "val": 1}


def test_a_bad_line_names_file_and_line_or_is_skipped(tmp_path):
    write_yolo(tmp_path, IMAGES[:1])
    labels = tmp_path / "labels" / "train" / "a.txt"
    labels.write_text(labels.read_text() + "7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(AnnotationError, match=rf"{labels}:3: class 7 is not in names"):
        build(tmp_path)
    with pytest.warns(AnnotationWarning, match="skipped 1 bad annotation"):
        module = build(tmp_path, on_bad_annotation="skip", **ALL_TRAIN)
    assert module.splits["train"][0].labels == (1, 0)


def test_a_split_without_any_label_file_is_refused(tmp_path):
    write_yolo(tmp_path, IMAGES[:2])
    for path in (tmp_path / "labels" / "train").iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"train: none of its 2 images has a label file"):
        build(tmp_path)


def test_a_split_folder_outside_an_images_folder_is_refused(tmp_path):
    write_yolo(tmp_path, IMAGES[:1])
    (tmp_path / "images" / "train").rename(tmp_path / "pictures")
    (tmp_path / "data.yaml").write_text("train: pictures\n" + names_yaml())
    with pytest.raises(AnnotationError, match=r"pictures has no folder called 'images'"):
        build(tmp_path)


def test_one_folder_for_val_and_test_is_allowed_and_read_once(tmp_path):
    write_yolo(tmp_path, IMAGES[:2])
    write_yolo(tmp_path, IMAGES[2:], split="val")
    text = "train: images/train\nval: images/val\ntest: images/val\n" + names_yaml()
    (tmp_path / "data.yaml").write_text(text)
    module = build(tmp_path)
    assert module.splits["val"] == module.splits["test"] and len(module.splits["val"]) == 2


def test_an_unreadable_image_is_an_error_or_skipped(tmp_path):
    write_yolo(tmp_path, IMAGES[:2])
    (tmp_path / "images" / "train" / "b.png").write_bytes(b"not a png")
    with pytest.raises(OSError, match=r"b\.png"):
        build(tmp_path)
    with pytest.warns(BadImageWarning, match=r"b\.png"):
        module = build(tmp_path, on_bad_image="skip", **ALL_TRAIN)
    assert [Path(s.path).name for s in module.splits["train"]] == ["a.png"]


def test_the_shipped_config_builds_and_carves_val_and_test(tmp_path, compose_train):
    negatives = [Img(f"n{i}", (8, 8), ()) for i in range(8)]
    write_yolo(tmp_path, [*IMAGES, *negatives])
    data = compose_train("data=yolo_detection", f"data.root={tmp_path}").data
    cfg = OmegaConf.to_container(data, resolve=True)
    assert cfg.pop("name") == "yolo_detection"
    module = DATASETS.build("yolo_detection", **{**cfg, "image_size": 16, "num_workers": 0})
    sizes = {split: len(samples) for split, samples in module.splits.items()}
    assert sum(sizes.values()) == 12 and sizes["val"] >= 1 and sizes["test"] >= 1


def test_a_missing_root_says_how_to_set_it():
    with pytest.raises(ValueError, match=r"data=yolo_detection needs data\.root="):
        DATASETS.build("yolo_detection")
