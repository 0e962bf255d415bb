"""FolderScan (each real file once, no loops, links bounded by the root) and shared files."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from cvtasks.data.scan import DataScanWarning, DuplicateFileError, FolderScan, refuse_shared_files
from tests.data.conftest import deadline, make_fifo, write_png


def test_two_loops_in_one_folder_finish_and_list_each_file_once(tmp_path: Path) -> None:
    write_png(tmp_path / "a" / "x.png")
    write_png(tmp_path / "a" / "b" / "y.png")
    (tmp_path / "a" / "b" / "up").symlink_to("..")
    (tmp_path / "a" / "b" / "self").symlink_to(".")
    scan = FolderScan(tmp_path)
    with deadline():  # without loop detection the walk would not end
        files = scan.files(tmp_path / "a", group="a")
    assert files == [str(tmp_path / "a" / "b" / "y.png"), str(tmp_path / "a" / "x.png")]
    assert sorted(Path(p).name for p, _ in scan.skipped["loop"]) == ["self", "up"]


def test_a_second_link_to_one_folder_is_walked_once_per_group(tmp_path: Path) -> None:
    write_png(tmp_path / "pool" / "p.png")
    for name in ("one", "two"):
        (tmp_path / "cat").mkdir(exist_ok=True)
        (tmp_path / "cat" / name).symlink_to(tmp_path / "pool")
    scan = FolderScan(tmp_path)
    assert scan.files(tmp_path / "cat", group="cat") == [str(tmp_path / "cat" / "one" / "p.png")]
    assert scan.skipped["duplicate"] == [
        (str(tmp_path / "cat" / "two"), f"the same folder as {tmp_path / 'pool'}")
    ]


def test_masks_keep_every_name_and_images_drop_duplicates(tmp_path: Path) -> None:
    write_png(tmp_path / "m" / "a.png")
    (tmp_path / "m" / "b.png").symlink_to("a.png")
    scan = FolderScan(tmp_path)
    assert [Path(p).name for p in scan.files(tmp_path / "m", group=None)] == ["a.png", "b.png"]
    assert [Path(p).name for p in scan.files(tmp_path / "m", group="train")] == ["a.png"]


def test_one_warning_counts_each_reason_with_an_example(tmp_path: Path) -> None:
    write_png(tmp_path / "root" / "c" / "a.png")
    write_png(tmp_path / "out" / "o.png")
    (tmp_path / "root" / "c" / "o1.png").symlink_to(tmp_path / "out" / "o.png")
    (tmp_path / "root" / "c" / "o2.png").symlink_to(tmp_path / "out" / "o.png")
    (tmp_path / "root" / "c" / "gone.png").symlink_to(tmp_path / "nothing.png")
    make_fifo(tmp_path / "root" / "c" / "pipe.jpg")
    scan = FolderScan(tmp_path / "root")
    with pytest.warns(DataScanWarning) as caught, scan.reporting():
        files = scan.files(tmp_path / "root" / "c", group="c")
    assert files == [str(tmp_path / "root" / "c" / "a.png")]
    [warning] = caught.list
    message = str(warning.message)
    assert message.startswith("data.root: skipped 2 symbolic link(s) leaving")
    assert "o1.png: a link to" in message and "data.follow_links=true" in message
    assert "1 broken link(s) (e.g." in message and "gone.png" in message
    assert "1 special file(s)" in message and "pipe.jpg: a FIFO (named pipe)" in message
    assert "\n" not in message


def test_nothing_skipped_means_no_warning(tmp_path: Path) -> None:
    write_png(tmp_path / "c" / "a.png")
    scan = FolderScan(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with scan.reporting():
            assert len(scan.files(tmp_path / "c", "c")) == 1


def test_a_root_that_is_itself_a_link_is_fine(tmp_path: Path) -> None:
    write_png(tmp_path / "real" / "c" / "a.png")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    scan = FolderScan(tmp_path / "alias")
    assert [p.name for p in scan.folders(tmp_path / "alias")] == ["c"]
    assert scan.files(tmp_path / "alias" / "c", "c") == [str(tmp_path / "alias" / "c" / "a.png")]
    assert not any(scan.skipped.values())


def test_a_link_to_the_root_among_class_folders_is_a_loop(tmp_path: Path) -> None:
    write_png(tmp_path / "c" / "a.png")
    (tmp_path / "everything").symlink_to(".")
    scan = FolderScan(tmp_path)
    assert [p.name for p in scan.folders(tmp_path, "class folders")] == ["c"]
    assert [Path(p).name for p, _ in scan.skipped["loop"]] == ["everything"]


def test_refuse_shared_files(tmp_path: Path) -> None:
    a = write_png(tmp_path / "a.png")
    (tmp_path / "b.png").symlink_to(a)
    refuse_shared_files([(str(a), "ann.json: images[0]")] * 2, same_owner_ok=True)  # reused
    refuse_shared_files([(str(tmp_path / "missing.png"), "x"), (str(a), "y")])
    with pytest.raises(DuplicateFileError, match=r"data: .*a\.png \(train\) and .*b\.png \(val\)"):
        refuse_shared_files([(str(a), "train"), (str(tmp_path / "b.png"), "val")])
    twice = r"a\.png is named by images\[0\] and by images\[4\]"
    with pytest.raises(DuplicateFileError, match=twice):
        refuse_shared_files([(str(a), "images[0]"), (str(a), "images[4]")], same_owner_ok=True)
    hard = tmp_path / "hard.png"
    os.link(a, hard)
    with pytest.raises(DuplicateFileError, match="same file"):
        refuse_shared_files([(str(a), "train"), (str(hard), "test")])


def test_with_follow_links_a_link_above_the_root_is_still_a_loop(tmp_path: Path) -> None:
    write_png(tmp_path / "data" / "c" / "a.png")
    write_png(tmp_path / "data" / "c" / "d" / "b.png")
    (tmp_path / "data" / "c" / "d" / "top").symlink_to(tmp_path)  # above the root
    scan = FolderScan(tmp_path / "data", follow_links=True)
    with deadline():
        files = scan.files(tmp_path / "data" / "c", "c")
    assert [Path(p).name for p in files] == ["a.png", "b.png"]
    assert [Path(p).name for p, _ in scan.skipped["loop"]] == ["top"]
