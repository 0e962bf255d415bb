import io
import os
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cvtasks.data import BadImageError, ImageFolderDataModule, ImageFolderDataset
from cvtasks.data.image_folder import scan_image_folder, stratified_split
from cvtasks.data.images import BadImageWarning
from cvtasks.data.scan import DataScanWarning, DuplicateFileError
from cvtasks.data.transforms import build_pipeline
from tests.data.conftest import deadline, make_fifo

COUNTS = {"cat": 20, "dog": 10, "emu": 7}


def _labels(samples) -> Counter:
    return Counter(label for _, label in samples)


def test_flat_layout_split_sizes_and_stratification(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path, COUNTS)
    names, splits = scan_image_folder(tmp_path, val_fraction=0.2, test_fraction=0.1)
    assert names == ["cat", "dog", "emu"]
    assert {s: len(v) for s, v in splits.items()} == {"train": 26, "val": 7, "test": 4}
    assert _labels(splits["val"]) == {0: 4, 1: 2, 2: 1}  # 20 %, per class
    assert _labels(splits["train"]) + _labels(splits["val"]) + _labels(splits["test"]) == {
        0: 20,
        1: 10,
        2: 7,
    }
    every = [p for split in splits.values() for p, _ in split]
    assert len(every) == len(set(every)) == sum(COUNTS.values())
    for split in splits.values():
        for path, label in split:
            assert Path(path).parent.name == names[label]


def test_split_is_deterministic_and_seeded(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path, COUNTS)
    first = scan_image_folder(tmp_path, seed=3)
    assert scan_image_folder(tmp_path, seed=3) == first
    assert scan_image_folder(tmp_path, seed=4)[1]["val"] != first[1]["val"]


def test_adding_a_class_keeps_the_other_splits(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path, COUNTS)
    before = scan_image_folder(tmp_path)[1]["val"]
    make_folder(tmp_path, {"fox": 9})
    after = scan_image_folder(tmp_path)[1]["val"]
    assert [p for p, _ in before] == [p for p, _ in after if "fox" not in p]


def test_train_layout_with_val_and_test(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path / "train", {"b": 5, "a": 4})
    make_folder(tmp_path / "valid", {"a": 2, "b": 1})
    make_folder(tmp_path / "test", {"b": 3})
    names, splits = scan_image_folder(tmp_path)
    assert names == ["a", "b"]
    assert {s: len(v) for s, v in splits.items()} == {"train": 9, "val": 3, "test": 3}
    assert _labels(splits["test"]) == {1: 3}
    assert all("/valid/" in p for p, _ in splits["val"])


def test_train_layout_missing_splits_are_carved_from_train(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path / "train", {"a": 20, "b": 20})
    make_folder(tmp_path / "test", {"a": 3})
    _, splits = scan_image_folder(tmp_path, val_fraction=0.25, test_fraction=0.5)
    assert len(splits["val"]) == 10  # test_fraction is unused: test exists
    assert len(splits["train"]) == 30
    assert len(splits["test"]) == 3
    assert all("/train/" in p for p, _ in splits["val"])


def test_every_class_keeps_a_training_image(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path, {"a": 1, "b": 2, "c": 30})
    _, splits = scan_image_folder(tmp_path, val_fraction=0.45, test_fraction=0.45)
    assert set(_labels(splits["train"])) == {0, 1, 2}


def test_stratified_split_totals() -> None:
    groups = {str(c): list(range(n)) for c, n in enumerate([178, 182, 177, 183, 181, 182])}
    split = stratified_split(groups, {"val": 0.15, "test": 0.15}, seed=0)
    total = sum(len(v) for v in groups.values())
    assert sum(len(v) for v in split["val"].values()) == round(total * 0.15)
    assert sum(len(v) for v in split["test"].values()) == round(total * 0.15)
    for name, items in groups.items():
        parts = [*split["train"][name], *split["val"][name], *split["test"][name]]
        assert sorted(parts) == items
        assert abs(len(split["val"][name]) - len(items) * 0.15) < 1


