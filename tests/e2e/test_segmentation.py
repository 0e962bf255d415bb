"""Whole ``train.py task=segmentation`` runs in a temporary folder."""

import json

import numpy as np
import pytest
import yaml

from cvtasks.data.masks import read_mask, write_mask
from tests.conftest import TINY
from tests.conftest import cvtasks_in_process as cvtasks
from tests.data.test_image_masks import write_pair

pytestmark = pytest.mark.slow


def test_segmentation_trains_on_the_builtin_shapes_by_default(run_train):
    run = run_train("task=segmentation", *TINY).check()
    metrics = run.metrics
    for key in (
        "val/miou",
        "val/pixel_acc",
        "val/dice",
        "test/miou",
        "test/pixel_acc",
        "test/dice",
    ):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["monitor"] == "val/miou" and metrics["monitor_mode"] == "max"
    report = metrics["reports"]["test"]
    assert list(report["per_class_iou"]) == ["background", "circle", "rectangle", "triangle"]
    assert sum(map(sum, report["confusion_matrix"]["matrix"])) > 0
    config = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert config["data"]["name"] == "shapes" and config["task"]["head"]["name"] == "unet"
    # cvtasks' own narrow ResNet-10 (conf/backbone/resnet10_tiny.yaml)
    assert config["backbone"]["name"] == "resnet10" and config["backbone"]["stem_width"] == 16
    assert (run.run_dir / "checkpoints" / "best.ckpt").is_file()


def test_a_mask_of_the_wrong_size_stops_the_run_and_is_named(run_train, tmp_path):
    root = tmp_path / "data"
    for split in ("train", "val", "test"):
        for i in range(2):
            write_pair(root / split, f"{i}", np.zeros((8, 8), dtype=np.uint8))
    bad = root / "val" / "masks" / "1.png"
    write_mask(bad, np.zeros((8, 9), dtype=np.uint8))
    run = run_train("task=segmentation", "data=image_masks", f"data.root={root}", *TINY)
    assert run.proc.returncode != 0
    assert str(bad) in run.output and "9x8 (WxH) but its image is 8x8" in run.output


#: (height, width) of the test images: none is the training size (32x32), nor its aspect
TEST_SIZES = [(40, 24), (21, 50), (64, 48), (33, 33), (18, 30), (45, 70)]


def write_blob_pairs(folder, sizes, seed):
    """Noisy images of the given sizes with a reddish (1) and a bluish (2) rectangle."""
    rng = np.random.default_rng(seed)
    for i, (height, width) in enumerate(sizes):
        mask = np.zeros((height, width), dtype=np.uint8)
        for cls in (1, 2):
            y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
            mask[y : y + height // 3, x : x + width // 3] = cls
        colours = np.array([[90, 90, 90], [200, 60, 60], [60, 60, 200]])
        image = np.clip(colours[mask] + rng.normal(0, 20, (height, width, 3)), 0, 255)
        write_pair(folder, f"{i:02d}", mask, image.astype(np.uint8))


def miou_of_files(pairs, num_classes=3):
    """Mean IoU over the classes seen, from a NumPy confusion matrix of (truth, prediction)."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for truth, pred in pairs:
        assert truth.shape == pred.shape
        keep = truth != 255
        flat = truth[keep].astype(np.int64) * num_classes + pred[keep]
        matrix += np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)
    hits = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - hits
    return float(np.mean(hits[union > 0] / union[union > 0]))


def test_test_miou_is_at_each_images_size_in_train_evaluate_and_predict(run_train, tmp_path):
    root = tmp_path / "data"
    write_blob_pairs(root / "train", [(36, 28), (30, 44)] * 6, seed=0)
    write_blob_pairs(root / "val", [(28, 36)] * 4, seed=1)
    write_blob_pairs(root / "test", TEST_SIZES, seed=2)
    data = ("data=image_masks", f"data.root={root}", "data.image_size=32", "data.batch_size=4")
    run = run_train("task=segmentation", *data, *TINY).check()
    trained = run.metrics
    assert 0.0 <= trained["test/miou"] <= 1.0 and 0.0 <= trained["test/miou_train_size"] <= 1.0
    ckpt = run.run_dir / "checkpoints" / "best.ckpt"

    evaluation = tmp_path / "evaluation"
    proc = cvtasks("evaluate", f"ckpt={ckpt}", f"output={evaluation}", *TINY[3:4], cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    evaluated = json.loads((evaluation / "metrics.json").read_text())
    for key in ("test/miou", "test/pixel_acc", "test/dice", "test/miou_train_size"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key

    out = tmp_path / "predictions"
    images = root / "test" / "images"
    proc = cvtasks("predict", f"ckpt={ckpt}", f"input={images}", f"output={out}", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    pairs = []
    for line in (out / "predictions.jsonl").read_text().splitlines():
        record = json.loads(line)
        name = record["mask_file"].split("/")[-1]
        pairs.append(
            (read_mask(root / "test" / "masks" / name), read_mask(out / record["mask_file"]))
        )
    assert sorted(p[0].shape for p in pairs) == sorted(TEST_SIZES)
    # the masks predict writes, scored against the files' masks, give the test metric
    assert miou_of_files(pairs) == pytest.approx(evaluated["test/miou"], abs=1e-4)
