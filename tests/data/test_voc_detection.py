"""The Pascal VOC detection reader on small XML files written here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cvtasks.data.annotations import AnnotationError, AnnotationWarning
from cvtasks.registry import DATASETS
from tests.data.detection_files import IMAGES, Img, Obj, write_voc

ALL_TRAIN = {"val_fraction": 0, "test_fraction": 0}


def build(root: Path, **kwargs):
    kwargs = {"image_size": 16, "batch_size": 4, "augment": [], **kwargs}
    module = DATASETS.build("voc_detection", root=str(root), **kwargs)
    module.setup("fit")
    return module


def test_every_object_is_read_difficult_ones_as_crowd(tmp_path):
    write_voc(tmp_path)
    module = build(tmp_path, **ALL_TRAIN)
    assert module.class_names == ["bird", "cat", "dog"]  # sorted names found
    samples = {Path(s.path).stem: s for s in module.splits["train"]}
    assert samples["a"].boxes == ((4.0, 6.0, 12.0, 18.0), (20.0, 2.0, 40.0, 30.0))
    assert samples["a"].labels == (2, 1) and samples["a"].crowd == (False, False)
    assert samples["b"].labels == (0, 1) and samples["b"].crowd == (False, True)
    assert samples["c"].boxes == () and samples["c"].size == (20, 20)  # a negative, kept
    assert samples["a"].source == str(tmp_path / "Annotations" / "a.xml")


def test_a_batch_carries_every_box_scaled_to_the_input(tmp_path):
    write_voc(tmp_path)
    lists = tmp_path / "ImageSets" / "Main"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("a\n")
    (lists / "val.txt").write_text("b\nc\n")
    (lists / "test.txt").write_text("d\n")
    module = build(tmp_path, classes=["dog", "cat", "bird"])
    batch = next(iter(module.val_dataloader()))
    # b is 32 wide, 24 high, resized to 16 x 16
    scale = torch.tensor([16 / 32, 16 / 24, 16 / 32, 16 / 24])
    expected = torch.tensor([[0.0, 0.0, 8.0, 8.0], [10.0, 10.0, 30.0, 20.0]]) * scale
    torch.testing.assert_close(batch["boxes"][0], expected)
    assert batch["labels"][0].tolist() == [2, 1] and batch["crowd"][0].tolist() == [False, True]
    assert batch["boxes"][1].shape == (0, 4) and batch["labels"][1].tolist() == []
    assert batch["orig_size"].tolist() == [[24, 32], [20, 20]]


def test_a_class_not_listed_is_a_bad_annotation(tmp_path):
    write_voc(tmp_path, IMAGES[:1])
    xml = tmp_path / "Annotations" / "a.xml"
    with pytest.raises(AnnotationError, match=rf"{xml}: object\.name: 'cat' is not in data\.cl"):
        build(tmp_path, classes=["dog"])
    with pytest.warns(AnnotationWarning, match="skipped 1 bad annotation"):
        module = build(tmp_path, classes=["dog"], on_bad_annotation="skip", **ALL_TRAIN)
    assert module.splits["train"][0].boxes == ((4.0, 6.0, 12.0, 18.0),)
    assert module.skipped_annotations == {"train": 1}


def test_skip_drops_a_bad_box_and_keeps_its_image(tmp_path):
    image = Img("a", (30, 40), (Obj("dog", (4, 6, 12, 18)), Obj("cat", (30, 2, 50, 30))))
    write_voc(tmp_path, [image])
    xml = tmp_path / "Annotations" / "a.xml"
    with pytest.raises(AnnotationError, match=rf"{xml}: object\[1\]\.bndbox: .* lies outside"):
        build(tmp_path)
    with pytest.warns(AnnotationWarning, match="skipped 1 bad annotation"):
        module = build(tmp_path, on_bad_annotation="skip", **ALL_TRAIN)
    (sample,) = module.splits["train"]
    assert sample.boxes == ((4.0, 6.0, 12.0, 18.0),) and sample.labels == (0,)


def test_skip_drops_an_image_whose_file_or_xml_is_unusable(tmp_path):
    write_voc(tmp_path, IMAGES[:3])
    (tmp_path / "JPEGImages" / "b.png").unlink()
    (tmp_path / "Annotations" / "c.xml").write_text("<annotation>")
    with pytest.raises(AnnotationError, match=r"c\.xml: not a readable VOC XML"):
        build(tmp_path)
    with pytest.warns(AnnotationWarning, match="skipped 2 bad annotation"):
        module = build(tmp_path, on_bad_annotation="skip", **ALL_TRAIN)
    assert [Path(s.path).stem for s in module.splits["train"]] == ["a"]


def test_the_shipped_config_reads_other_folder_names(tmp_path, compose_train):
    negatives = [Img(f"n{i}", (8, 8), ()) for i in range(6)]  # enough to carve val and test
    write_voc(
        tmp_path, [*IMAGES[:2], *negatives], annotations_dir="annotations", images_dir="images"
    )
    overrides = ("data.annotations_dir=annotations", "data.images_dir=images")
    data = compose_train("data=voc_detection", f"data.root={tmp_path}", *overrides).data
    cfg = OmegaConf.to_container(data, resolve=True)
    assert cfg.pop("name") == "voc_detection"
    module = DATASETS.build("voc_detection", **{**cfg, "image_size": 16, "num_workers": 0})
    assert module.class_names == ["bird", "cat", "dog"]
    assert sum(len(v) for v in module.splits.values()) == 8
    missing = compose_train("data=voc_detection", f"data.root={tmp_path}").data
    assert missing.annotations_dir is None and missing.images_dir is None
    with pytest.raises(FileNotFoundError, match=r"data\.annotations_dir and data\.images_dir"):
        DATASETS.build("voc_detection", root=str(tmp_path), image_size=16).setup("fit")


def test_a_missing_root_says_how_to_set_it():
    with pytest.raises(ValueError, match=r"data=voc_detection needs data\.root="):
        DATASETS.build("voc_detection")
