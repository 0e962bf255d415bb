"""Train tiny, then predict, evaluate and export through ``python -m cvtasks`` for every task."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY
from tests.conftest import cvtasks_in_process as cvtasks

pytestmark = pytest.mark.slow

SMALL_FACES = (
    "data.identities=[24,8,8]",
    "data.images_per_person=4",
    "data.identities_per_batch=8",
)
TASKS = {
    "classification": (),
    "localization": ("task=localization",),
    "landmarks": ("task=landmarks", "data.num_train=64", "data.num_val=16", "data.num_test=16"),
    "segmentation": ("task=segmentation",),
    "siamese": ("task=siamese", *SMALL_FACES),
    "detection": ("task=detection", "data.num_train=48", "data.num_val=16", "data.num_test=16"),
}
#: keys every line of predictions.jsonl holds, per task (besides ``path``).
RECORD_KEYS = {
    "classification": {"label", "class_name", "probability", "top_k"},
    "localization": {"label", "class_name", "probability", "p_nothing", "box"},
    "landmarks": {"keypoints", "confidence", "keypoint_names"},
    "segmentation": {"mask_file", "size", "class_pixels"},
    "siamese": {"embedding", "matches"},
    "detection": {"detections"},
}
PLOTS = {
    "classification": "confusion_matrix.png",
    "localization": "confusion_matrix.png",
    "landmarks": "pck_curve.png",
    "segmentation": "per_class_iou.png",
    "siamese": "roc_curve.png",
    "detection": "pr_curves.png",
}
SIZES = [(40, 40), (97, 31), (20, 64), (130, 90)]  # (width, height)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return proc


def image_folder(root: Path) -> Path:
    """Images of mixed sizes in two sub-folders, plus a text file and a corrupt PNG."""
    rng = np.random.default_rng(0)
    for k, (width, height) in enumerate(SIZES):
        folder = root / ("a" if k % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{k}.png")
    (root / "notes.txt").write_text("not an image")
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return root


@pytest.mark.parametrize("task", list(TASKS))
def test_predict_and_evaluate_after_training(task, run_train, tmp_path):
    run = run_train(*TASKS[task], *TINY).check()
    ckpt = run.run_dir / "checkpoints" / "best.ckpt"
    images, out = image_folder(tmp_path / "images"), tmp_path / "predictions"

    proc = ok(cvtasks("predict", f"ckpt={ckpt}", f"input={images}", f"output={out}", cwd=tmp_path))
    assert "notes.txt" in proc.stdout + proc.stderr and "broken.png" in proc.stdout + proc.stderr
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == len(SIZES)
    for record in records:
        assert RECORD_KEYS[task] <= set(record), record.keys()
        assert (out / "pictures" / f"{Path(record['path']).stem}.png").is_file()
    lines = (out / "errors.jsonl").read_text().splitlines()
    errors = {Path(json.loads(line)["path"]).name for line in lines}
    assert errors == {"notes.txt", "broken.png"}
    check_pixel_units(task, records, out)

    evaluation = tmp_path / "evaluation"
    ok(cvtasks("evaluate", f"ckpt={ckpt}", f"output={evaluation}", *TINY[3:4], cwd=tmp_path))
    metrics = json.loads((evaluation / "metrics.json").read_text())
    trained = {k: v for k, v in run.metrics.items() if k.startswith("test/")}
    assert trained and {k: metrics[k] for k in trained} == pytest.approx(trained, abs=1e-6)
    assert (evaluation / PLOTS[task]).is_file() and (evaluation / "worst.png").is_file()
    if task in ("classification", "segmentation", "landmarks", "detection"):
        check_onnx_export(task, ckpt, tmp_path)
    if task == "classification":
        check_wrong_task_is_refused(ckpt, tmp_path)


def check_pixel_units(task: str, records: list[dict], out: Path) -> None:
    """Coordinates and masks are in pixels of each original image."""
    for record in records:
        width, height = Image.open(record["path"]).size
        if task == "landmarks":
            points = np.asarray(record["keypoints"])
            assert points.shape[1] == 2 and len(points) == len(record["confidence"])
            assert (points > -width).all() and (points[:, 0] < 2 * width).all()
        if task == "localization" and record["box"] is not None:
            x0, y0, x1, y1 = record["box"]
            assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height
        if task == "detection":
            for detection in record["detections"]:
                x0, y0, x1, y1 = detection["box"]
                assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height
                assert {"label", "class_name", "score"} <= set(detection)
        if task == "segmentation":
            assert record["size"] == [height, width]
            assert Image.open(out / record["mask_file"]).size == (width, height)
        if task == "siamese":
            assert record["matches"] and record["path"] not in {
                m["path"] for m in record["matches"]
            }


def check_onnx_export(task: str, ckpt: Path, tmp_path: Path) -> None:
    """The CLI exports the trained model; onnxruntime agrees with PyTorch on random input and on
    the run's test data (verify=true, its report beside the file); metadata is there."""
    import onnx

    onnx_file = tmp_path / "model.onnx"
    args = (f"ckpt={ckpt}", "format=onnx", f"output={onnx_file}", "verify=true")
    proc = ok(cvtasks("export", *args, cwd=tmp_path))
    assert "checked against PyTorch: max abs difference" in proc.stdout
    assert "verification passed" in proc.stdout
    meta = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    assert meta["task"] == task and len(json.loads(meta["mean"])) == 3
    assert json.loads(meta["decode"]) is True
    report = json.loads((tmp_path / "model.onnx.verify.json").read_text())
    assert report["passed"] and report["task"] == task and report["images"] > 0
    assert report["metrics"] and list(report["outputs"]) == json.loads(meta["outputs"])


def check_wrong_task_is_refused(ckpt: Path, tmp_path: Path) -> None:
    proc = cvtasks(
        "predict", f"ckpt={ckpt}", f"input={tmp_path}", "expect_task=segmentation", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "holds a 'classification' model, but expect_task=segmentation" in proc.stderr
