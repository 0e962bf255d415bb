"""Data-pipeline images/s per worker: our datasets and albumentations against torchvision.

    python benchmarks/data.py [--samples 400] [--jpeg-size 256] [--results "Data pipeline, CPU"]

One process stands for one DataLoader worker. For each built-in dataset (its default config from
``conf/data``, images not cached, so every sample is decoded) and for a folder of JPEG photos
written here, it times:

- ``ours``: the dataset's own ``__getitem__`` (decode, the configured augmentations with their
  targets — boxes, points, masks — resize, normalize);
- ``albumentations`` and ``torchvision``: one standard training pipeline written in each library
  (decode with PIL, random resized crop, horizontal flip, colour jitter, normalize, to a tensor)
  over the same files, so the two libraries are compared like for like.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
import yaml
from PIL import Image

from cvtasks.registry import DATASETS

from results import command_line, environment, write_section

CONF = Path(__file__).resolve().parent.parent / "conf" / "data"
BUILTIN = ("digits", "digits_localization", "synthetic_faces", "shapes", "synthetic_identities")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def build_datamodule(name: str, **overrides: Any):
    """The dataset's DataModule from its ``conf/data/<name>.yaml``, images not cached."""
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    cfg.pop("name")
    cfg.update(cache_images=False, num_workers=0, **overrides)
    datamodule = DATASETS.build(name, **cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def image_files(root: Path, limit: int) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    return [p for p in files if "mask" not in p.parts][:limit]


def rate(run: Callable[[int], Any], count: int) -> float:
    """Items per second of ``run(i)`` for ``i < count`` (after two untimed calls)."""
    run(0), run(1)
    start = time.perf_counter()
    for i in range(count):
        run(i)
    return count / (time.perf_counter() - start)


def standard_pipelines(size: int) -> tuple[Callable, Callable]:
    """The same augmentation in albumentations and in torchvision (v2), image file → tensor."""
    from torchvision.transforms import v2

    album = A.Compose(
        [
            A.RandomResizedCrop((size, size), scale=(0.5, 1.0)),
            A.HorizontalFlip(p=0.5),
            A.ColorJitter(0.2, 0.2, 0.2, 0.0, p=1.0),
            A.Normalize(MEAN, STD),
            A.ToTensorV2(),
        ]
    )
    vision = v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomResizedCrop((size, size), scale=(0.5, 1.0), antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
            v2.ColorJitter(0.2, 0.2, 0.2, 0.0),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )

    def with_albumentations(path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            return album(image=np.asarray(image.convert("RGB")))["image"]

    def with_torchvision(path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            return vision(image.convert("RGB"))

    return with_albumentations, with_torchvision


def write_jpegs(folder: Path, count: int, size: int) -> Path:
    """``count`` photo-like JPEGs (smooth colour fields plus noise) in two class folders."""
    rng = np.random.default_rng(0)
    for i in range(count):
        grid = np.stack(np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size)), -1)
        base = grid @ rng.uniform(0, 255, (2, 3)) + rng.normal(0, 12, (size, size, 3))
        image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        (folder / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        image.save(folder / f"class{i % 2}" / f"{i:05d}.jpg", quality=90)
    return folder


def bench(name: str, datamodule, size: int, samples: int) -> dict[str, Any]:
    dataset = datamodule.train_dataset
    count = min(samples, len(dataset))
    root = Path(getattr(datamodule, "root", None) or tempfile.gettempdir())
    files = image_files(root, count)
    album, vision = standard_pipelines(size)
    row = {"dataset": name, "samples": count, "image_size": size}
    row["ours"] = rate(lambda i: dataset[i], count)
    row["albumentations"] = rate(lambda i: album(files[i % len(files)]), count)
    row["torchvision"] = rate(lambda i: vision(files[i % len(files)]), count)
    print(
        f"{name:<22} ours {row['ours']:8.0f}  albumentations {row['albumentations']:8.0f}  "
        f"torchvision {row['torchvision']:8.0f} images/s",
        flush=True,
    )
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | input | ours (configured pipeline) | albumentations (standard) "
        "| torchvision (standard) | albumentations / torchvision |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['image_size']} | {r['ours']:.0f} | {r['albumentations']:.0f} "
            f"| {r['torchvision']:.0f} | {r['albumentations'] / r['torchvision']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400, help="samples timed per pipeline")
    parser.add_argument("--jpeg-size", type=int, default=256, help="side of the JPEG photos")
    parser.add_argument("--datasets", nargs="+", default=list(BUILTIN))
    parser.add_argument("--results", default=None, help="section title in benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one worker process uses one core
    rows = []
    for name in args.datasets:
        datamodule = build_datamodule(name)
        rows.append(bench(name, datamodule, datamodule.image_size[0], args.samples))
    with tempfile.TemporaryDirectory() as tmp:
        root = write_jpegs(Path(tmp), args.samples + 2, args.jpeg_size)
        datamodule = build_datamodule("image_folder", root=str(root), image_size=224)
        rows.append(bench(f"JPEG folder {args.jpeg_size}px", datamodule, 224, args.samples))
    text = table(rows)
    env = environment(torch.device("cpu"))
    settings = f"one process (= one DataLoader worker), 1 torch thread, {args.samples} samples"
    print(f"\n{env['summary']}\n{settings}\n\n{text}")
    if args.results:
        write_section(args.results, env, settings, text, command_line(sys.argv))


if __name__ == "__main__":
    main()
