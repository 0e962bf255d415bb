"""YOLO files: data.yaml, the label path of an image, label lines as pixel boxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvtasks.data.annotations import AnnotationError, AnnotationIssues
from cvtasks.data.yolo_format import (
    label_path,
    listed_images,
    load_data_yaml,
    parse_labels,
    parse_line,
)
from tests.data.conftest import deadline, make_fifo


@pytest.mark.parametrize(
    ("image", "labels"),
    [
        ("/d/images/train/a.jpg", "/d/labels/train/a.txt"),
        ("/d/images/train/sub/a.b.PNG", "/d/labels/train/sub/a.b.txt"),
        ("/my/images/set/images/val/b.png", "/my/images/set/labels/val/b.txt"),  # the last one
        ("rel/images/c.webp", "rel/labels/c.txt"),
    ],
)
def test_label_path_replaces_the_last_images_folder(image, labels):
    assert label_path(image) == Path(labels)


def test_label_path_without_an_images_folder_is_none():
    assert label_path("/d/train/images.jpg") is None


def test_a_line_becomes_a_pixel_box():
    # 40 wide, 20 high: centre (20, 10), 20 x 5 pixels
    assert parse_line("1 0.5 0.5 0.5 0.25", "f:1", (20, 40), 2) == (1, (10.0, 7.5, 30.0, 12.5))
    # a box past the edge by less than a pixel is clipped to the image
    label, box = parse_line("0 0.5 0.5 1.02 1", "f:1", (20, 40), 2)
    assert label == 0 and box == (0.0, 0.0, 40.0, 20.0)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("1 0.5 0.5 0.5", "4 fields, expected 5: class x_center y_center width height"),
        ("1 0.5 0.5 0.5 0.5 0.1 0.2", "7 fields, expected 5"),
        ("cat 0.5 0.5 0.5 0.5", "class 'cat' is not a whole number"),
        ("1 0.5 half 0.5 0.5", "'half' is not a number"),
        ("1 0.5 nan 0.5 0.5", "'nan' is not a finite number"),
        ("3 0.5 0.5 0.5 0.5", r"class 3 is not in names \(indices 0\.\.2\)"),
        ("-1 0.5 0.5 0.5 0.5", "class -1 is not in names"),
        ("1 0.5 0.5 0 0.5", "width 0 and height 0.5 must be above 0"),
        ("1 0.9 0.5 0.5 0.5", r"box \(0\.9 0\.5 0\.5 0\.5\) lies outside the 40x20 image"),
    ],
)
def test_a_bad_line_names_file_and_line(tmp_path, line, why):
    path = tmp_path / "a.txt"
    path.write_text(f"0 0.5 0.5 0.2 0.2\n{line}\n")
    with pytest.raises(AnnotationError, match=rf"{path}:2: {why}"):
        parse_labels(path, (20, 40), 3)


def test_skip_leaves_out_a_bad_line_only(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("0 0.5 0.5 0.5 0.5\n9 0.5 0.5 0.5 0.5\n\n1 0.25 0.25 0.5 0.5\n")
    issues = AnnotationIssues("skip")
    objects = parse_labels(path, (20, 40), 2, issues)
    assert objects == [(0, (10.0, 5.0, 30.0, 15.0)), (1, (0.0, 0.0, 20.0, 10.0))]
    assert issues.messages == [f"{path}:2: class 9 is not in names (indices 0..1)"]


def test_a_byte_order_mark_and_windows_line_ends_are_read(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeff0 0.5 0.5 0.5 0.5\r\n1 0.25 0.25 0.5 0.5\r\n".encode())
    assert parse_labels(path, (20, 40), 2) == [
        (0, (10.0, 5.0, 30.0, 15.0)),
        (1, (0.0, 0.0, 20.0, 10.0)),
    ]


def test_an_empty_file_has_no_objects_and_a_missing_one_says_so(tmp_path):
    (tmp_path / "empty.txt").write_text("\n")
    assert parse_labels(tmp_path / "empty.txt", (20, 40), 2) == []
    assert parse_labels(tmp_path / "missing.txt", (20, 40), 2) is None


def test_a_fifo_label_file_is_named_not_opened(tmp_path):
    fifo = make_fifo(tmp_path / "a.txt")
    with deadline(), pytest.raises(AnnotationError, match=r"a\.txt: is a FIFO"):
        parse_labels(fifo, (20, 40), 2)


def write_yaml(root: Path, text: str, folders=("images/train", "images/val")) -> Path:
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
    path = root / "data.yaml"
    path.write_text(text)
    return path


def test_data_yaml_names_as_list_or_mapping(tmp_path):
    path = write_yaml(tmp_path, "train: images/train\nval: images/val\ntest:\nnames: [a, b]\n")
    data = load_data_yaml(path, tmp_path)
    assert data.names == ["a", "b"]
    assert data.splits == {"train": [tmp_path / "images/train"], "val": [tmp_path / "images/val"]}
    path.write_text("train: images/train\nnc: 3\nnames:\n  2: c\n  0: a\n  1: b\n")
    assert load_data_yaml(path, tmp_path).names == ["a", "b", "c"]


def test_data_yaml_path_key_and_lists(tmp_path):
    write_yaml(tmp_path / "set", "", folders=("images/a", "images/b"))
    (tmp_path / "set" / "more.txt").write_text("./images/b/x.png\n")
    path = write_yaml(tmp_path, "path: set\ntrain: [images/a, more.txt]\nnames: [a]\n", ())
    data = load_data_yaml(path, tmp_path)
    assert data.splits == {"train": [tmp_path / "set/images/a", tmp_path / "set/more.txt"]}
    assert listed_images(tmp_path / "set/more.txt") == [
        (tmp_path / "set/images/b/x.png", f"{tmp_path / 'set/more.txt'}:1")
    ]


def test_data_yaml_parent_paths_fall_back_to_the_root(tmp_path):
    # Roboflow's export: data.yaml beside train/, but it says ../train/images
    path = write_yaml(tmp_path, "train: ../train/images\nnames: [a]\n", ("train/images",))
    assert load_data_yaml(path, tmp_path).splits["train"] == [tmp_path / "train/images"]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("train: images/train\n", "names: missing"),
        ("train: images/train\nnames: {0: a, 2: b}\n", r"names: the keys \[0, 2\] are not"),
        ("train: images/train\nnames: [a, a]\n", "names: 'a' names two classes"),
        ("train: images/train\nnames: []\n", "names: expected a list"),
        ("train: images/train\nnc: 3\nnames: [a, b]\n", "nc: 3 but names lists 2 classes"),
        ("names: [a]\n", "train: missing"),
        ("train: images/nope\nnames: [a]\n", r"train: 'images/nope' does not exist"),
        ("train: images/train\nval: 3\nnames: [a]\n", "val: 3 is not a path"),
        ("path: nope\ntrain: images/train\nnames: [a]\n", "path: 'nope' is not a folder"),
        ("train: [images/train\n", "not a readable YAML file"),
        ("- train\n", "expected a mapping"),
    ],
)
def test_a_bad_data_yaml_names_the_key(tmp_path, text, why):
    path = write_yaml(tmp_path, text)
    with pytest.raises(AnnotationError, match=rf"{path}: {why}"):
        load_data_yaml(path, tmp_path)


def test_a_missing_data_yaml_says_what_it_holds(tmp_path):
    with pytest.raises(AnnotationError, match=r"data\.yaml does not exist; a YOLO dataset needs"):
        load_data_yaml(tmp_path / "data.yaml", tmp_path)
