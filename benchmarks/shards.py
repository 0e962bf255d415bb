"""Training images/s read from shards against the same data as loose files.

    python benchmarks/shards.py [--images 600] [--size 256] [--workers 1 2] [--epochs 2]
        [--results "Shards vs loose files, CPU"]

Writes a class-folder set of JPEG photos-like images (``--images``, ``--size`` pixels square,
two classes), converts it with ``data convert`` (LitData chunks), and times the training loader
of each (decode, the image_folder config's augmentations, resize to 224, normalize, collate) for
each worker count: images per second over ``--epochs`` epochs after one warm-up epoch. Both
read from the same local disk (page cache warm), so this is the cost of the format, not of a
network.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cvtasks.cli.build import build_datamodule
from cvtasks.cli.data_convert import ConvertOptions, convert
from cvtasks.config import compose_train

from results import report_cpu


def photos(root: Path, count: int, size: int) -> Path:
    """``count`` noisy gradient JPEGs in two class folders."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    for k in range(count):
        folder = root / ("a" if k % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        base = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1)], -1)
        pixels = np.concatenate([base, np.full((size, size, 1), 128.0)], -1)
        pixels += rng.normal(0, 30, pixels.shape)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            folder / f"{k:05d}.jpg", quality=90
        )
    return root


def images_per_second(overrides: list[str], workers: int, epochs: int) -> float:
    """Training-loader throughput over ``epochs`` epochs after a warm-up one."""
    cfg = compose_train([*overrides, f"data.num_workers={workers}", "backbone=resnet18"])
    datamodule = build_datamodule(cfg)
    loader = datamodule.train_dataloader()
    for _ in loader:  # warm-up: workers started, files in the page cache
        pass
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            seen += len(batch["image"])
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--results", default=None, help="section title in benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = [
        "| workers | loose files img/s | shards img/s | shards / loose |",
        "| ---: | ---: | ---: | ---: |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = photos(Path(tmp) / "photos", args.images, args.size)
        loose = ["data=image_folder", f"data.root={root}", "data.val_fraction=0.1"]
        cfg = compose_train([*loose, "backbone=resnet18"])
        convert(cfg, ConvertOptions(output=str(Path(tmp) / "shards")))
        shards = ["data=shards", f"data.root={Path(tmp) / 'shards'}"]
        for workers in args.workers:
            a = images_per_second(loose, workers, args.epochs)
            b = images_per_second(shards, workers, args.epochs)
            rows.append(f"| {workers} | {a:.1f} | {b:.1f} | {b / a:.2f} |")
            print(rows[-1], flush=True)
    settings = (
        f"{args.images} JPEGs of {args.size}x{args.size}, image_folder's training pipeline at "
        f"224x224 (resnet18's size), batch 32; {args.epochs} epochs after a warm-up epoch"
    )
    report_cpu(args.results, settings, rows, sys.argv)


if __name__ == "__main__":
    main()
