"""The Pascal VOC segmentation reader on a small tree written in the test."""

import numpy as np
import pytest
import torch
from PIL import Image

from cvtasks.data.images import BadImageWarning
from cvtasks.data.masks import BadMaskError, write_mask
from cvtasks.data.scan import DuplicateFileError
from cvtasks.data.voc_segmentation import VOC_CLASSES, find_voc_root
from cvtasks.registry import DATASETS
from tests.data.conftest import deadline, make_fifo


def write_voc(root, train_ids, val_ids):
    """A VOC2012 tree: JPEGs, palette masks with a 255 border around a class-15 square."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in (*train_ids, *val_ids):
        mask = np.zeros((10, 12), dtype=np.uint8)
        mask[2:8, 3:9] = 255  # VOC's void border ...
        mask[3:7, 4:8] = 15  # ... around a person
        Image.fromarray(np.full((10, 12, 3), 120, dtype=np.uint8)).save(
            root / "JPEGImages" / f"{name}.jpg"
        )
        write_mask(root / "SegmentationClass" / f"{name}.png", mask)
    lists = root / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("".join(f"{n}\n" for n in train_ids))
    (lists / "val.txt").write_text("".join(f"{n}\n" for n in val_ids))


def build(root, **kw):
    data = DATASETS.build("voc_segmentation", root=root, image_size=[10, 12], batch_size=2, **kw)
    data.setup("fit")
    return data


def test_reads_the_voc_layout_with_void_borders_ignored(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    train_ids = [f"2007_{i:06d}" for i in range(10)]
    write_voc(voc, train_ids, ["2008_000001", "2008_000002"])
    assert find_voc_root(tmp_path) == voc
    data = build(tmp_path, val_fraction=0.2)
    assert data.class_names == list(VOC_CLASSES) and data.num_classes == 21
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [8, 2, 2]
    assert {p for p, _ in data.splits["test"]} == {
        str(voc / "JPEGImages" / "2008_000001.jpg"),
        str(voc / "JPEGImages" / "2008_000002.jpg"),
    }
    sample = data.test_dataset[0]
    assert sample["mask"].unique().tolist() == [0, 15, 255]
    assert (sample["mask"] == 255).sum() == 36 - 16 and sample["mask"].dtype == torch.int64
    assert build(voc, val_fraction=0).splits["val"] == data.splits["test"]


def test_missing_files_and_folders_are_named(tmp_path):
    write_voc(tmp_path, ["a", "b", "c"], ["d"])
    (tmp_path / "SegmentationClass" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 file\(s\) listed in .*train.txt.*b\.png"):
        build(tmp_path)
    data = build(tmp_path, on_bad_image="skip", val_fraction=0)
    assert dict(data.splits["train"])[str(tmp_path / "JPEGImages" / "b.jpg")] is None
    with pytest.raises(FileNotFoundError, match="no Pascal VOC folder"):
        find_voc_root(tmp_path / "JPEGImages")
    with pytest.raises(ValueError, match=r"data\.root is not set"):
        DATASETS.build("voc_segmentation")


def test_a_fifo_in_place_of_an_image_is_named_not_opened(tmp_path):
    write_voc(tmp_path, ["a", "b", "c"], ["d"])
    (tmp_path / "JPEGImages" / "b.jpg").unlink()
    make_fifo(tmp_path / "JPEGImages" / "b.jpg")
    with deadline(), pytest.raises(FileNotFoundError, match=r"b\.jpg \(is a FIFO \(named pipe\)"):
        build(tmp_path)
    with deadline(), pytest.warns(BadImageWarning, match=r"b\.jpg.*FIFO"):
        data = build(tmp_path, on_bad_image="skip", val_fraction=0)
        batches = list(data.train_dataloader())
    assert sum(int(b["skipped"]) for b in batches) == 1
    assert sum(len(b["mask"]) for b in batches) == 2


def test_an_image_in_both_lists_or_twice_in_one_is_an_error(tmp_path):
    write_voc(tmp_path, ["a", "b", "c"], ["c", "d"])
    with pytest.raises(DuplicateFileError, match=r"c\.jpg is named by train\.txt and by val\.txt"):
        build(tmp_path)
    write_voc(tmp_path, ["a", "b", "a"], ["d"])
    with pytest.raises(
        DuplicateFileError, match=r"train\.txt names 1 id\(s\) more than once \(a\)"
    ):
        build(tmp_path)


def test_a_mask_that_is_really_a_jpeg_is_refused_unless_allowed(tmp_path):
    write_voc(tmp_path, ["a", "b"], ["c"])
    mask = np.zeros((10, 12), dtype=np.uint8)
    mask[:, 5:] = 15
    Image.fromarray(mask).save(tmp_path / "SegmentationClass" / "b.png", format="JPEG")
    with pytest.raises(BadMaskError, match=r"b\.png: it is stored as JPEG.*lossy_masks=allow"):
        list(build(tmp_path, val_fraction=0).train_dataloader())
    data = build(tmp_path, val_fraction=0, lossy_masks="allow")
    assert sum(len(b["mask"]) for b in data.train_dataloader()) == 2
