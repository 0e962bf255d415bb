"""Multirun sweeps: Hydra's basic grid and the Optuna sweeper, each trial returning its metric."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, TINY

pytestmark = pytest.mark.slow


def sweep(tmp_path: Path, *overrides: str) -> tuple[Path, subprocess.CompletedProcess]:
    folder = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "train.py"), *overrides, *TINY, f"hydra.sweep.dir={folder}"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return folder, proc


def trial_results(folder: Path) -> list[tuple[dict, dict]]:
    """(config, metrics) of every trial folder ``0``, ``1``, ... of a sweep."""
    runs = sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return [
        (
            yaml.safe_load((r / "config.yaml").read_text()),
            json.loads((r / "metrics.json").read_text()),
        )
        for r in runs
    ]


def test_grid_multirun_runs_each_value_and_returns_its_metric(tmp_path):
    folder, _ = sweep(tmp_path, "-m", "task.optimizer.lr=1e-3,3e-3")
    trials = trial_results(folder)
    assert [cfg["task"]["optimizer"]["lr"] for cfg, _ in trials] == [1e-3, 3e-3]
    for _, metrics in trials:
        assert metrics["monitor"] == "val/acc"
        assert 0.0 <= metrics["monitor_value"] <= 1.0


def has_optuna_sweeper() -> bool:
    try:
        return importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None
    except ModuleNotFoundError:  # no hydra_plugins namespace at all
        return False


@pytest.mark.skipif(
    not has_optuna_sweeper(), reason='needs the sweep extra: pip install -e ".[sweep]"'
)
def test_optuna_sweep_two_trials(tmp_path):
    folder, _ = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=2")
    trials = trial_results(folder)
    assert len(trials) == 2
    lrs = [cfg["task"]["optimizer"]["lr"] for cfg, _ in trials]
    assert all(1e-4 <= lr <= 1e-1 for lr in lrs) and lrs[0] != lrs[1]
    results = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    # the sweeper saw what each train() returned: its best is the best trial's metric
    assert results["best_value"] == pytest.approx(max(m["monitor_value"] for _, m in trials))
