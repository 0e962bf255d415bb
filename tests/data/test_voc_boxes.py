"""The Pascal VOC boxes reader on small XML files written here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from cvtasks.data.annotations import AnnotationError, AnnotationWarning
from cvtasks.data.voc_boxes import parse_voc
from cvtasks.registry import DATASETS
from tests.data.conftest import deadline, make_fifo


def write_voc(root: Path, image_id: str, objects: list[tuple], size=(40, 30), image=True) -> Path:
    """``objects``: ``(name, xmin, ymin, xmax, ymax)`` in VOC's 1-based inclusive pixels."""
    width, height = size
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(exist_ok=True)
    if image:
        Image.new("RGB", (width, height), (90, 10, 10)).save(
            root / "JPEGImages" / f"{image_id}.png"
        )
    body = "".join(
        f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin>"
        f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, x0, y0, x1, y1 in objects
    )
    xml = (
        f"<annotation><folder>VOC</folder><filename>{image_id}.png</filename><size>"
        f"<width>{width}</width><height>{height}</height><depth>3</depth></size>{body}</annotation>"
    )
    path = root / "Annotations" / f"{image_id}.xml"
    path.write_text(xml)
    return path


def build(root: Path, **kwargs):
    kwargs = {"image_size": 16, "batch_size": 4, "augment": [], **kwargs}
    module = DATASETS.build("voc_boxes", root=str(root), **kwargs)
    module.setup("fit")
    return module


def test_parse_converts_one_based_inclusive_pixels(tmp_path):
    path = write_voc(tmp_path, "000001", [("dog", 5, 7, 12, 18)])
    filename, size, objects = parse_voc(path)
    assert filename == "000001.png" and size == (30, 40)
    assert objects == [("dog", (4.0, 6.0, 12.0, 18.0), False)]


def test_reads_splits_from_image_sets_with_largest_object(tmp_path):
    write_voc(tmp_path, "a", [("dog", 5, 7, 12, 18)])
    write_voc(tmp_path, "b", [("cat", 1, 1, 4, 4), ("person", 1, 1, 40, 30)])
    write_voc(tmp_path, "c", [])
    write_voc(tmp_path, "d", [("dog", 5, 7, 12, 18)])
    lists = tmp_path / "ImageSets" / "Main"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("a\nb\n")
    (lists / "val.txt").write_text("c\n")
    (lists / "test.txt").write_text("d\n")
    module = build(tmp_path)
    assert module.class_names == ["cat", "dog", "person"]
    assert [(s.label, s.box) for s in module.splits["train"]] == [
        (2, (4.0, 6.0, 12.0, 18.0)),
        (3, (0.0, 0.0, 40.0, 30.0)),
    ]
    assert module.splits["val"][0].label == 0 and module.splits["val"][0].box is None
    batch = next(iter(module.test_dataloader()))
    torch.testing.assert_close(batch["box"][0], torch.tensor([0.2, 0.4, 0.2, 0.4]))
    assert batch["label"].tolist() == [2]


def test_without_image_sets_every_file_is_train_and_splits_are_carved(tmp_path):
    for i in range(10):
        write_voc(tmp_path, f"{i:02d}", [("dog", 1, 1, 5, 5)] if i % 2 else [])
    module = build(tmp_path, val_fraction=0.2, test_fraction=0.2)
    assert {s: len(v) for s, v in module.splits.items()} == {"train": 6, "val": 2, "test": 2}


def test_explicit_classes_fix_labels_and_reject_others(tmp_path):
    path = write_voc(tmp_path, "a", [("dog", 1, 1, 5, 5)])
    module = build(tmp_path, classes=["person", "dog"], val_fraction=0, test_fraction=0)
    assert module.splits["train"][0].label == 2
    with pytest.raises(AnnotationError, match=rf"{path}: object\.name: 'dog' is not in"):
        build(tmp_path, classes=["person"])


@pytest.mark.parametrize(
    ("box", "why"),
    [((30, 5, 50, 10), "outside"), ((10, 5, 5, 10), "no area"), ((0, -5, 4, 4), "outside")],
)
def test_a_bad_box_names_file_and_field(tmp_path, box, why):
    path = write_voc(tmp_path, "a", [("dog", 1, 1, 4, 4), ("dog", *box)])
    with pytest.raises(AnnotationError) as err:
        build(tmp_path)
    assert f"{path}: object[1].bndbox" in str(err.value) and why in str(err.value)


