"""The built-in shapes dataset: deterministic, atomic, in the image_masks layout, read back."""

import numpy as np
import pytest

from cvtasks.data.builtin import shapes
from cvtasks.data.masks import read_mask
from cvtasks.registry import DATASETS

SMALL = {"train": 6, "val": 3, "test": 2}


@pytest.fixture
def small_sizes(monkeypatch):
    monkeypatch.setattr(shapes, "SHAPES_SIZES", SMALL)


def test_samples_are_deterministic_and_hold_every_class():
    first = shapes.draw_sample(np.random.default_rng([0, 0, 7]))
    again = shapes.draw_sample(np.random.default_rng([0, 0, 7]))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    seen = set()
    for i in range(40):
        image, mask = shapes.draw_sample(np.random.default_rng([0, 0, i]))
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert mask.shape == (64, 64) and mask.max() <= 3 and (mask > 0).any()
        assert image.std() > 10  # textured, not flat
        seen.update(np.unique(mask).tolist())
    assert seen == {0, 1, 2, 3}


def test_written_once_atomically_in_the_image_masks_layout(tmp_path, small_sizes):
    root = shapes.write_shapes(tmp_path / "a")
    assert root == tmp_path / "a" / shapes.SHAPES_DIR
    assert (root / "classes.txt").read_text().split() == list(shapes.SHAPES_CLASSES)
    for split, count in SMALL.items():
        assert len(list((root / split / "images").glob("*.png"))) == count
        assert len(list((root / split / "masks").glob("*.png"))) == count
    assert [p.name for p in (tmp_path / "a").iterdir()] == [shapes.SHAPES_DIR]  # no temp left
    other = shapes.write_shapes(tmp_path / "b")
    for path in root.rglob("*.png"):
        assert path.read_bytes() == (other / path.relative_to(root)).read_bytes()
    stamp = (root / "train" / "masks" / "00000.png").stat().st_mtime_ns
    assert shapes.write_shapes(tmp_path / "a") == root  # already there: not written again
    assert (root / "train" / "masks" / "00000.png").stat().st_mtime_ns == stamp
    assert read_mask(root / "val" / "masks" / "00001.png").max() <= 3


def test_registered_datamodule_reads_the_files_back(tmp_path, small_sizes):
    data = DATASETS.build("shapes", root=tmp_path, batch_size=4)
    data.prepare_data()
    data.setup("fit")
    assert data.class_names == list(shapes.SHAPES_CLASSES)
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["mask"].shape == (4, 64, 64)
    assert batch["mask"].max() <= 3 and batch["orig_size"].tolist() == [[64, 64]] * 4
