"""Our classification task trained through the Lightning Trainer, timed per optimizer step."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

import pytorch_lightning as pl
import torch

from cvtasks.tasks import ClassificationTask

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
    """The time at the end of every training batch, CUDA synchronized."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.stamps.append(time.perf_counter())


def lightning_train_rate(name: str, args: argparse.Namespace, device: torch.device) -> float:
    """Median training images/s of ``ClassificationTask`` over timed windows after warm-up."""
    task = ClassificationTask(
        backbone={"name": name},
        num_classes=NUM_CLASSES,
        head={"name": "linear"},
        aux_weight=0.0,  # the baselines train no auxiliary classifiers
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01, "momentum": 0.9},
        scheduler={"name": "constant"},
        compile=bool(args.compile),
        channels_last=bool(args.channels_last),
    )
    steps = args.warmup + args.windows * args.steps
    clock = StepClock()
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision="bf16-mixed" if args.precision == "bf16" else "32-true",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        benchmark=device.type == "cuda",
        callbacks=[clock],
    )
    trainer.fit(task, train_dataloaders=DeviceBatches(args, device, steps))
    stamps = clock.stamps[args.warmup - 1 :]
    rates = []
    for w in range(args.windows):
        seconds = stamps[(w + 1) * args.steps] - stamps[w * args.steps]
        rates.append(args.steps * args.batch_size / seconds)
    return statistics.median(rates)