def test_missing_fields_and_bad_xml_name_the_file(tmp_path):
    path = write_voc(tmp_path, "a", [("dog", 1, 1, 4, 4)])
    path.write_text(path.read_text().replace("<xmax>4</xmax>", ""))
    with pytest.raises(AnnotationError, match=r"object\[0\]\.bndbox\.xmax: missing"):
        parse_voc(path)
    path.write_text("<annotation><filename>")
    with pytest.raises(AnnotationError, match="not a readable VOC XML"):
        parse_voc(path)


def test_an_image_that_does_not_exist_names_the_xml(tmp_path):
    path = write_voc(tmp_path, "a", [("dog", 1, 1, 4, 4)], image=False)
    with pytest.raises(AnnotationError, match=rf"{path}: filename: 'a.png' does not exist"):
        build(tmp_path)


def test_skip_drops_and_counts(tmp_path):
    write_voc(tmp_path, "a", [("dog", 1, 1, 4, 4)])
    write_voc(tmp_path, "b", [("dog", 1, 1, 80, 4)])  # outside
    write_voc(tmp_path, "c", [("dog", 1, 1, 4, 4)], image=False)
    write_voc(tmp_path, "d", [("dog", 1, 1, 4, 4), ("dog", 5, 5, 9, 9)])
    with pytest.warns(AnnotationWarning, match="skipped 3 bad annotation"):
        module = build(
            tmp_path,
            on_bad_annotation="skip",
            multiple_objects="error",
            val_fraction=0,
            test_fraction=0,
        )
    assert module.skipped_annotations == 3
    assert [Path(s.path).name for s in module.splits["train"]] == ["a.png"]


def test_missing_folders_say_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="Annotations"):
        build(tmp_path)
    with pytest.raises(ValueError, match=r"data\.root="):
        DATASETS.build("voc_boxes")


def test_fifos_in_place_of_an_xml_or_an_image_are_named_not_opened(tmp_path):
    write_voc(tmp_path, "a", [("dog", 1, 1, 4, 4)])
    write_voc(tmp_path, "b", [("dog", 1, 1, 4, 4)], image=False)
    make_fifo(tmp_path / "JPEGImages" / "b.png")
    make_fifo(tmp_path / "Annotations" / "c.xml")
    with deadline(), pytest.raises(AnnotationError, match=r"c\.xml: is a FIFO \(named pipe\)"):
        build(tmp_path)
    with deadline(), pytest.warns(AnnotationWarning, match="skipped 2 bad annotation"):
        module = build(tmp_path, on_bad_annotation="skip", val_fraction=0, test_fraction=0)
    assert [Path(s.path).name for s in module.splits["train"]] == ["a.png"]


def test_image_set_lists_that_share_ids_are_an_error(tmp_path):
    for name in "abcd":
        write_voc(tmp_path, name, [("dog", 1, 1, 4, 4)])
    lists = tmp_path / "ImageSets" / "Main"
    lists.mkdir(parents=True)
    (lists / "trainval.txt").write_text("a\nb\nc\n")
    (lists / "val.txt").write_text("c\n")
    (lists / "test.txt").write_text("d\n")
    with pytest.raises(ValueError, match=r"trainval\.txt \(train\) and val\.txt \(val\) share 1"):
        build(tmp_path, splits={"train": "trainval", "val": "val", "test": "test"})
    same = build(tmp_path, splits={"train": "trainval", "val": "test", "test": "test"})
    assert same.splits["val"] == same.splits["test"]  # one list for two splits: asked for


def test_the_shipped_config_names_other_folders(tmp_path, compose_train):
    write_voc(tmp_path, "a", [("dog", 5, 7, 12, 18)])
    (tmp_path / "Annotations").rename(tmp_path / "annotations")
    (tmp_path / "JPEGImages").rename(tmp_path / "images")
    overrides = ("data.annotations_dir=annotations", "data.images_dir=images")
    data = compose_train("data=voc_boxes", f"data.root={tmp_path}", *overrides).data
    cfg = OmegaConf.to_container(data, resolve=True)
    assert cfg.pop("name") == "voc_boxes"
    cfg.update(image_size=16, num_workers=0, val_fraction=0, test_fraction=0)
    (sample,) = DATASETS.build("voc_boxes", **cfg).splits["train"]
    assert sample.path == str(tmp_path / "images" / "a.png") and sample.label == 1
    assert compose_train("data=voc_boxes", "data.root=x").data.images_dir is None
