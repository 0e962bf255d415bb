"""Deployment formats side by side: ``python -m cvtasks benchmark`` over several checkpoints.

    python benchmarks/deploy.py RUN_DIR [RUN_DIR ...] [--formats torch,onnx,torchscript]
        [--batch-sizes 1,8,32] [--results "Deployment formats, default checkpoints, CPU"]

Each ``RUN_DIR`` is a ``train.py`` run folder (its ``checkpoints/best.ckpt`` is measured) or a
checkpoint file. For each, the benchmark command runs in its own process, one after the other
(run alone on the machine: latencies are medians of batches of random images), and one table
gathers the latency per batch size, the throughput at the largest batch and the task's test
metric per format (the same test loop with each runtime in the network's place).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from results import report_cpu


def checkpoint(path: str) -> Path:
    """The best checkpoint of a run folder, or the file itself."""
    given = Path(path)
    return given / "checkpoints" / "best.ckpt" if given.is_dir() else given


def benchmark(ckpt: Path, formats: str, sizes: str, out: Path) -> dict:
    """Run ``python -m cvtasks benchmark`` on ``ckpt``; its benchmark.json."""
    command = [
        sys.executable,
        "-m",
        "cvtasks",
        "benchmark",
        f"ckpt={ckpt}",
        f"formats={formats}",
        f"batch_sizes={sizes}",
        "device=cpu",
        f"output={out}",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark of {ckpt} failed:\n{proc.stderr[-3000:]}")
    return json.loads((out / "benchmark.json").read_text())


def rows_of(result: dict, sizes: list[int]) -> list[str]:
    """Table rows of one checkpoint: one per format."""
    by_format: dict[str, dict[int, dict]] = {}
    for row in result["rows"]:
        by_format.setdefault(row["format"], {})[row["batch_size"]] = row
    metric, lines = result["metric"], []
    for fmt, rows in by_format.items():
        value = result["test_metrics"].get(fmt, {}).get(metric)
        latencies = " | ".join(f"{rows[s]['latency_ms']:.3f}" for s in sizes)
        shown = "-" if value is None else f"{value:.4f}"
        lines.append(
            f"| {result['task']} | {fmt} | {latencies} | "
            f"{rows[sizes[-1]]['images_per_s']:.0f} | {metric} {shown} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="train.py run folders or checkpoint files")
    parser.add_argument("--formats", default="torch,onnx,torchscript")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--results", default=None, help="section title in benchmarks/RESULTS.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    header = " | ".join(f"ms @{s}" for s in sizes)
    rows = [
        f"| task | format | {header} | images/s @{sizes[-1]} | test metric |",
        "| --- | --- | " + "---: | " * len(sizes) + "---: | ---: |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for k, run in enumerate(args.runs):
            result = benchmark(checkpoint(run), args.formats, args.batch_sizes, Path(tmp) / str(k))
            rows += rows_of(result, sizes)
            print("\n".join(rows[-len(args.formats.split(",")) :]), flush=True)
    settings = (
        "each task's default recipe (`python train.py task=<task>`, seed 0), its best checkpoint; "
        "latency: median of 20 batches of random images after 5 warm-up batches; the metric: "
        "the task's test loop with each runtime in the network's place"
    )
    report_cpu(args.results, settings, rows, sys.argv)


if __name__ == "__main__":
    main()
