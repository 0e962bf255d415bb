"""Our classification task trained through the Lightning Trainer, timed per optimizer step.

Run alone, it measures what the Trainer adds: the same network (backbone + linear head), loss,
optimizer and batch in a hand-written loop and through the Trainer ``train.py`` builds, in one
process, and prints the overhead (1 - Trainer images/s / loop images/s)::

    python benchmarks/lightning_bench.py --device cpu --backbones resnet18 --batch-size 16 \
        --image-size 64 --no-compile
    python benchmarks/lightning_bench.py --device cuda --backbones resnet18 resnet50 \
        --batch-size 128 --image-size 224 --precision bf16 --channels-last --no-compile
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from cvtasks.tasks import ClassificationTask

import throughput
from results import environment, report

NUM_CLASSES = 1000


class DeviceBatches:
    """``count`` copies of one synthetic batch already on the device, as the plain loop uses."""

    def __init__(self, args: argparse.Namespace, device: torch.device, count: int) -> None:
        size = args.image_size
        self.batch = {
            "image": torch.randn(args.batch_size, 3, size, size, device=device),
            "label": torch.randint(0, NUM_CLASSES, (args.batch_size,), device=device),
        }
        self.count = count

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return (self.batch for _ in range(self.count))

    def __len__(self) -> int:
        return self.count


class StepClock(pl.Callback):
    """The time at the end of every ``every``-th training batch from batch ``first`` on.

    CUDA is synchronized only at those batches, as the plain loop synchronizes only at the ends
    of its timed windows: a synchronization after every batch would slow the Trainer down.
    """

    def __init__(self, first: int, every: int) -> None:
        self.first, self.every = first, every
        self.stamps: list[float] = []
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        done, self.batches = self.batches, self.batches + 1
        if done < self.first or (done - self.first) % self.every:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.stamps.append(time.perf_counter())


def train_trainer(args: argparse.Namespace, device: torch.device, steps: int, out: str):
    """The Trainer ``python train.py`` builds (its trainer and callbacks configs), for ``steps``.

    ``trainer=gpu`` on CUDA (bf16-mixed, cuDNN benchmark) or ``trainer=cpu``, with every per-step
    callback of ``callbacks=default`` (non-finite loss guard, RNG state, SIGTERM checkpoint,
    progress bar); no logger, no validation, and no checkpoint files (written after the timed
    steps anyway).
    """
    from cvtasks.cli.build import build_trainer
    from cvtasks.config import compose_train

    overrides = [
        f"trainer={'gpu' if device.type == 'cuda' else 'cpu'}",
        f"trainer.precision={'bf16-mixed' if args.precision == 'bf16' else '32-true'}",
        f"+trainer.max_steps={steps}",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=0",
        "+trainer.num_sanity_val_steps=0",
        "+trainer.enable_model_summary=false",
        "logger=none",
        "~callbacks.model_checkpoint",
        f"paths.output_dir={out}",
    ]
    return build_trainer(compose_train(overrides))


def classification_task(name: str, args: argparse.Namespace) -> ClassificationTask:
    """Backbone ``name`` + linear head, SGD with momentum: the network both loops train."""
    return ClassificationTask(
        backbone={"name": name},
        num_classes=NUM_CLASSES,
        head={"name": "linear"},
        aux_weight=0.0,  # the baselines train no auxiliary classifiers
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01, "momentum": 0.9},
        scheduler={"name": "constant"},
        compile=bool(args.compile),
        channels_last=bool(args.channels_last),
    )


def lightning_train_rate(name: str, args: argparse.Namespace, device: torch.device) -> float:
    """Median training images/s of ``ClassificationTask`` over timed windows after warm-up."""
    task = classification_task(name, args)
    steps = args.warmup + args.windows * args.steps
    clock = StepClock(first=max(args.warmup, 1) - 1, every=args.steps)
    with tempfile.TemporaryDirectory() as out:
        trainer = train_trainer(args, device, steps, out)
        trainer.callbacks.append(clock)
        trainer.fit(task, train_dataloaders=DeviceBatches(args, device, steps))
    rates = [
        args.steps * args.batch_size / (end - start)
        for start, end in itertools.pairwise(clock.stamps)
    ]
    return statistics.median(rates)


def loop_train_rate(name: str, args: argparse.Namespace, device: torch.device) -> float:
    """Median training images/s of the same network, loss and optimizer in a plain loop."""
    net: nn.Module = throughput.prepared(classification_task(name, args).net, args, device)
    if args.compile:
        net.compile()
    batch = DeviceBatches(args, device, 1).batch
    images = batch["image"]
    if args.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = throughput.optimizer_for(net, device)
    net.train()

    def step() -> None:
        with throughput.autocast(device, args.precision):
            loss = nn.functional.cross_entropy(net(images), batch["label"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return throughput.timed(step, args, device)


def overhead_row(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Loop and Trainer images/s of one backbone, printed as each is measured."""
    row: dict[str, Any] = {"backbone": name}
    for key, rate in (("loop", loop_train_rate), ("lightning", lightning_train_rate)):
        torch.manual_seed(0)
        row[key] = rate(name, args, device)
        print(f"  {name:<16} {key:<10} {row[key]:>10.1f} images/s", flush=True)
        torch._dynamo.reset()
    row["overhead"] = 1.0 - row["lightning"] / row["loop"]
    print(f"  {name:<16} overhead   {100 * row['overhead']:>9.1f} %", flush=True)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backbone | loop images/s | Trainer images/s | Trainer overhead |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['backbone']} | {r['loop']:.1f} | {r['lightning']:.1f} "
            f"| {100 * r['overhead']:.1f} % |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = throughput.base_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    device = throughput.setup_device(args)
    rows = [overhead_row(name, args, device) for name in args.backbones]
    env = environment(device)
    settings = (
        f"batch {args.batch_size}, {args.image_size}x{args.image_size}, precision "
        f"{args.precision}, channels_last {args.channels_last}, compiled {args.compile}, "
        f"median of {args.windows} windows of {args.steps} steps after {args.warmup} warm-up steps"
    )
    report(args, env, settings, table(rows), rows)


if __name__ == "__main__":
    main()
