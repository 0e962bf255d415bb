"""Inputs of ``predict``: files, folders, globs, unreadable files, unique picture names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cvtasks.cli.inputs import ImageFiles, collate, find_inputs, picture_names
from cvtasks.cli.render import enlarge_factor, jsonable


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


def test_jsonable_and_enlarge_factor():
    value = {"t": torch.tensor([1.5]), "n": np.float32(2), "p": (1, np.arange(2))}
    assert jsonable(value) == {"t": [1.5], "n": 2.0, "p": [1, [0, 1]]}
    assert enlarge_factor((32, 20)) == 8 and enlarge_factor((640, 480)) == 1
