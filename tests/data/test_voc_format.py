"""The Pascal VOC parser and folder layout shared by the VOC box readers."""

from __future__ import annotations

import pytest

from cvtasks.data.annotations import AnnotationError, AnnotationIssues
from cvtasks.data.voc_format import VocFolder, VocObject, parse_voc
from tests.data.detection_files import IMAGES, Img, Obj, voc_xml, write_voc


def test_difficult_objects_are_flagged_and_a_missing_flag_is_zero(tmp_path):
    path = tmp_path / "b.xml"
    path.write_text(voc_xml(IMAGES[1], "b.png"))
    voc = parse_voc(path)
    assert voc.filename == "b.png" and voc.size == (24, 32)
    assert voc.objects == [
        VocObject("bird", (0.0, 0.0, 8.0, 8.0), False),
        VocObject("cat", (10.0, 10.0, 30.0, 20.0), True),
    ]
    path.write_text(voc_xml(IMAGES[1], "b.png", difficult=False))
    assert [o.difficult for o in parse_voc(path).objects] == [False, False]


def test_a_difficult_flag_other_than_0_or_1_names_the_object(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(voc_xml(Img("a", (9, 9), (Obj("dog", (1, 1, 4, 4)),)), "a.png"))
    path.write_text(path.read_text().replace("<difficult>0", "<difficult>yes"))
    with pytest.raises(AnnotationError, match=rf"{path}: object\[0\]\.difficult: 'yes' is not"):
        parse_voc(path)


def test_other_folder_names_are_read(tmp_path):
    write_voc(tmp_path, IMAGES[:2], annotations_dir="annotations", images_dir="images")
    folder = VocFolder(tmp_path, annotations_dir="annotations", images_dir="images")
    issues = AnnotationIssues("error")
    parsed = folder.parse(issues)
    assert [voc.filename for _, voc in parsed["train"]] == ["a.png", "b.png"]
    xml, voc = parsed["train"][1]
    assert folder.image(xml, voc.filename, issues) == str(tmp_path / "images" / "b.png")


def test_a_missing_annotations_folder_names_the_keys_that_set_it(tmp_path):
    write_voc(tmp_path, IMAGES[:1], annotations_dir="annotations", images_dir="images")
    with pytest.raises(
        FileNotFoundError, match=r"Annotations does not exist.*data\.annotations_dir"
    ):
        VocFolder(tmp_path).ids()
