"""Pairing images/ with masks/ by name, and class names from classes.txt or the masks."""

import numpy as np
import pytest

from cvtasks.data.mask_folders import first_few, pair_folder, read_class_names
from cvtasks.data.masks import BadMaskError
from tests.data.test_image_masks import write_pair


def test_images_pair_with_masks_of_the_same_relative_name_whatever_the_suffix(tmp_path):
    write_pair(tmp_path, "b", np.zeros((4, 4)), suffix=".jpg")
    (tmp_path / "images" / "sub").mkdir()
    (tmp_path / "masks" / "sub").mkdir()
    write_pair(tmp_path, "sub/a", np.ones((4, 4)))
    pairs = pair_folder(tmp_path)
    assert pairs == [
        (str(tmp_path / "images" / "b.jpg"), str(tmp_path / "masks" / "b.png")),
        (str(tmp_path / "images" / "sub" / "a.png"), str(tmp_path / "masks" / "sub" / "a.png")),
    ]


def test_an_image_without_a_mask_is_named_or_kept_with_none(tmp_path):
    write_pair(tmp_path, "a", np.zeros((4, 4)))
    write_pair(tmp_path, "b", np.zeros((4, 4)))
    (tmp_path / "masks" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) have no mask .*b\.png"):
        pair_folder(tmp_path)
    assert pair_folder(tmp_path, skip_missing=True)[1] == (str(tmp_path / "images" / "b.png"), None)


def test_class_names_come_from_classes_txt_else_the_largest_value_but_the_ignore_index(tmp_path):
    write_pair(tmp_path, "a", [[0, 2], [255, 255]])
    write_pair(tmp_path, "b", [[1, 0], [0, 255]])
    pairs = pair_folder(tmp_path)
    assert read_class_names(tmp_path, pairs) == ["0", "1", "2"]  # 255 is no class
    (tmp_path / "classes.txt").write_text("sky\n\ncar\n")
    assert read_class_names(tmp_path, pairs) == ["sky", "car"]
    (tmp_path / "classes.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"classes\.txt names no classes"):
        read_class_names(tmp_path, pairs)


def test_an_undecodable_mask_fails_or_is_passed_over_when_reading_classes(tmp_path):
    write_pair(tmp_path, "a", [[0, 3]])
    write_pair(tmp_path, "b", [[0, 1]])
    (tmp_path / "masks" / "a.png").write_bytes(b"not a png")
    pairs = pair_folder(tmp_path)
    with pytest.raises(BadMaskError, match=r"a\.png"):
        read_class_names(tmp_path, pairs)
    assert read_class_names(tmp_path, pairs, skip_bad=True) == ["0", "1"]


def test_first_few_lists_five_then_an_ellipsis():
    assert first_few(["a", "b"]) == "a, b"
    assert first_few([str(i) for i in range(7)]) == "0, 1, 2, 3, 4, ..."
