from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cvtasks.data.multilabel_csv import MultilabelCsvDataModule, read_label_csv
from cvtasks.registry import DATASETS
from tests.data.conftest import write_png
from tests.data.multilabel_files import write_colour_set


def write_csv(root: Path, text: str, images=("a.png", "b.png", "c.png")) -> Path:
    for name in images:
        write_png(root / name)
    path = root / "labels.csv"
    path.write_text(text)
    return path


def test_rows_hold_the_semicolon_separated_names(tmp_path):
    csv = write_csv(tmp_path, "image,labels\na.png,cat; dog\nb.png,\nc.png,dog;;\n")
    rows = read_label_csv(csv, tmp_path)
    assert [Path(r.path).name for r in rows] == ["a.png", "b.png", "c.png"]
    assert [set(r.labels) for r in rows] == [{"cat", "dog"}, set(), {"dog"}]
    assert all(r.split is None for r in rows)


def test_datamodule_gives_multi_hot_targets_in_sorted_class_order(tmp_path):
    csv = write_csv(
        tmp_path, "image,labels,split\na.png,zebra;cat,train\nb.png,cat,val\nc.png,ant,test\n"
    )
    data = DATASETS.build(
        "multilabel_csv", root=tmp_path, csv=csv, image_size=8, augment=[], num_workers=0
    )
    assert data.class_names == ["ant", "cat", "zebra"]  # known before setup
    data.setup("fit")
    sample = data.train_dataset[0]
    assert sample["image"].shape == (3, 8, 8)
    torch.testing.assert_close(sample["labels"], torch.tensor([0.0, 1.0, 1.0]))
    torch.testing.assert_close(data.val_dataset[0]["labels"], torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(data.test_dataset[0]["labels"], torch.tensor([1.0, 0.0, 0.0]))
    batch = next(iter(data.train_dataloader()))
    assert batch["labels"].shape == (1, 3)
    assert data.empty_batch()["labels"].shape == (0, 3)


def test_split_column_is_kept_and_missing_splits_are_carved_seeded(tmp_path):
    csv = write_colour_set(tmp_path, count=40, split_column=True)
    data = MultilabelCsvDataModule(root=tmp_path / "images", csv=csv, augment=[], image_size=8)
    named = {split: sorted(Path(r.path).name for r in rows) for split, rows in data.splits.items()}
    assert named["val"] == [f"{k:03d}.png" for k in range(0, 40, 10)]
    assert named["test"] == [f"{k:03d}.png" for k in range(5, 40, 10)]
    assert len(named["train"]) == 32

    plain = write_colour_set(tmp_path / "plain", count=40)
    kwargs = dict(root=tmp_path / "plain" / "images", csv=plain, augment=[], image_size=8)
    first = MultilabelCsvDataModule(val_fraction=0.2, test_fraction=0.1, **kwargs).splits
    again = MultilabelCsvDataModule(val_fraction=0.2, test_fraction=0.1, **kwargs).splits
    assert {s: len(rows) for s, rows in first.items()} == {"train": 28, "val": 8, "test": 4}
    assert first == again
    paths = [r.path for rows in first.values() for r in rows]
    assert len(set(paths)) == 40


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,labels\na.png,cat\n", r"labels.csv: the header lacks column\(s\) image"),
        ("image,labels\na.png,cat\n,dog\n", r"labels.csv:3: the image cell is empty"),
        ("image,labels\nmissing.png,cat\n", r"labels.csv:2: image missing.png is not a file"),
        ("image,labels\na.png,cat\na.png,dog\n", r"labels.csv:3: image a.png is listed again"),
        ("image,labels,split\na.png,cat,dev\n", r"labels.csv:2: split 'dev' is not one of"),
        ("image,labels\na.png,cat,dog\n", r"labels.csv:2: more cells .* with ';'"),
        ("image,labels\n", r"labels.csv: no rows"),
    ],
)
def test_bad_rows_are_named_by_file_and_line(tmp_path, text, message):
    csv = write_csv(tmp_path, text)
    with pytest.raises(ValueError, match=message):
        read_label_csv(csv, tmp_path)


def test_missing_files_name_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data\.csv: the label file .*nope\.csv"):
        read_label_csv(tmp_path / "nope.csv", tmp_path)
    csv = write_csv(tmp_path, "image,labels\na.png,cat\n")
    with pytest.raises(FileNotFoundError, match=r"data\.root: the images folder"):
        read_label_csv(csv, tmp_path / "gone")


def test_a_set_without_any_label_is_refused(tmp_path):
    csv = write_csv(tmp_path, "image,labels\na.png,\nb.png,\n")
    data = MultilabelCsvDataModule(root=tmp_path, csv=csv, augment=[], image_size=8)
    with pytest.raises(ValueError, match="no image has a label"):
        data.setup("fit")


def test_the_csv_reader_config_builds_under_the_multilabel_task(tmp_path, compose_train):
    csv = write_colour_set(tmp_path, count=20)
    cfg = compose_train(
        "task=multilabel",
        "data=multilabel_csv",
        "backbone=lenet5",
        f"data.root={tmp_path / 'images'}",
        f"data.csv={csv}",
    )
    assert cfg.task.name == "multilabel" and cfg.task.loss.name == "bce"
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert data.pop("name") == "multilabel_csv"
    module = DATASETS.build("multilabel_csv", **{**data, "num_workers": 0})
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape[1:] == (3, 32, 32)  # LeNet-5's input
    assert batch["labels"].shape[1] == 3
