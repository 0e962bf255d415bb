"""``python -m cvtasks data check``: one planted fault per test, named in the report with exit
status 1; built-in data sets reported clean with 0; the JSON report; bad command lines with 2."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cvtasks.cli.data_check import main
from cvtasks.data.masks import write_mask
from tests.conftest import cvtasks_in_process
from tests.data.conftest import write_png
from tests.data.detection_files import IMAGES, Img, Obj, write_coco
from tests.data.test_coco_keypoints import NAMES
from tests.data.test_coco_keypoints import write_coco as write_keypoints
from tests.data.test_identity_folders import make_identities
from tests.data.test_image_masks import left_right_mask, write_pair

SPLITS = ("train", "val", "test")


def check(capsys, *args: str) -> tuple[int, str]:
    """Run the command; its exit status and what it printed."""
    code = main(list(args))
    return code, capsys.readouterr().out


def check_json(capsys, *args: str) -> tuple[int, dict]:
    code, out = check(capsys, *args, "format=json")
    return code, json.loads(out)


def faults_of(report: dict, kind: str) -> list[dict]:
    return [f for f in report["faults"] if f["kind"] == kind]


def class_folders(root: Path) -> Path:
    """``root/<split>/<cat|dog>/<i>.png``, every image different."""
    for k, split in enumerate(SPLITS):
        for c, name in enumerate(("cat", "dog")):
            for i in range(2):
                write_png(root / split / name / f"{i}.png", value=60 * k + 20 * c + i)
    return root


def coco_boxes(root: Path, bad: Obj) -> list[str]:
    """A COCO detection set whose last image holds the one ``bad`` box; its overrides."""
    images = (*IMAGES[:3], Img("d", (30, 40), (bad,)))
    annotations = write_coco(root, images)
    return [
        "data=coco_detection",
        f"data.root={root / 'images'}",
        f"data.annotations={annotations}",
        "data.val_fraction=0",
        "data.test_fraction=0",
    ]


def face_annotations(change: tuple[int, int, float]) -> list[dict]:
    """Three faces (40x30 images); ``change`` sets one value (object, position in the
    ``keypoints`` list, value)."""
    annotations = [
        {
            "id": 100 + i,
            "image_id": i,
            "category_id": 1,
            "keypoints": [24.0, 10.0, 2, 12.0, 10.0, 1, 18.0, 16.0, 0],
            "bbox": [8.0, 4.0, 20.0, 20.0],
        }
        for i in range(3)
    ]
    index, position, value = change
    annotations[index]["keypoints"][position] = value
    return annotations


def keypoint_args(root: Path) -> list[str]:
    return [
        "data=coco_keypoints",
        f"data.root={root}",
        "data.train.annotations=ann.json",
        "data.train.images=img",
        "data.val=null",
        "data.val_fraction=0.34",
        "data.test_fraction=0.34",
    ]


# -- one planted fault per test ------------------------------------------------------------------
def test_an_unreadable_image_is_named_with_its_reason(tmp_path, capsys):
    root = class_folders(tmp_path / "data")
    bad = root / "val" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but nothing else")
    code, out = check(capsys, "data=image_folder", f"data.root={root}")
    assert code == 1
    assert re.search(rf"\[unreadable\] val: {re.escape(str(bad))}: \w+Error", out), out
    assert "1 error(s)" in out


def test_a_box_outside_its_image_is_named_with_its_entry(tmp_path, capsys):
    args = coco_boxes(tmp_path, Obj("dog", (30, 5, 50, 20)))  # 10 px past the 40 px width
    code, out = check(capsys, *args)
    assert code == 1
    assert "[annotation]" in out
    assert f"{tmp_path / 'ann.json'}: annotations[4].bbox" in out
    assert "lies outside its 40x30 image (image_id 4)" in out


def test_a_box_without_area_is_named_with_its_entry(tmp_path, capsys):
    args = coco_boxes(tmp_path, Obj("cat", (10, 5, 10, 20)))  # zero width
    code, report = check_json(capsys, *args)
    assert code == 1
    (fault,) = faults_of(report, "annotation")
    assert fault["where"] == str(tmp_path / "ann.json")
    assert "annotations[4].bbox: [10, 5, 0, 15] has a width or height <= 0" in fault["message"]
    # the three good images are still counted, the dropped box is not
    assert report["splits"]["train"]["counts"] == {"bird": 1, "cat": 2, "dog": 1}


def test_a_keypoint_outside_its_image_is_named(tmp_path, capsys):
    write_keypoints(tmp_path, face_annotations((1, 0, 55.0)))  # x of left_eye, image 40 wide
    code, report = check_json(capsys, *keypoint_args(tmp_path))
    assert code == 1
    (fault,) = report["faults"]
    assert fault["kind"] == "keypoint_outside"
    assert fault["where"] == f"{tmp_path / 'img' / '1.png'} (image_id 1)"
    assert "keypoint 0 ('left_eye') at (55, 10) lies outside its 40x30 image" in fault["message"]


def test_a_visibility_flag_out_of_range_is_named(tmp_path, capsys):
    write_keypoints(tmp_path, face_annotations((2, 5, 3)))  # right_eye flagged 3
    code, out = check(capsys, *keypoint_args(tmp_path))
    assert code == 1
    assert f"{tmp_path / 'img' / '2.png'} (image_id 2): keypoint 1 ('right_eye')" in out
    assert "has visibility flag 3" in out


def test_flip_pairs_pairing_a_point_twice_are_named(tmp_path, capsys):
    category = {"id": 1, "name": "face", "keypoints": NAMES, "flip_pairs": [[0, 1], [1, 2]]}
    write_keypoints(tmp_path, categories=[category])
    code, report = check_json(capsys, *keypoint_args(tmp_path))
    assert code == 1
    (fault,) = report["faults"]
    assert fault["kind"] == "unusable"
    assert fault["message"].startswith(f"{tmp_path / 'ann.json'}: categories 'face'")
    assert "point 1 or 2 is in more than one pair" in fault["message"]


def test_flip_pairs_of_the_config_pairing_a_point_twice_are_named(tmp_path, capsys):
    write_keypoints(tmp_path)
    args = [*keypoint_args(tmp_path), "data.flip_pairs=[[0,1],[1,0]]"]
    code, out = check(capsys, *args)
    assert code == 1
    assert "[unusable]" in out and "data.flip_pairs: point 1 or 0 is in more than one pair" in out


def test_mask_values_outside_the_classes_are_named(tmp_path, capsys):
    for k, split in enumerate(SPLITS):
        for i in range(2):
            image = np.full((6, 8, 3), 30 * k + 10 * i, dtype=np.uint8)
            write_pair(tmp_path / split, f"{i}", left_right_mask(right=1), image)
    (tmp_path / "classes.txt").write_text("sky\nsea\n")
    bad = tmp_path / "val" / "masks" / "1.png"
    mask = left_right_mask(right=1)
    mask[0, 0], mask[1, 1] = 7, 255  # 7 is no class; 255 is the ignore index and fine
    write_mask(bad, mask)
    code, report = check_json(capsys, "data=image_masks", f"data.root={tmp_path}")
    assert code == 1
    (fault,) = report["faults"]
    assert (fault["kind"], fault["split"], fault["where"]) == ("mask", "val", str(bad))
    assert "holds values [7] outside the 2 classes 0-1" in fault["message"]
    assert report["splits"]["train"]["counts"] == {"sea": 48, "sky": 48}
    assert report["splits"]["train"]["unit"] == "pixels"


def test_a_training_identity_with_one_image_is_named(tmp_path, capsys):
    make_identities(tmp_path / "train", {"ann": 2, "bob": 1, "cid": 3})
    # different pixel values per split, so no image is a copy of another split's
    for split, names in (("val", ("dan", "eve")), ("test", ("fay", "gus"))):
        for k, name in enumerate(names):
            for i in range(2):
                write_png(
                    tmp_path / split / name / f"{i}.png", value=100 + 40 * k + 10 * i + len(split)
                )
    code, report = check_json(
        capsys, "data=identity_folders", f"data.root={tmp_path}", "data.num_pairs=4"
    )
    assert code == 1
    (fault,) = report["faults"]
    assert (fault["kind"], fault["where"], fault["split"]) == ("single_identity", "bob", "train")
    assert "has one image" in fault["message"]
    assert report["splits"]["val"]["identities"] == 2
    assert report["splits"]["train"]["identities"] == 2  # bob is left out, as training leaves him


def test_a_duplicate_image_across_splits_is_listed(tmp_path, capsys):
    root = class_folders(tmp_path / "data")
    copy = root / "test" / "cat" / "copy.png"
    shutil.copy(root / "train" / "dog" / "1.png", copy)
    code, report = check_json(capsys, "data=image_folder", f"data.root={root}")
    assert code == 1
    assert report["duplicates"] == [
        [
            {"split": "test", "path": str(copy)},
            {"split": "train", "path": str(root / "train" / "dog" / "1.png")},
        ]
    ]
    (fault,) = report["faults"]
    assert fault["kind"] == "duplicate" and str(copy) in fault["message"]


# -- clean data ----------------------------------------------------------------------------------
def test_builtin_digits_are_clean(capsys):
    code, out = check(capsys, "data=digits")
    assert code == 0
    assert out.rstrip().endswith("no errors found")
    rows = dict(re.findall(r"^(train|val|test)\s+(\d+)\s+8/8/8\s+8/8/8$", out, re.M))
    assert sum(int(n) for n in rows.values()) == 1797  # scikit-learn's digits, every one read
    counts = re.search(r"^0\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.M)
    assert counts is not None, out


def test_builtin_digits_detection_is_clean_and_its_json_has_the_report_keys(tmp_path, capsys):
    args = ("data=digits_detection", "data.num_train=12", "data.num_val=4", "data.num_test=4")
    code, report = check_json(capsys, *args)
    assert code == 0
    assert set(report) == {"data", "root", "clean", "errors", "splits", "duplicates", "faults"}
    assert (report["clean"], report["errors"], report["faults"]) == (True, 0, [])
    assert [report["splits"][s]["images"] for s in SPLITS] == [12, 4, 4]
    train = report["splits"]["train"]
    assert set(train) == {"images", "unit", "counts", "width", "height"}
    assert train["unit"] == "boxes" and set(train["counts"]) <= {str(d) for d in range(10)}
    assert train["width"] == {"min": 96, "median": 96, "max": 96}


def test_the_report_goes_to_output_when_asked(tmp_path, capsys):
    root = class_folders(tmp_path / "data")
    output = tmp_path / "report.json"
    code, out = check(
        capsys, "data=image_folder", f"data.root={root}", "format=json", f"output={output}"
    )
    assert code == 0
    assert f"report in {output}" in out
    report = json.loads(output.read_text())
    assert report["clean"] and report["splits"]["val"]["counts"] == {"cat": 2, "dog": 2}


def test_python_m_cvtasks_data_check_runs_the_check_and_returns_its_status(tmp_path):
    class_folders(tmp_path / "pets")
    broken = tmp_path / "pets" / "train" / "cat" / "broken.png"
    broken.write_bytes(b"not an image")
    args = ("data", "check", "data=image_folder", "data.root=pets", "format=json")
    proc = cvtasks_in_process(*args, "output=report.json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(f["kind"], f["where"]) for f in report["faults"]] == [
        ("unreadable", "pets/train/cat/broken.png")
    ]
    broken.unlink()
    proc = cvtasks_in_process("data", "check", "data=image_folder", "data.root=pets", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("no errors found")


# -- bad command lines ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["format=xml"], r"format=xml: not a report format; use format=text or format=json"),
        (["data.nosuch=1"], r"Could not override 'data.nosuch'"),
        (
            ["data=digit"],
            r"data=digit: there is no 'data' config named 'digit'. Did you mean: digits",
        ),
        (["data=coco_keypoints"], r"data.root is not set"),
        (["data=digits", "task=detection"], r"task=detection needs data with a class and a box"),
    ],
)
def test_a_bad_command_line_ends_with_one_line_and_status_2(args, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.search(message, err), err


# -- shards --------------------------------------------------------------------------------------
def shards_of(tmp_path: Path, *data: str) -> Path:
    """``data convert`` of ``data`` into ``tmp_path/shards``."""
    from cvtasks.cli.data_convert import main as convert

    out = tmp_path / "shards"
    assert convert([*data, f"output={out}", "shard_size=4"]) == 0
    return out


@pytest.mark.parametrize(
    "data",
    [
        ("task=detection", "data=digits_detection", "data.num_train=12", "data.num_val=4"),
        ("task=landmarks", "data=synthetic_faces", "data.num_train=12", "data.num_val=4"),
        ("task=siamese", "data=digits_identities"),
        ("task=localization", "data=digits_localization"),
    ],
    ids=["objects", "keypoints", "identities", "box"],
)
def test_shards_report_what_their_loose_files_report(tmp_path, capsys, data):
    data = (*data, "data.num_test=4") if "data.num_val=4" in data else data
    _code, loose = check_json(capsys, *data)
    out = shards_of(tmp_path, *data)
    capsys.readouterr()
    code, shards = check_json(capsys, data[0], "data=shards", f"data.root={out}")
    assert code == 0 and shards["clean"] and loose["clean"]
    for split in SPLITS:  # the same images, counts and sizes, read back from the shards
        assert shards["splits"][split] == loose["splits"][split], split


def test_an_unreadable_image_in_shards_is_named(tmp_path, capsys):
    root = class_folders(tmp_path / "data")
    bad = root / "val" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but nothing else")  # written as it is, bytes unread
    out = shards_of(tmp_path, "data=image_folder", f"data.root={root}")
    capsys.readouterr()
    code, report = check_json(capsys, "data=shards", f"data.root={out}")
    assert code == 1
    (fault,) = report["faults"]
    assert (fault["kind"], fault["split"], fault["where"]) == ("unreadable", "val", str(bad))
    assert fault["message"] == f"UnidentifiedImageError: cannot identify image file {str(bad)!r}"


def test_a_duplicate_image_across_splits_of_shards_is_listed_by_content(tmp_path, capsys):
    root = class_folders(tmp_path / "data")
    copy = root / "test" / "cat" / "copy.png"
    shutil.copy(root / "train" / "dog" / "1.png", copy)
    out = shards_of(tmp_path, "data=image_folder", f"data.root={root}")
    shutil.rmtree(root)  # the shards alone: the bytes they hold are compared
    capsys.readouterr()
    code, report = check_json(capsys, "data=shards", f"data.root={out}")
    assert code == 1
    assert report["duplicates"] == [
        [
            {"split": "test", "path": str(copy)},
            {"split": "train", "path": str(root / "train" / "dog" / "1.png")},
        ]
    ]
