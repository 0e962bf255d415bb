"""Multirun sweeps: Hydra's basic grid and the Optuna sweeper, each trial returning its metric.

Every job of a sweep writes down what it returned to Hydra (``tests.e2e.inject.RecordReturn``):
the tests compare that value with the job's own ``metrics.json``, the hyper-parameters with the
job's config and with the optimizer state in its checkpoint, and Optuna's best with the jobs'.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.conftest import ROOT, TINY
from tests.e2e.inject import RETURNED

pytestmark = pytest.mark.slow

RECORD = "+hydra.callbacks.record._target_=tests.e2e.inject.RecordReturn"
LR, WD = "task.optimizer.lr", "task.optimizer.weight_decay"


def sweep(tmp_path: Path, *overrides: str) -> Path:
    """Run a multirun of ``train.py`` (tiny runs, no test phase) into ``tmp_path/sweep``."""
    folder = tmp_path / "sweep"
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        *overrides,
        *TINY,
        "test=false",
        RECORD,
        f"hydra.sweep.dir={folder}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return folder


class Job:
    """One job folder of a sweep: its config, metrics, return value and optimizer settings."""

    def __init__(self, folder: Path) -> None:
        self.config = yaml.safe_load((folder / "config.yaml").read_text())
        self.metrics = json.loads((folder / "metrics.json").read_text())
        self.returned = json.loads((folder / RETURNED).read_text())
        last = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
        #: the parameter group with weight decay (weights; biases and norms get none)
        self.decayed = last["optimizer_states"][0]["param_groups"][0]

    @property
    def params(self) -> tuple[float, float]:
        """``(lr, weight_decay)`` of the job's config."""
        optimizer = self.config["task"]["optimizer"]
        return optimizer["lr"], optimizer["weight_decay"]

    def check(self) -> None:
        """The job trained with its parameters and returned its own monitored metric."""
        lr, wd = self.params
        assert self.decayed["initial_lr"] == pytest.approx(lr, rel=1e-12)
        assert self.decayed["weight_decay"] == pytest.approx(wd, rel=1e-12)
        assert self.metrics["monitor"] == "val/acc"
        value = self.metrics["monitor_value"]
        assert value == self.metrics["val/acc"]  # one epoch: the best is the last
        assert self.returned == {"completed": True, "return_value": value}


def jobs(folder: Path) -> list[Job]:
    """The jobs ``0``, ``1``, ... of a sweep, in launch order."""
    runs = sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return [Job(r) for r in runs]


def test_the_lr_wd_grid_runs_every_combination_and_returns_each_jobs_metric(tmp_path):
    found = jobs(sweep(tmp_path, "hparams_search=lr_wd_grid"))
    grid = {(lr, wd) for lr in (1e-3, 3e-3, 1e-2) for wd in (0.0, 0.05)}
    assert len(found) == len(grid) and {job.params for job in found} == grid
    for job in found:
        job.check()


def test_optuna_trials_run_their_sampled_values_and_the_best_is_the_best_job(tmp_path):
    folder = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=3")
    found = jobs(folder)
    assert len(found) == 3 and len({job.params for job in found}) == 3
    for job in found:
        lr, wd = job.params
        assert 1e-4 <= lr <= 1e-1 and 0.0 <= wd <= 0.1  # the search space of optuna.yaml
        job.check()
    results: dict[str, Any] = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    best = max(found, key=lambda job: job.returned["return_value"])  # the first of equals
    assert results["best_value"] == best.returned["return_value"]
    assert results["best_params"] == {LR: best.params[0], WD: best.params[1]}
