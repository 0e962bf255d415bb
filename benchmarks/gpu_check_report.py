"""One result line per step of ``benchmarks/gpu_check.sh``, from the files the step wrote.

    python benchmarks/gpu_check_report.py run RUN_DIR [--step NAME --collect RUNS.json]
    python benchmarks/gpu_check_report.py throughput THROUGHPUT.json
    python benchmarks/gpu_check_report.py lightning LIGHTNING.json

``run`` reads a ``train.py`` run folder: the monitored metric, the test metric of the same name,
epochs, steps, processes and time from ``metrics.json``, and from ``checkpoints/last.ckpt`` (loaded
with ``weights_only=True``) whether the optimizer stepped fused and whether the weights were
saved under clean (uncompiled) names; ``--collect`` merges those figures into one JSON file under
``--step``. ``throughput`` gives ours/baseline for every variant measured; ``lightning`` the
Trainer's overhead over the plain loop.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def checkpoint_facts(path: Path) -> dict[str, Any]:
    """Optimizer ``fused`` flag and whether any weight name carries ``_orig_mod`` (compiled)."""
    from cvtasks.io import torch_load_safe  # imports torch: only the run report pays for it

    state = torch_load_safe(path)
    groups = state["optimizer_states"][0]["param_groups"] if state["optimizer_states"] else []
    return {
        "optimizer_fused": groups[0].get("fused") if groups else None,
        "clean_keys": not any("_orig_mod" in key for key in state["state_dict"]),
    }


def run_line(run_dir: Path, step: str | None = None, collect: Path | None = None) -> str:
    """``val/miou=0.61 test/miou=0.60 epochs=1 steps=40 world_size=1 time=31.2s fused=True …``."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    monitor = metrics["monitor"]
    test_key = "test/" + monitor.split("/", 1)[1]
    facts: dict[str, Any] = {
        monitor: metrics["monitor_value"],
        test_key: metrics.get(test_key),
        "epochs": metrics["epochs"],
        "steps": metrics["global_step"],
        "world_size": metrics["world_size"],
        "time_s": metrics["time_s"],
    }
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        facts.update(checkpoint_facts(last))
    if collect is not None and step:
        from cvtasks.io import write_json

        runs = json.loads(collect.read_text()) if collect.is_file() else {}
        runs[step] = facts
        write_json(collect, runs)
    return " ".join(
        f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}"
        for key, value in facts.items()
    )


def throughput_line(path: Path) -> str:
    """Ours over the baseline per variant: ``resnet50 ours/baseline: train eager 0.98x, …``."""
    rows = json.loads(path.read_text())["rows"]
    parts = []
    for backbone in dict.fromkeys(r["backbone"] for r in rows):
        mine = [r for r in rows if r["backbone"] == backbone]
        base = {r["variant"]: r["images_per_s"] for r in mine if r["who"] == "baseline"}
        ours = [r for r in mine if r["who"] != "baseline"]
        ratios = [
            f"{r['variant']}{' (Trainer)' if r['who'] != 'ours' else ''} "
            f"{r['images_per_s'] / base[r['variant']]:.2f}x"
            for r in ours
            if r["variant"] in base
        ]
        ratios += [
            f"{r['variant']} {r['images_per_s']:.0f}/s" for r in ours if r["variant"] not in base
        ]
        parts.append(f"{backbone} ours/baseline: {', '.join(ratios)}")
    return "; ".join(parts)


def lightning_line(path: Path) -> str:
    """``resnet18: loop 5230/s, Trainer 5010/s, overhead 4.2%``."""
    rows = json.loads(path.read_text())["rows"]
    return "; ".join(
        f"{r['backbone']}: loop {r['loop']:.0f}/s, Trainer {r['lightning']:.0f}/s, "
        f"overhead {100 * r['overhead']:.1f}%"
        for r in rows
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("run", "throughput", "lightning"))
    parser.add_argument("path", type=Path)
    parser.add_argument("--step", default=None, help="run: the name to collect it under")
    parser.add_argument("--collect", type=Path, default=None, help="run: JSON file to merge into")
    args = parser.parse_args(argv)
    if args.kind == "run":
        print(run_line(args.path, args.step, args.collect))
    elif args.kind == "throughput":
        print(throughput_line(args.path))
    else:
        print(lightning_line(args.path))


if __name__ == "__main__":
    main()