def test_missing_root_names_path_and_key(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        scan_image_folder(missing)
    assert str(missing) in str(info.value)
    assert "data.root" in str(info.value)
    module = ImageFolderDataModule(missing)  # construction is fine: files may come later
    with pytest.raises(FileNotFoundError, match=r"data\.root"):
        module.setup("fit")


def test_empty_root_and_empty_class(tmp_path: Path, make_folder) -> None:
    with pytest.raises(FileNotFoundError, match="no class folders"):
        scan_image_folder(tmp_path)
    make_folder(tmp_path, {"a": 3})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match=r"no images in class folder\(s\) b "):
        scan_image_folder(tmp_path)


def test_unknown_class_in_val(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path / "train", {"a": 3, "b": 3})
    make_folder(tmp_path / "val", {"a": 1, "zebra": 1})
    with pytest.raises(ValueError, match="zebra"):
        scan_image_folder(tmp_path)


def test_ambiguous_or_partial_layouts(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path / "val", {"a": 1})
    make_folder(tmp_path / "a", {"x": 1})
    with pytest.raises(ValueError, match="no 'train' folder"):
        scan_image_folder(tmp_path)
    make_folder(tmp_path / "train", {"a": 2})
    make_folder(tmp_path / "validation", {"a": 1})
    with pytest.raises(ValueError, match="keep one"):
        scan_image_folder(tmp_path)


def test_extensions_hidden_and_nested_files(tmp_path: Path, make_folder, png) -> None:
    make_folder(tmp_path, {"a": 3}, suffixes=(".png", ".JPG", ".bmp"))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    png(tmp_path / "a" / "deeper" / "x.png")
    png(tmp_path / "a" / ".hidden.png")
    png(tmp_path / "a" / ".ipynb_checkpoints" / "y.png")
    _, splits = scan_image_folder(tmp_path, val_fraction=0, test_fraction=0)
    assert sorted(Path(p).name for p, _ in splits["train"]) == [
        "000.png",
        "001.JPG",
        "002.bmp",
        "x.png",
    ]


def test_bad_fractions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.val_fraction"):
        ImageFolderDataModule(tmp_path, val_fraction=1.2)
    with pytest.raises(ValueError, match=r"data\.val_fraction \+ data\.test_fraction"):
        ImageFolderDataModule(tmp_path, val_fraction=0.5, test_fraction=0.5)


def test_datamodule_batches(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path, COUNTS)
    module = ImageFolderDataModule(tmp_path, batch_size=8, image_size=12, split_seed=1)
    assert module.class_names == ["cat", "dog", "emu"]  # readable before setup
    assert module.num_classes == 3
    module.setup("fit")
    assert len(module.train_dataset) + len(module.val_dataset) + len(module.test_dataset) == 37
    assert module.predict_dataset is module.test_dataset
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (8, 3, 12, 12)
    assert batch["image"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64
    assert batch["skipped"].item() == 0
    sample = module.val_dataset[0]
    path, label = module.val_dataset.samples[0]
    pixels = np.asarray(Image.open(path).convert("RGB").resize((12, 12)), dtype=np.float64)
    expected = ((pixels / 255 - module.mean) / module.std).transpose(2, 0, 1)
    np.testing.assert_allclose(sample["image"].numpy(), expected, atol=1e-5)
    assert sample["label"].item() == label


def _truncated(path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8) + 7).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[:40])


def _folder_with_bad_files(root: Path, make_folder) -> tuple[Path, Path]:
    make_folder(root, {"a": 3, "b": 3})
    garbage = root / "a" / "x.png"
    garbage.write_bytes(b"\x00garbage, not a png")
    truncated = root / "b" / "y.png"
    _truncated(truncated)
    return garbage, truncated


def _eval_pipeline():
    return build_pipeline(None, 8, (0.5,) * 3, (0.5,) * 3, train=False)


@pytest.mark.parametrize("cache_images", [False, True])
def test_bad_image_error_names_the_file(tmp_path: Path, make_folder, cache_images: bool) -> None:
    garbage, truncated = _folder_with_bad_files(tmp_path, make_folder)
    dataset = ImageFolderDataset(
        [(garbage, 0), (truncated, 1)], _eval_pipeline(), cache_images=cache_images
    )
    for i, path in enumerate([garbage, truncated]):
        with pytest.raises(BadImageError, match=re.escape(str(path))):
            dataset[i]


