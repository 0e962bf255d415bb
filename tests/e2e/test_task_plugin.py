"""A plugin task brings its own records, pictures and plots to ``predict`` and ``evaluate``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvtasks.viz.charts import BAR
from tests.conftest import TINY, run_cvtasks

pytestmark = pytest.mark.slow

PLUGIN = Path(__file__).with_name("confidence_task.py")
BAR_HEIGHT, BAR_COLOUR = 6, (255, 0, 0)  # as the plugin draws its pictures
SIZES = [(40, 40), (97, 31), (20, 64)]  # (width, height)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return proc


def write_images(root: Path) -> Path:
    root.mkdir()
    rng = np.random.default_rng(0)
    for k, (width, height) in enumerate(SIZES):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img{k}.png")
    return root


def test_a_plugin_task_draws_its_own_pictures_and_plots(run_train, tmp_path):
    plugins = f"plugins=[{PLUGIN}]"
    # own processes: the plugin's task must not stay registered in the test process
    run = run_train(plugins, "task.name=confidence_classification", *TINY, own_process=True)
    ckpt = run.check().run_dir / "checkpoints" / "best.ckpt"

    images, out = write_images(tmp_path / "images"), tmp_path / "predictions"
    predict = ("predict", f"ckpt={ckpt}", f"input={images}", f"output={out}", plugins)
    ok(run_cvtasks(*predict, cwd=tmp_path))
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == len(SIZES)
    for record in records:
        assert set(record) == {"path", "class_name", "confidence"}  # the plugin view's record
        image = np.asarray(Image.open(record["path"]).convert("RGB"))
        height, width = image.shape[:2]
        picture = np.asarray(Image.open(out / "pictures" / f"{Path(record['path']).stem}.png"))
        assert picture.shape == (height + BAR_HEIGHT, width, 3)
        assert np.array_equal(picture[:height], image)
        bar = np.all(picture[height:] == BAR_COLOUR, axis=-1).sum(axis=1)
        assert bar.tolist() == [round(record["confidence"] * width)] * BAR_HEIGHT

    evaluation = tmp_path / "evaluation"
    evaluate = ("evaluate", f"ckpt={ckpt}", f"output={evaluation}", plugins, *TINY[3:4])
    ok(run_cvtasks(*evaluate, cwd=tmp_path))
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["task"] == "confidence_classification"
    assert metrics["plots"] == ["confidence_histogram.png", "worst.png"]
    assert not (evaluation / "confusion_matrix.png").exists()  # not classification's report
    histogram = Image.open(evaluation / "confidence_histogram.png")
    bars = np.all(np.asarray(histogram.convert("RGB")) == BAR, axis=-1)
    assert histogram.format == "PNG" and bars.any()  # a bar for the share of some bin
    worst = np.asarray(Image.open(evaluation / "worst.png").convert("RGB"))
    assert np.all(worst == BAR_COLOUR, axis=-1).any()  # worst samples drawn by the plugin view
