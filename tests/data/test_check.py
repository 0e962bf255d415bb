"""The data checker's parts: keypoint checks, duplicate search, size statistics, the collector of
skipped annotation problems, and a whole check of a class-folder set against what was written."""

from __future__ import annotations

import hashlib
import shutil
import statistics

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cvtasks.data.annotations import AnnotationError, AnnotationIssues, collecting_issues
from cvtasks.data.checks import check_datamodule, format_text
from cvtasks.data.checks.faults import keypoint_faults
from cvtasks.data.checks.report import duplicates_across_splits, file_hash, size_stats
from cvtasks.data.checks.samples import ImageRecord
from cvtasks.registry import DATASETS
from tests.data.conftest import write_png

NAMES = ["left_eye", "right_eye", "nose", "chin", "ear"]


def test_keypoint_faults_flag_points_off_the_image_and_unknown_visibility_flags():
    points = np.array([[0, 0], [40, 30], [40.5, 10], [-3, -3], [5, 5]], dtype=np.float32)
    flags = np.array([2, 1, 2, 0, 3])  # on the far edges is inside; flag 0 carries no position
    faults = keypoint_faults("a.png (image_id 7)", points, flags, (30, 40), NAMES)
    assert [(f.kind, f.where) for f in faults] == [
        ("keypoint_outside", "a.png (image_id 7)"),
        ("visibility", "a.png (image_id 7)"),
    ]
    assert "keypoint 2 ('nose') at (40.5, 10) lies outside its 40x30 image" in faults[0].message
    assert "keypoint 4 ('ear') has visibility flag 3" in faults[1].message


def test_keypoint_faults_of_a_clean_object_are_none():
    points = np.array([[1, 1], [39, 29]], dtype=np.float32)
    assert keypoint_faults("a.png", points, np.array([2, 1]), (30, 40), NAMES) == []


def test_duplicates_are_copies_across_splits_only(tmp_path):
    a = write_png(tmp_path / "train" / "a.png", value=1)
    copy = tmp_path / "val" / "a_copy.png"
    copy.parent.mkdir()
    shutil.copy(a, copy)
    b = write_png(tmp_path / "val" / "b.png", value=2)
    same_split = tmp_path / "val" / "b_again.png"
    shutil.copy(b, same_split)
    shared = write_png(tmp_path / "c.png", value=3)
    files = {
        "train": [str(a)],
        "val": [str(copy), str(b), str(same_split), str(shared)],
        "test": [str(shared)],  # one file given to two splits: the config's choice, not a copy
    }
    groups = duplicates_across_splits(files)
    assert groups == [[("train", str(a)), ("val", str(copy))]]


def test_file_hash_is_of_the_bytes(tmp_path):
    first, second = tmp_path / "x.bin", tmp_path / "y.bin"
    first.write_bytes(b"abc")
    second.write_bytes(b"abd")
    assert file_hash(str(first)) != file_hash(str(second))
    assert file_hash(str(first)) == hashlib.blake2b(b"abc", digest_size=20).hexdigest()
    assert file_hash(str(tmp_path / "missing.png")) is None


def test_size_stats_min_median_max_of_the_readable_images():
    sizes = [(10, 20), (30, 5), (12, 8), (40, 7)]  # (height, width)
    records = [ImageRecord(f"{i}.png", size) for i, size in enumerate(sizes)]
    records.append(ImageRecord("unreadable.png"))
    stats = size_stats(records)
    widths, heights = [w for _, w in sizes], [h for h, _ in sizes]
    assert stats["width"] == {"min": 5, "median": statistics.median(widths), "max": 20}
    assert stats["height"] == {"min": 10, "median": statistics.median(heights), "max": 40}
    assert size_stats([ImageRecord("unreadable.png")]) == {}


def test_collecting_issues_gathers_every_skipped_problem_and_only_inside_the_block():
    issues = AnnotationIssues("skip")
    issues.report("before")
    with collecting_issues() as found:
        issues.report("ann.json: annotations[1].bbox: outside")
        AnnotationIssues("skip", unit="boxes").report("b.xml: object 2: no area")
        with pytest.raises(AnnotationError, match="refused"):
            AnnotationIssues("error").report("refused")
    issues.report("after")
    assert found == ["ann.json: annotations[1].bbox: outside", "b.xml: object 2: no area"]
    assert issues.messages == ["before", "ann.json: annotations[1].bbox: outside", "after"]


def test_check_counts_what_the_folders_hold_and_reads_every_image(tmp_path):
    written = {"train": {"cat": 3, "dog": 2}, "val": {"cat": 1, "dog": 2}, "test": {"cat": 2}}
    for k, (split, classes) in enumerate(written.items()):
        for c, (name, count) in enumerate(classes.items()):
            for i in range(count):
                size = (6 + i, 5 + c)  # (height, width): sizes differ by class and index
                write_png(tmp_path / split / name / f"{i}.png", 40 * k + 10 * c + i, size)
    datamodule = DATASETS.build("image_folder", root=tmp_path)
    report = check_datamodule(datamodule, "image_folder")
    assert report.clean, report.faults
    for split, classes in written.items():
        summary = report.splits[split]
        assert summary.counts == classes
        assert summary.images == sum(classes.values())
        heights = [6 + i for count in classes.values() for i in range(count)]
        assert summary.sizes["height"]["max"] == max(heights)
        assert summary.sizes["height"]["min"] == min(heights)


class _TensorSplits:
    """A data module whose datasets hold tensors, not files (as a plugin's may)."""

    root = None

    def prepare_data(self) -> None:
        """Nothing to write: the tensors are made in setup."""

    def setup(self, stage: str) -> None:
        self.train_dataset = TensorDataset(torch.zeros(3, 2))
        self.val_dataset = self.test_dataset = None


def test_datasets_that_list_no_files_are_reported_as_not_read():
    report = check_datamodule(_TensorSplits(), "tensors")
    assert list(report.splits) == ["train"]
    assert report.splits["train"].images == 0
    assert report.splits["train"].note == "not read: a TensorDataset lists no image files to check"
    assert "train: not read: a TensorDataset lists no image files" in format_text(report)