def test_skip_mode_counts_bad_images(tmp_path: Path, make_folder) -> None:
    garbage, truncated = _folder_with_bad_files(tmp_path, make_folder)
    module = ImageFolderDataModule(
        tmp_path, batch_size=16, image_size=8, val_fraction=0, test_fraction=0, on_bad_image="skip"
    )
    module.setup("fit")
    with pytest.warns(BadImageWarning) as record:
        batches = list(module.train_dataloader())
    assert len(batches) == 1
    assert batches[0]["skipped"].item() == 2
    assert batches[0]["image"].shape == (6, 3, 8, 8)
    assert sorted(batches[0]["label"].tolist()) == [0, 0, 0, 1, 1, 1]
    messages = " ".join(str(w.message) for w in record)
    assert str(garbage) in messages
    assert str(truncated) in messages


def test_error_mode_through_the_loader(tmp_path: Path, make_folder) -> None:
    _folder_with_bad_files(tmp_path, make_folder)
    module = ImageFolderDataModule(tmp_path, image_size=8, val_fraction=0, test_fraction=0)
    module.setup("fit")
    with pytest.raises(BadImageError, match=r"[xy]\.png"):
        list(module.train_dataloader())


def test_all_bad_batch_in_skip_mode(tmp_path: Path, make_folder) -> None:
    garbage, truncated = _folder_with_bad_files(tmp_path, make_folder)
    dataset = ImageFolderDataset([(garbage, 0), (truncated, 1)], _eval_pipeline(), "skip")
    module = ImageFolderDataModule(tmp_path, batch_size=4, image_size=8)
    module.val_dataset = dataset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImageWarning)
        (batch,) = list(module.val_dataloader())
    assert batch["image"].shape == (0, 3, 8, 8)
    assert batch["label"].shape == (0,)
    assert batch["skipped"].item() == 2


def test_cache_gives_the_same_samples_and_protects_pixels(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path, {"a": 3})
    samples = [(p, 0) for p in sorted((tmp_path / "a").iterdir())]
    plain = ImageFolderDataset(samples, _eval_pipeline())
    cached = ImageFolderDataset(samples, _eval_pipeline(), cache_images=True)
    for i in range(3):
        for _ in range(2):
            assert torch.equal(plain[i]["image"], cached[i]["image"])
    cached.load_image(0)[:] = 255  # callers get a copy
    assert torch.equal(plain[0]["image"], cached[0]["image"])


def test_dataset_validates_policy() -> None:
    with pytest.raises(ValueError, match=r"data\.on_bad_image"):
        ImageFolderDataset([], _eval_pipeline(), on_bad_image="warn")


# -- links, special files and other things a folder can hold ---------------------------------
def _all_samples(splits) -> list:
    return [sample for split in splits.values() for sample in split]


def test_a_link_to_a_parent_folder_lists_each_file_once(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path, {"cat": 6, "dog": 4})
    (tmp_path / "cat" / "up").symlink_to("..", target_is_directory=True)
    with pytest.warns(DataScanWarning, match=r"1 link loop\(s\).*cat/up: a link back to"):
        names, splits = scan_image_folder(tmp_path, val_fraction=0.2, test_fraction=0.2)
    samples = _all_samples(splits)
    assert len(samples) == 10 == len({p for p, _ in samples})  # no copy through the loop
    assert all(Path(p).parent.name == names[label] for p, label in samples)  # none mislabelled


def test_links_inside_root_are_followed_once(tmp_path: Path, make_folder, png) -> None:
    make_folder(tmp_path / "train", {"cat": 2, "dog": 2})
    png(tmp_path / "extra" / "e.png")  # outside train/ but inside the root
    (tmp_path / "train" / "cat" / "more").symlink_to(tmp_path / "extra")
    (tmp_path / "train" / "cat" / "again.png").symlink_to("000.png")
    with pytest.warns(DataScanWarning, match=r"1 second path.*again\.png: the same file as"):
        _, splits = scan_image_folder(tmp_path, val_fraction=0, test_fraction=0)
    cats = sorted(Path(p).name for p, label in splits["train"] if label == 0)
    assert cats == ["000.png", "001.png", "e.png"]


