"""Inputs of ``predict``: files, folders, globs, unreadable files, unique picture names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cvtasks.cli.inputs import ImageFiles, collate, find_inputs, picture_names
from tests.data.conftest import deadline, make_fifo


def write_images(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (10, 6)).save(root / "a.png")
    Image.new("RGB", (7, 9)).save(root / "sub" / "a.jpg")
    (root / "readme.md").write_text("x")
    (root / "sub" / "bad.png").write_bytes(b"not a png")


def test_find_inputs_from_folder_glob_and_file(tmp_path):
    write_images(tmp_path)
    images, skipped = find_inputs(str(tmp_path))
    assert [p.name for p in images] == ["a.png", "a.jpg", "bad.png"]
    assert skipped == [(str(tmp_path / "readme.md"), "not an image file (.md)")]
    assert [p.name for p in find_inputs(str(tmp_path / "*.png"))[0]] == ["a.png"]
    assert find_inputs(str(tmp_path / "a.png")) == ([tmp_path / "a.png"], [])
    with pytest.raises(FileNotFoundError, match=r"input=.*nothing\.png"):
        find_inputs(str(tmp_path / "nothing.png"))


def test_unreadable_images_become_named_errors(tmp_path):
    write_images(tmp_path)
    images, _ = find_inputs(str(tmp_path))

    def transform(image: np.ndarray) -> dict:
        return {"image": torch.zeros(3, 4, 4)}

    batch = collate([ImageFiles(images, transform)[k] for k in range(3)])
    assert batch["orig_size"].tolist() == [[6, 10], [9, 7]]
    assert batch["image"].shape == (2, 3, 4, 4)
    [(path, reason)] = batch["errors"]
    assert path.endswith("bad.png") and "bad.png" in reason


def test_picture_names_are_unique():
    names = picture_names([Path("x/a.png"), Path("y/a.png"), Path("y/b.png")])
    assert list(names.values()) == ["a", "a_2", "b"]


def test_folder_and_glob_listing_survive_link_loops_and_list_each_file_once(tmp_path):
    write_images(tmp_path)
    (tmp_path / "sub" / "up").symlink_to("..")
    (tmp_path / "sub" / "self").symlink_to(".")
    (tmp_path / "again.png").symlink_to(tmp_path / "a.png")
    with deadline():  # Python's recursive glob would follow the two loops for ever
        found = [find_inputs(str(tmp_path)), find_inputs(str(tmp_path / "**" / "*.*"))]
    for images, skipped in found:
        assert [p.name for p in images] == ["a.png", "a.jpg", "bad.png"]
        assert (str(tmp_path / "again.png"), f"the same file as {tmp_path / 'a.png'}") in skipped
    assert {Path(p).name for p, _ in found[0][1]} == {"again.png", "readme.md", "up", "self"}
    assert {Path(p).name for p, _ in found[1][1]} == {"again.png", "readme.md"}  # match *.*
    images, _ = find_inputs(str(tmp_path / "**" / "*.png"))
    assert [p.name for p in images] == ["a.png", "bad.png"]
    images, _ = find_inputs(str(tmp_path / "*" / "*.png"))  # one level: plain glob
    assert [p.name for p in images] == ["bad.png"]


def test_special_files_are_skipped_with_the_reason(tmp_path):
    write_images(tmp_path)
    fifo = make_fifo(tmp_path / "sub" / "pipe.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with deadline():
        images, skipped = find_inputs(str(tmp_path))
        alone = find_inputs(str(fifo))
    assert [p.name for p in images] == ["a.png", "a.jpg", "bad.png"]
    assert (str(fifo), "a FIFO (named pipe), not a regular file") in skipped
    assert (str(tmp_path / "empty.jpg"), "empty (0 bytes)") in skipped
    assert alone == ([], [(str(fifo), "is a FIFO (named pipe), not a regular file")])


def test_picture_names_differ_in_more_than_case():
    names = picture_names([Path("x/Cat.png"), Path("y/cat.jpg"), Path("z/CAT.png")])
    assert list(names.values()) == ["Cat", "cat_2", "CAT_3"]  # one folder on macOS or Windows


def test_predict_reads_images_as_training_does(tmp_path):
    exif = Image.Exif()
    exif[274] = 6  # rotated 90° clockwise when displayed
    Image.new("RGB", (10, 6)).save(tmp_path / "turned.jpg", exif=exif)
    Image.fromarray(np.full((4, 5), 65535, dtype=np.uint16)).save(tmp_path / "deep.png")

    def transform(image: np.ndarray) -> dict:
        return {"image": torch.from_numpy(image)}

    files = ImageFiles([tmp_path / "turned.jpg", tmp_path / "deep.png"], transform)
    assert files[0]["orig_size"].tolist() == [10, 6]
    assert files[1]["image"].min().item() == 255  # 16-bit white stays white
