import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from cvtasks.data import cache as cache_module
from cvtasks.data.builtin.digits import DIGITS_DIR, digits, write_digits


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits(tmp_path_factory.mktemp("digits"))


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_layout_and_counts(written: Path) -> None:
    assert written.name == DIGITS_DIR
    counts = {
        split: Counter(p.parent.name for p in (written / split).rglob("*.png"))
        for split in ("train", "val", "test")
    }
    assert {s: sum(c.values()) for s, c in counts.items()} == {
        "train": 1257,
        "val": 270,
        "test": 270,
    }
    for split in counts.values():
        assert sorted(split) == [str(d) for d in range(10)]
    target = load_digits().target
    total = counts["train"] + counts["val"] + counts["test"]
    assert total == Counter(str(t) for t in target)
    names = [p.stem for p in written.rglob("*.png")]
    assert len(set(names)) == 1797  # every source image exactly once


def test_pixels_and_labels_round_trip(written: Path) -> None:
    source = load_digits()
    paths = sorted(written.rglob("*.png"))[::150]
    assert any(np.asarray(Image.open(p)).max() == 255 for p in paths)  # full 0-255 range
    for path in paths:
        index = int(path.stem)
        image = Image.open(path)
        assert image.mode == "L"
        assert image.size == (8, 8)
        pixels = np.asarray(image, dtype=np.float64)
        np.testing.assert_array_equal(pixels, np.round(source.images[index] * 255 / 16))
        np.testing.assert_array_equal(np.round(pixels * 16 / 255), source.images[index])
        assert int(path.parent.name) == source.target[index]


def test_deterministic(written: Path, tmp_path: Path) -> None:
    again = write_digits(tmp_path)
    assert _files(again) == _files(written)


def test_idempotent(written: Path) -> None:
    stamp = (written / "train").stat().st_mtime_ns
    assert write_digits(written.parent) == written
    assert (written / "train").stat().st_mtime_ns == stamp
    assert [p.name for p in written.parent.iterdir()] == [DIGITS_DIR]  # no temporary leftovers


def test_lost_race_keeps_the_winner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp_then_other_process_finishes(**kwargs) -> str:
        folder = real_mkdtemp(**kwargs)
        (tmp_path / DIGITS_DIR / "winner").mkdir(parents=True)
        return folder

    monkeypatch.setattr(cache_module.tempfile, "mkdtemp", mkdtemp_then_other_process_finishes)
    result = write_digits(tmp_path)
    assert result == tmp_path / DIGITS_DIR
    assert [p.name for p in result.iterdir()] == ["winner"]
    assert os.listdir(tmp_path) == [DIGITS_DIR]


def test_factory_uses_the_cache_and_writes_lazily(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CVTASKS_CACHE", str(tmp_path))
    module = digits(batch_size=32)
    assert module.root == tmp_path / "data" / DIGITS_DIR
    assert not module.root.exists()  # construction writes nothing
    module.setup("fit")  # no prepare_data: setup writes what it needs
    assert module.root.is_dir()
    assert module.class_names == [str(d) for d in range(10)]
    assert (len(module.train_dataset), len(module.val_dataset), len(module.test_dataset)) == (
        1257,
        270,
        270,
    )
    batch = next(iter(module.val_dataloader()))
    assert batch["image"].shape == (32, 3, 32, 32)
    assert -1.0 <= batch["image"].min() <= batch["image"].max() <= 1.0
    assert batch["label"].tolist() == [0] * 27 + [1] * 5  # val in path order: class 0 first


def test_prepare_data_writes(written: Path, tmp_path: Path) -> None:
    module = digits(root=tmp_path, image_size=16, cache_images=False)
    module.prepare_data()
    assert _files(module.root) == _files(written)
    assert module.train_dataset is None
    module.setup("test")
    assert module.test_dataset[0]["image"].shape == (3, 16, 16)