def test_links_leaving_the_root_are_skipped_unless_asked(tmp_path: Path, make_folder) -> None:
    root = make_folder(tmp_path / "data", {"cat": 2, "dog": 2})
    make_folder(tmp_path / "elsewhere", {"more": 3})
    (root / "cat" / "ext").symlink_to(tmp_path / "elsewhere" / "more")
    with pytest.warns(DataScanWarning) as caught:
        _, splits = scan_image_folder(root, val_fraction=0, test_fraction=0)
    [warning] = [w for w in caught if w.category is DataScanWarning]
    message = str(warning.message)
    assert "1 symbolic link(s) leaving" in message and "cat/ext" in message
    assert "data.follow_links=true" in message
    assert len(splits["train"]) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataScanWarning)
        _, splits = scan_image_folder(root, val_fraction=0, test_fraction=0, follow_links=True)
    assert Counter(label for _, label in splits["train"]) == {0: 5, 1: 2}


def test_a_file_in_two_class_folders_is_an_error_naming_both(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path, {"cat": 3, "dog": 3})
    (tmp_path / "dog" / "shared.png").symlink_to(tmp_path / "cat" / "001.png")
    with pytest.raises(DuplicateFileError) as info:
        scan_image_folder(tmp_path)
    message = str(info.value)
    assert f"{tmp_path / 'cat' / '001.png'} (cat)" in message
    assert f"{tmp_path / 'dog' / 'shared.png'} (dog)" in message and "same file" in message


def test_a_hard_link_from_train_to_test_is_an_error(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path / "train", {"a": 3})
    (tmp_path / "test" / "a").mkdir(parents=True)
    os.link(tmp_path / "train" / "a" / "000.png", tmp_path / "test" / "a" / "leak.png")
    with pytest.raises(DuplicateFileError, match=r"\(train/a\) and .*leak\.png \(test/a\)"):
        scan_image_folder(tmp_path)


def test_a_class_folder_linking_to_another_is_an_error(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path, {"cat": 3, "dog": 3})
    (tmp_path / "kitty").symlink_to(tmp_path / "cat")
    with pytest.raises(DuplicateFileError, match=r"class folders .*cat and .*kitty are the same"):
        scan_image_folder(tmp_path)


def test_a_fifo_with_an_image_name_is_skipped_not_opened(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path, {"cat": 3, "dog": 3})
    make_fifo(tmp_path / "cat" / "pipe.png")
    with deadline(), pytest.warns(DataScanWarning, match=r"1 special file.*pipe\.png: a FIFO"):
        module = ImageFolderDataModule(tmp_path, batch_size=8, image_size=8, val_fraction=0)
        module.setup("fit")
        batches = [*module.train_dataloader(), *module.test_dataloader()]
    assert sum(len(b["label"]) for b in batches) == 6  # every image read, the FIFO never opened
    assert not any(p.endswith("pipe.png") for p, _ in _all_samples(module.splits))


def test_empty_image_files_are_named_or_skipped(tmp_path: Path, make_folder) -> None:
    make_folder(tmp_path, {"cat": 3, "dog": 3})
    (tmp_path / "dog" / "cut.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"1 image file\(s\) .*empty.*dog/cut\.png.*on_bad_image"):
        scan_image_folder(tmp_path)
    with pytest.warns(DataScanWarning, match=r"1 empty \(0-byte\) image file.*cut\.png"):
        _, splits = scan_image_folder(tmp_path, on_empty="skip")
    assert len(_all_samples(splits)) == 6


def test_archive_and_nas_metadata_folders_are_not_data(tmp_path: Path, make_folder, png) -> None:
    make_folder(tmp_path, {"cat": 2, "dog": 2})
    png(tmp_path / "__MACOSX" / "cat" / "._000.png")
    png(tmp_path / "cat" / "@eaDir" / "000.png" / "SYNOFILE_THUMB_XL.jpg")
    names, splits = scan_image_folder(tmp_path, val_fraction=0, test_fraction=0)
    assert names == ["cat", "dog"] and len(splits["train"]) == 4


def test_follow_links_is_checked_by_the_datamodule(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.follow_links must be one of False, True; got 'x'"):
        ImageFolderDataModule(tmp_path, follow_links="x")
