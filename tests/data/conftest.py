"""Data test fixtures: tiny generated image folders.

The data cache is pointed at a temporary folder by ``tests/conftest.py`` for every test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
