"""Tiled predict and evaluate on trained segmentation and detection models."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from cvtasks.cli.common import load_trained
from cvtasks.cli.tiles import TiledPredictor, without_resize
from cvtasks.data.builtin.shapes import SHAPES_CLASSES, draw_sample
from cvtasks.data.masks import read_mask
from cvtasks.inference import Predictor
from cvtasks.tiling import Tiling
from tests.conftest import TINY
from tests.conftest import cvtasks_in_process as cvtasks

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

#: a short training at 64 px: enough to tell shapes apart at their own scale
SEGMENTATION = (
    "task=segmentation",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=60",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=2",
    "data.batch_size=8",
    "callbacks.progress_bar=null",
)
DETECTION = ("task=detection", "data.num_train=48", "data.num_val=16", "data.num_test=16")


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return proc


def shapes_canvas(grid: int = 4, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """``grid x grid`` built-in shapes pictures side by side: an image 4x the training size
    whose shapes keep their training scale, and its mask."""
    rows = []
    for r in range(grid):
        row = [draw_sample(np.random.default_rng([seed, r, c])) for c in range(grid)]
        rows.append(
            (np.concatenate([i for i, _ in row], 1), np.concatenate([m for _, m in row], 1))
        )
    return np.concatenate([i for i, _ in rows], 0), np.concatenate([m for _, m in rows], 0)


def mean_iou(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    """Mean IoU over the classes in the truth or the prediction (a confusion matrix)."""
    matrix = np.bincount(truth.ravel() * num_classes + predicted.ravel(), minlength=num_classes**2)
    matrix = matrix.reshape(num_classes, num_classes)
    hits = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - hits
    return float(np.mean(hits[union > 0] / union[union > 0]))


def test_tiles_beat_resizing_a_large_segmentation_canvas(run_train, tmp_path, capsys):
    run = run_train(*SEGMENTATION).check()
    ckpt = run.run_dir / "checkpoints" / "best.ckpt"
    image, truth = shapes_canvas()
    assert image.shape == (256, 256, 3)
    folder = tmp_path / "canvas"
    folder.mkdir()
    Image.fromarray(image).save(folder / "canvas.png")
    scores = {}
    for name, extra in (("resized", ()), ("tiled", ("tile=64", "overlap=0.25"))):
        out = tmp_path / name
        ok(
            cvtasks(
                "predict", f"ckpt={ckpt}", f"input={folder}", f"output={out}", *extra, cwd=tmp_path
            )
        )
        [record] = [
            json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()
        ]
        mask = read_mask(out / record["mask_file"])
        assert mask.shape == truth.shape
        scores[name] = mean_iou(truth, mask.astype(np.int64), len(SHAPES_CLASSES))
    with capsys.disabled():
        trained = run.metrics["test/miou"]
        print(f"\nmodel at 64 px: test/miou {trained:.4f}; 256 px canvas mIoU {scores}")
    assert scores["tiled"] >= scores["resized"], scores

    # evaluate: the built-in images are 64 px, the tile's size: one window each, the same scores
    plain, tiled = tmp_path / "plain", tmp_path / "tiled_eval"
    # (with tiles a test batch holds one image: 16 batches of 1 are the 2 batches of 8)
    limit = "trainer.limit_test_batches=2"
    ok(cvtasks("evaluate", f"ckpt={ckpt}", f"output={plain}", limit, cwd=tmp_path))
    limit = "trainer.limit_test_batches=16"
    ok(cvtasks("evaluate", f"ckpt={ckpt}", f"output={tiled}", "tile=64", limit, cwd=tmp_path))
    first, second = (json.loads((f / "metrics.json").read_text()) for f in (plain, tiled))
    for key in ("test/miou", "test/pixel_acc", "test/dice"):
        assert second[key] == pytest.approx(first[key], abs=1e-4), key
    per_class = second["reports"]["test"]["per_class_iou"]
    assert per_class == pytest.approx(first["reports"]["test"]["per_class_iou"], abs=1e-4)
    assert (tiled / "per_class_iou.png").is_file() and (tiled / "worst.png").is_file()


def test_tiled_detection_boxes_are_in_the_image_frame(run_train, tmp_path):
    run = run_train(*DETECTION, *TINY).check()
    ckpt = run.run_dir / "checkpoints" / "best.ckpt"
    model = load_trained(ckpt)
    model.task.score_threshold = 0.0  # an untrained model: keep every candidate
    predictor = Predictor(model.task, "cpu", precision="32")
    tiled = TiledPredictor(predictor, Tiling((96, 96), 0.25, batch=4))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)

    # one window: the plain prediction, box for box
    image = model.transform()(image=pixels)["image"][None]
    batch = {"image": image, "orig_size": torch.tensor([[96, 96]])}
    [plain], [windows] = predictor.predict(batch), tiled.predict(batch)
    found = [(d["label"], d["score"], tuple(d["box"])) for d in plain["detections"]]
    merged = [(d["label"], d["score"], tuple(d["box"])) for d in windows["detections"]]
    # the same decoding; the merge's NMS of clipped boxes may only drop a few more
    assert found and set(merged) <= set(found) and len(merged) >= 0.9 * len(found)

    # a large image: every box inside it, some found beyond the first window
    big = rng.integers(0, 256, (150, 310, 3), dtype=np.uint8)
    native = without_resize(model.transform())(image=big)["image"][None]
    [result] = tiled.predict({"image": native, "orig_size": torch.tensor([[150, 310]])})
    boxes = np.array([d["box"] for d in result["detections"]])
    assert len(boxes) and (boxes >= 0).all()
    assert (boxes[:, [0, 2]] <= 310).all() and (boxes[:, [1, 3]] <= 150).all()
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
    assert (boxes[:, 0] > 96).any()  # a box starting there comes from a shifted window

    # the commands
    folder = tmp_path / "large"
    folder.mkdir()
    Image.fromarray(big).save(folder / "large.png")
    out = tmp_path / "out"
    ok(
        cvtasks(
            "predict", f"ckpt={ckpt}", f"input={folder}", f"output={out}", "tile=96", cwd=tmp_path
        )
    )
    [record] = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    for detection in record["detections"]:
        x0, y0, x1, y1 = detection["box"]
        assert 0 <= x0 <= x1 <= 310 and 0 <= y0 <= y1 <= 150
    evaluation = tmp_path / "evaluation"
    ok(cvtasks("evaluate", f"ckpt={ckpt}", f"output={evaluation}", "tile=96", cwd=tmp_path))
    metrics = json.loads((evaluation / "metrics.json").read_text())
    for key in ("test/map", "test/map50", "test/map75", "test/mar100"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert list(metrics["reports"]["test"]["ap_per_class"]) == [str(d) for d in range(10)]
    assert metrics["plots"] == ["pr_curves.png", "ap_per_class.png", "worst.png"]
    assert all((evaluation / name).is_file() for name in metrics["plots"])
