"""Siamese predictions over a set: pair scores and pictures drawn by the task's view."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from tests.conftest import cvtasks_in_process


def test_pairs_are_scored_from_the_embeddings_and_drawn(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint("siamese")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for k, (width, height) in enumerate([(40, 40), (64, 30), (24, 48)]):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"img{k}.png")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("images/img0.png images/img1.png\nimages/img1.png images/img2.png\n")
    pairs.write_text(pairs.read_text() + "images/img2.png images/gone.png  # unreadable\n")
    out = tmp_path / "out"
    args = ("predict", f"ckpt={ckpt}", f"input={images}", f"output={out}", f"pairs={pairs}")
    proc = cvtasks_in_process(*args, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    embedding = {r["path"]: torch.tensor(r["embedding"]) for r in records}
    lines = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    for line in lines[:2]:
        a, b = embedding[line["path"]], embedding[line["path_b"]]
        cosine = float(a @ b / (a.norm() * b.norm()))
        assert abs(line["distance"] - (1 - cosine)) < 1e-5
        assert line["threshold"] is None and line["same"] is None  # never validated: no threshold
    assert lines[2]["error"] == "an image of the pair is unreadable"
    drawn = sorted(p.name for p in (out / "pairs").iterdir())
    assert drawn == ["0000_img0_img1.png", "0001_img1_img2.png"]
    first = Image.open(out / "pairs" / drawn[0])
    assert first.width > 40 + 64 and first.height >= 40  # both images side by side, enlarged
