"""Multi-label image sets for tests: colour squares whose bright channels are their labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = ("red", "green", "blue")


def write_colour_set(
    root: Path, count: int = 60, seed: int = 0, size: int = 12, split_column: bool = False
) -> Path:
    """Write ``count`` PNGs under ``root/images`` and ``root/labels.csv``; return the CSV path.

    Each image holds a random non-empty set of :data:`COLOURS`: the channel of a colour in the
    set is bright (about 200), the others dark (about 40), with noise. With ``split_column``
    images ``k % 10 == 0`` are ``val``, ``k % 10 == 5`` ``test``, the rest ``train``.
    """
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = ["image,labels" + (",split" if split_column else "")]
    for k in range(count):
        present = rng.random(3) < 0.5
        if not present.any():
            present[rng.integers(3)] = True
        base = np.where(present, 200, 40).astype(np.int16)
        noise = rng.integers(-25, 26, size=(size, size, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"{k:03d}.png")
        names = ";".join(c for c, on in zip(COLOURS, present) if on)
        line = f"{k:03d}.png,{names}"
        if split_column:
            line += "," + {0: "val", 5: "test"}.get(k % 10, "train")
        lines.append(line)
    csv = root / "labels.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv
