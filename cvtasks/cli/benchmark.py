"""``python -m cvtasks benchmark ckpt=PATH [formats=torch,onnx,torchscript] [batch_sizes=1,8,32]``.

Speed and accuracy of one checkpoint in each runtime (:mod:`cvtasks.cli.runtimes`), on this
machine. For each format and batch size: the latency, the median time of one batch of random
images of the model's input size after ``warmup`` untimed batches (``repeats`` timed ones), and
the throughput, images per second at that latency. For each format: the task's test metrics on
the checkpoint's test data, read as ``evaluate`` reads it and scored by the task's own test loop
with the format's runtime in place of the network (so the ``torch`` row repeats ``evaluate``'s
numbers, and a format that changed the model shows it in its metric). Prints one table and
writes ``benchmark.csv`` (one row per format and batch size) and ``benchmark.json`` (the rows,
every test metric per format, the settings) into ``output``.
"""

from __future__ import annotations

import csv
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from cvtasks.cli.build import to_dict
from cvtasks.cli.common import TrainedModel, load_trained, run_command
from cvtasks.cli.evaluate import build_test_data, test_metrics
from cvtasks.cli.outputs import refuse_run_folder
from cvtasks.cli.runtimes import (
    RUNTIME_FORMATS,
    RawNetwork,
    Runner,
    latency_ms,
    make_runner,
    raw_network,
    scoring_task,
)
from cvtasks.config import CONFIG_DIR, setup_hydra
from cvtasks.inference import resolve_device
from cvtasks.io import atomic_open, write_json

log = logging.getLogger(__name__)

#: the columns of benchmark.csv, in order
COLUMNS = ("format", "batch_size", "device", "latency_ms", "images_per_s", "metric", "value")
#: options given as lists; ``formats=torch,onnx`` is read as ``formats=[torch,onnx]``
LIST_OPTIONS = ("formats", "batch_sizes")


def _items(value: Any) -> list[Any]:
    if isinstance(value, (ListConfig, list, tuple)):
        return list(value)
    return [v.strip() for v in str(value).split(",")]


def parse_formats(value: Any) -> list[str]:
    """``formats`` as a list without repeats, each one of :data:`RUNTIME_FORMATS`.

    Raises:
        ValueError: an empty list or an unknown format, naming the known ones.
    """
    items = [str(f) for f in _items(value)]
    formats = list(dict.fromkeys(f for f in items if f))
    unknown = [f for f in formats if f not in RUNTIME_FORMATS]
    if unknown or not formats:
        raise ValueError(
            f"formats={','.join(items)}: "
            f"{'unknown format ' + repr(unknown[0]) if unknown else 'none'}; "
            f"give one or more of {', '.join(RUNTIME_FORMATS)} (e.g. formats=torch,onnx)"
        )
    return formats


def parse_batch_sizes(value: Any) -> list[int]:
    """``batch_sizes`` as a list of positive ints without repeats.

    Raises:
        ValueError: an empty list, or an item that is not a positive int.
    """
    sizes: list[int] = []
    items = _items(value)
    for item in items:
        try:
            size = int(str(item))
        except ValueError:
            size = 0
        if size < 1:
            raise ValueError(
                f"batch_sizes={','.join(map(str, items))}: {item!r} is not a positive int; "
                "give e.g. batch_sizes=1,8"
            )
        sizes.append(size)
    return list(dict.fromkeys(sizes))


def list_arguments(argv: Sequence[str]) -> list[str]:
    """Command-line ``key=a,b`` for the list options as ``key=[a,b]``: Hydra would read a bare
    comma list as a sweep and refuse it outside ``--multirun``."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in LIST_OPTIONS and "," in value and not value.startswith(("[", "'", '"')):
            arg = f"{key}=[{value}]"
        out.append(arg)
    return out


def trainer_config(trainer: DictConfig, device: torch.device) -> DictConfig:
    """The test loop's trainer, on the benchmarked device."""
    if device.type == "cuda":
        where: dict[str, Any] = {"accelerator": "gpu", "devices": [device.index or 0]}
    else:
        where = {"accelerator": device.type, "devices": 1}
    return OmegaConf.create({**to_dict(trainer), **where})  # resolved while it has its root


def metric_name(model: TrainedModel) -> str:
    """The test metric the table shows: the one the run monitored, of the test split."""
    monitor = str(getattr(model.task, "monitor", "val/loss"))
    return "test/" + monitor.split("/", 1)[-1]


def score(
    model: TrainedModel, runner: Runner, raw: RawNetwork, datamodule: Any, trainer: DictConfig
) -> dict[str, float]:
    """Every ``test/*`` metric of the task's test loop with ``runner`` as its network."""
    scored = TrainedModel(scoring_task(model, runner, raw), model.config, model.path)
    metrics, _ = test_metrics(scored, datamodule, OmegaConf.create({"trainer": trainer}))
    return metrics


def measure(
    runner: Runner, model: TrainedModel, sizes: Sequence[int], warmup: int, repeats: int
) -> list[dict[str, Any]]:
    """One row per batch size: latency (median ms per batch) and throughput (images/s)."""
    generator = torch.Generator().manual_seed(0)
    rows = []
    for size in sizes:
        images = torch.randn(size, model.channels, *model.image_size, generator=generator)
        ms = latency_ms(runner, images, warmup, repeats)
        rows.append(
            {
                "format": runner.format,
                "batch_size": size,
                "device": runner.where,
                "latency_ms": round(ms, 6),
                "images_per_s": round(size * 1000.0 / ms, 3),
            }
        )
        log.info("%s, batch %d on %s: %.3f ms", runner.format, size, runner.where, ms)
    return rows


def table(rows: Sequence[dict[str, Any]], metric: str | None) -> list[str]:
    """The rows as aligned text lines under a header."""
    header = ["format", "batch", "device", "latency ms", "images/s"] + ([metric] if metric else [])
    lines = [header]
    for row in rows:
        value = row.get("value")
        cells = [
            row["format"],
            str(row["batch_size"]),
            row["device"],
            f"{row['latency_ms']:.3f}",
            f"{row['images_per_s']:.1f}",
        ]
        if metric:
            cells.append("-" if value is None else f"{value:.4f}")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
        for line in lines
    ]


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """``benchmark.csv``, atomically: the :data:`COLUMNS` of every row."""
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: row.get(key) for key in COLUMNS} for row in rows)


def benchmark(cfg: DictConfig) -> dict[str, Any]:
    """Run the ``benchmark`` command; returns what it wrote into ``benchmark.json``."""
    start = time.perf_counter()
    formats = parse_formats(cfg.formats)
    sizes = parse_batch_sizes(cfg.batch_sizes)
    warmup, repeats = int(cfg.warmup), int(cfg.repeats)
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup={warmup} must be >= 0 and repeats={repeats} >= 1")
    refuse_run_folder(cfg.output)
    model = load_trained(cfg.ckpt, cfg.get("expect_task"))
    device = resolve_device(str(cfg.device))
    datamodule = build_test_data(model, to_dict(cfg.get("data"))) if cfg.metric else None
    metric = metric_name(model) if datamodule is not None else None
    trainer = trainer_config(cfg.trainer, device)
    raw = raw_network(model)
    rows: list[dict[str, Any]] = []
    scores: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="cvtasks-benchmark-") as folder:
        for fmt in formats:
            runner = make_runner(
                fmt,
                model,
                raw,
                device,
                Path(folder),
                precision=str(cfg.precision),
                compile=bool(cfg.compile),
                opset=int(cfg.opset),
            )
            if datamodule is not None:
                scores[fmt] = score(model, runner, raw, datamodule, trainer)
            for row in measure(runner, model, sizes, warmup, repeats):
                value = scores.get(fmt, {}).get(metric) if metric else None
                rows.append({**row, "metric": metric, "value": value})
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    write_csv(output / "benchmark.csv", rows)
    summary = {
        "task": model.task_name,
        "checkpoint": str(model.path),
        "image_size": list(model.image_size),
        "device": str(device),
        "precision": str(cfg.precision),
        "warmup": warmup,
        "repeats": repeats,
        "metric": metric,
        "rows": rows,
        "test_metrics": scores,
        "time_s": round(time.perf_counter() - start, 2),
    }
    write_json(output / "benchmark.json", summary)
    print("\n".join(table(rows, metric)))
    print(f"benchmark.csv and benchmark.json in {output.resolve()}")
    return summary


@hydra.main(config_path=str(CONFIG_DIR), config_name="benchmark", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    run_command(benchmark, cfg)


def main() -> None:
    """Console entry point (``python -m cvtasks benchmark key=value ...``)."""
    setup_hydra()
    sys.argv = [sys.argv[0], *list_arguments(sys.argv[1:])]
    _hydra_main()
