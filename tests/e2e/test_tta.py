"""Test-time augmentation after a real training run: flip pairs in the checkpoint, predict and
evaluate with ``tta=flip``."""

import json

import pytest
import torch
from PIL import Image

from tests.conftest import TINY
from tests.conftest import cvtasks_in_process as cvtasks

pytestmark = pytest.mark.slow


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_landmarks_predict_and_evaluate_with_flip(run_train, tmp_path):
    small = ("data.num_train=64", "data.num_val=16", "data.num_test=16")
    run = run_train("task=landmarks", *small, *TINY).check()
    ckpt = run.run_dir / "checkpoints" / "best.ckpt"
    hparams = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    # the built-in faces' pairs, as their flip augmentation swaps them
    assert [list(p) for p in hparams["flip_pairs"]] == [[0, 1], [3, 4]]

    images = tmp_path / "faces"
    images.mkdir()
    Image.new("RGB", (40, 30), (120, 80, 60)).save(images / "a.png")
    out = tmp_path / "predictions"
    args = (f"ckpt={ckpt}", f"input={images}", f"output={out}", "pictures=false")
    ok(cvtasks("predict", *args, "tta=flip", cwd=tmp_path))
    record = json.loads((out / "predictions.jsonl").read_text())
    assert len(record["keypoints"]) == 5 and len(record["confidence"]) == 5

    results = {}
    for mode in ("null", "flip"):
        evaluation = tmp_path / f"evaluation_{mode}"
        ok(
            cvtasks(
                "evaluate",
                f"ckpt={ckpt}",
                f"output={evaluation}",
                f"tta={mode}",
                *TINY[3:4],
                cwd=tmp_path,
            )
        )
        results[mode] = json.loads((evaluation / "metrics.json").read_text())
    assert results["null"]["tta"] is None and results["flip"]["tta"] == "flip"
    trained = run.metrics["test/nme"]
    assert results["null"]["test/nme"] == pytest.approx(trained, abs=1e-6)
    assert results["flip"]["test/nme"] != pytest.approx(trained, abs=1e-6)  # the views merged
