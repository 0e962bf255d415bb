"""What the training switches do to the built-in recipes: test metric and time, one run each.

    python benchmarks/recipes.py --recipe digits|shapes|faces|identities|gray25
        [--switches default ema mixup ...] [--seed 0]
        [--results "Switches, digits, CPU"]

Each switch is a set of ``train.py`` overrides added to the recipe's own; every run is
``python train.py`` in a temporary folder (a subprocess, as a user runs it) and reports the
test metric of its best checkpoint and the wall time of the whole command. ``--recipe gray25``
trains on a generated folder of 25x25 grayscale PNGs (2 classes, 200 images: sklearn's 3s and 8s)
with every setting default, against the same run at the 224x224, 3-channel input that folder
used to be read at. ``from shards`` converts the recipe's data with ``data convert`` and trains
from ``data=shards``. Times are only comparable between runs on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from results import ROOT, report_cpu

RECIPES: dict[str, dict[str, object]] = {
    "digits": {"overrides": [], "metric": "test/acc"},
    "shapes": {"overrides": ["task=segmentation"], "metric": "test/miou"},
    "gray25": {"overrides": ["data=image_folder"], "metric": "test/acc"},
    "faces": {"overrides": ["task=landmarks"], "metric": "test/nme"},
    "identities": {"overrides": ["task=siamese"], "metric": "test/auc"},
}

SWITCHES: dict[str, list[str]] = {
    "default": [],
    "ema": ["callbacks.ema.enabled=true"],
    "mixup": ["task.mixup.mixup_alpha=0.8", "task.mixup.cutmix_alpha=1.0"],
    "augment=light": ["data.augment=light"],
    "augment=medium": ["data.augment=medium"],
    "augment=heavy": ["data.augment=heavy"],
    "backbone_lr_scale=0.1": ["task.backbone_lr_scale=0.1"],
    "freeze_backbone_epochs=5": ["task.freeze_backbone_epochs=5"],
    "freeze_bn": ["task.freeze_bn=true"],
    "drop_path=0.1": ["backbone.drop_path_rate=0.1"],
    "before: 224, 3 channels": ["data.image_size=224", "backbone.in_chans=3"],
    "from shards": [],  # the recipe's data converted by `data convert`, read by data=shards
}


def gray_folder(root: Path, per_class: int = 100) -> Path:
    """200 grayscale 25x25 PNGs in class folders ``three/`` and ``eight/`` (sklearn digits)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label, name in ((3, "three"), (8, "eight")):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        images = digits.images[digits.target == label][:per_class]
        for i, image in enumerate(images):
            pixels = (image * (255 / 16)).astype(np.uint8)
            Image.fromarray(pixels, mode="L").resize((25, 25), Image.BILINEAR).save(
                folder / f"{i:03d}.png"
            )
    return root


def shards(overrides: list[str], output: Path) -> list[str]:
    """Convert the data ``overrides`` name; the overrides that train from the shards instead."""
    command = [sys.executable, "-m", "cvtasks", "data", "convert", *overrides, f"output={output}"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    kept = [o for o in overrides if o.startswith("task=")]
    return [*kept, "data=shards", f"data.root={output}"]


def run(overrides: list[str], metric: str, workdir: Path) -> dict[str, float]:
    """One ``train.py`` run; its test metric, epochs and wall seconds."""
    run_dir = workdir / "run"
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        *overrides,
        f"hydra.run.dir={run_dir}",
        f"paths.log_dir={workdir / 'logs'}",
        "logger=csv",
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"metric": float(metrics[metric]), "epochs": metrics["epochs"], "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="digits")
    parser.add_argument("--switches", nargs="+", default=["default"], choices=sorted(SWITCHES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=None, help="section title in benchmarks/RESULTS.md")
    args = parser.parse_args()
    recipe = RECIPES[args.recipe]
    metric = str(recipe["metric"])
    rows = [f"| switch | {metric} | epochs | wall s |", "| --- | ---: | ---: | ---: |"]
    with tempfile.TemporaryDirectory() as tmp:
        base = [*recipe["overrides"], f"seed={args.seed}"]  # type: ignore[misc]
        if args.recipe == "gray25":
            base.append(f"data.root={gray_folder(Path(tmp) / 'gray25')}")
        for i, switch in enumerate(args.switches):
            workdir = Path(tmp) / f"run{i}"
            workdir.mkdir()
            overrides = [*base, *SWITCHES[switch]]
            if switch == "from shards":
                overrides = [*shards(base, Path(tmp) / "shards"), f"seed={args.seed}"]
            result = run(overrides, metric, workdir)
            rows.append(
                f"| {switch} | {result['metric']:.4f} | {result['epochs']} | "
                f"{result['wall_s']:.1f} |"
            )
            print(rows[-1], flush=True)
    settings = f"recipe {args.recipe} (`{' '.join(recipe['overrides']) or 'defaults'}`), seed "
    settings += f"{args.seed}; one run per switch, test metric of the best checkpoint"
    report_cpu(args.results, settings, rows, sys.argv)


if __name__ == "__main__":
    main()
