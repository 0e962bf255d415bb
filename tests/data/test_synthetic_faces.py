"""The built-in synthetic faces: written once, deterministic, read back by the COCO reader."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from cvtasks.config import CONFIG_DIR
from cvtasks.data.builtin.synthetic_faces import (
    KEYPOINT_NAMES,
    dataset_dir,
    draw_face,
    write_synthetic_faces,
)
from cvtasks.data.coco_keypoints import read_coco_keypoints
from cvtasks.registry import DATASETS
from tests.data.conftest import ground_truth_ap

COUNTS = {"train": 6, "val": 2, "test": 2}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_faces(tmp_path_factory.mktemp("faces"), size=32, counts=COUNTS)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_layout_and_coco_content(written: Path) -> None:
    assert written.name == dataset_dir(32, COUNTS) == "synthetic-faces-v2-32px-6-2-2"
    for split, count in COUNTS.items():
        assert len(list((written / "images" / split).glob("*.png"))) == count
        data = json.loads((written / "annotations" / f"{split}.json").read_text())
        (category,) = data["categories"]
        assert category["keypoints"] == list(KEYPOINT_NAMES)
        assert len(data["annotations"]) == count
        for ann in data["annotations"]:
            points = np.array(ann["keypoints"]).reshape(5, 3)
            assert ((points[:, :2] > 0) & (points[:, :2] < 32)).all()
            assert set(points[:, 2]) <= {1, 2}
            x, y, w, h = ann["bbox"]
            assert min(x, y) >= 0 and x + w <= 32 and y + h <= 32


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_cocoeval_scores_the_ground_truth_as_perfect(written: Path, split: str) -> None:
    # image and annotation ids count from 1: COCOeval reads an id of 0 as "unmatched"
    path = written / "annotations" / f"{split}.json"
    data = json.loads(path.read_text())
    assert min(i["id"] for i in data["images"]) == 1
    assert min(a["id"] for a in data["annotations"]) == 1
    assert ground_truth_ap(path) == 1.0


def test_read_back_by_the_coco_reader(written: Path) -> None:
    found = read_coco_keypoints(written / "annotations" / "train.json", written / "images")
    assert found.keypoint_names == list(KEYPOINT_NAMES)
    assert found.flip_pairs == [(0, 1), (3, 4)]
    assert len(found.samples) == 6 and not found.skipped
    with Image.open(found.samples[0].path) as image:
        assert image.size == (32, 32) and image.mode == "RGB"


def test_faces_are_drawn_as_labelled() -> None:
    # Unrotated geometry: the person's left eye is on the image's right, the mouth below the nose
    for i in range(20):
        image, ann = draw_face(np.random.default_rng([7, i]), 64)
        left_eye, right_eye, nose, left_mouth, right_mouth = ann["keypoints"]
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        eye_axis = left_eye - right_eye
        assert eye_axis[0] > 0 and abs(eye_axis[1]) < eye_axis[0]  # rotation is within 30 deg
        down = np.array([-eye_axis[1], eye_axis[0]])  # the face's "down", in image coordinates
        assert (nose - (left_eye + right_eye) / 2) @ down > 0
        assert ((left_mouth + right_mouth) / 2 - nose) @ down > 0


def test_deterministic_and_prefix_stable(written: Path, tmp_path: Path) -> None:
    again = write_synthetic_faces(tmp_path, size=32, counts=COUNTS)
    assert _files(again) == _files(written)
    more = write_synthetic_faces(tmp_path, size=32, counts={"train": 7, "val": 2, "test": 2})
    for name in ("00000.png", "00005.png"):  # image i depends on the split and i, not the count
        assert (more / "images" / "train" / name).read_bytes() == (
            written / "images" / "train" / name
        ).read_bytes()


def test_idempotent_and_atomic(written: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stamp = (written / "annotations").stat().st_mtime_ns
    assert write_synthetic_faces(written.parent, size=32, counts=COUNTS) == written
    assert (written / "annotations").stat().st_mtime_ns == stamp
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no leftovers

    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp_then_other_process_finishes(**kwargs):
        folder = real_mkdtemp(**kwargs)
        (written.parent / dataset_dir(32, {**COUNTS, "test": 3}) / "winner").mkdir(parents=True)
        return folder

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp_then_other_process_finishes)
    kept = write_synthetic_faces(written.parent, size=32, counts={**COUNTS, "test": 3})
    assert [p.name for p in kept.iterdir()] == ["winner"]  # the lost race keeps the winner
    assert not [p for p in written.parent.iterdir() if p.name.endswith(".tmp")]


def test_registered_datamodule(tmp_path: Path) -> None:
    data = DATASETS.build(
        "synthetic_faces", root=tmp_path, render_size=32, num_train=6, num_val=2, num_test=2
    )
    data.prepare_data()
    data.setup("fit")
    assert data.num_keypoints == 5 and data.keypoint_names == list(KEYPOINT_NAMES)
    assert data.image_size == (64, 64)
    batch = next(iter(data.val_dataloader()))
    assert batch["image"].shape == (2, 3, 64, 64) and batch["keypoints"].shape == (2, 5, 2)
    assert batch["orig_size"].tolist() == [[32, 32], [32, 32]]
    with pytest.raises(ValueError, match="size >= 16"):
        write_synthetic_faces(tmp_path, size=8)


def test_shipped_config_builds(tmp_path: Path) -> None:
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "data" / "synthetic_faces.yaml"))
    assert cfg.pop("name") == "synthetic_faces"
    small = {"num_train": 4, "num_val": 2, "num_test": 2, "batch_size": 2}
    data = DATASETS.build("synthetic_faces", **{**cfg, **small, "root": tmp_path})
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["keypoints"].shape == (2, 5, 2) and data.flip_pairs == [(0, 1), (3, 4)]
