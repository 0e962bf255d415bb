"""Data test fixtures: tiny generated image folders.

The data cache is pointed at a temporary folder by ``tests/conftest.py`` for every test.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_png(path: Path, value: int = 0, size: tuple[int, int] = (6, 5)) -> Path:
    """Write a small RGB PNG whose pixels all equal ``value`` (height, width = ``size``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def png() -> Callable[..., Path]:
    """``png(path, value=0, size=(6, 5))`` writes a small uniform RGB PNG."""
    return write_png


@pytest.fixture
def make_folder() -> Callable[..., Path]:
    """``make_folder(root, {"cat": 10, "dog": 4})`` writes ``root/<class>/<i>.png`` images."""

    def make(root: Path, counts: dict[str, int], suffixes: Iterable[str] = (".png",)) -> Path:
        suffixes = list(suffixes)
        for c, (name, count) in enumerate(counts.items()):
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                write_png(folder / f"{i:03d}{suffixes[i % len(suffixes)]}", value=10 * c + i % 10)
        return root

    return make


@contextmanager
def deadline(seconds: float = 5.0) -> Iterator[None]:
    """Fail the block with ``TimeoutError`` instead of hanging when it runs past ``seconds``.

    A blocking ``open()`` of a FIFO is interrupted by the alarm signal, so a reader that opens
    a FIFO fails the test rather than stopping the suite. POSIX only (as FIFOs are).
    """

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s (blocked, e.g. opening a FIFO)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def make_fifo(path: Path) -> Path:
    """A named pipe at ``path`` (skips the test where the system has none)."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("FIFOs need a POSIX system")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def ground_truth_ap(annotations: Path) -> float:
    """pycocotools' AP@[.5:.95] of a COCO file's boxes scored against themselves (score 1).

    Any file whose ids COCOeval reads correctly scores 1.0; an image or annotation id of 0
    (COCOeval's "unmatched") loses matches and scores less.
    """
    import contextlib
    import io
    import json

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = json.loads(annotations.read_text())
    detections = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in data["annotations"]
    ]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO(str(annotations))
        evaluation = COCOeval(truth, truth.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])
