"""Shared fixtures: an isolated data cache, one torch thread, Hydra composition, train.py runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from cvtasks import config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test (and every train.py it starts) uses one temporary cache, never the user's."""
    cache = tmp_path_factory.mktemp("cvtasks-cache")
    old = os.environ.get("CVTASKS_CACHE")
    os.environ["CVTASKS_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("CVTASKS_CACHE", None)
    else:
        os.environ["CVTASKS_CACHE"] = old


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op torch thread for the test, then the old count back.

    On a busy shared CPU, spinning OpenMP threads cost more than they give: small models step
    several times faster on one thread there. Request it, or mark a module with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def compose_train() -> Iterator[Callable[..., DictConfig]]:
    """Compose ``conf/train.yaml`` with overrides, as ``python train.py`` would."""
    GlobalHydra.instance().clear()

    def _compose(*overrides: str, return_hydra_config: bool = False) -> DictConfig:
        return config.compose_train(overrides, return_hydra_config=return_hydra_config)

    yield _compose
    GlobalHydra.instance().clear()


class TrainRun:
    """The outcome of one ``python train.py`` subprocess."""

    def __init__(self, proc: subprocess.CompletedProcess, run_dir: Path) -> None:
        self.proc = proc
        self.run_dir = run_dir
        self.output = proc.stdout + proc.stderr

    @property
    def metrics(self) -> dict:
        return json.loads((self.run_dir / "metrics.json").read_text())

    def check(self) -> TrainRun:
        assert self.proc.returncode == 0, self.output[-6000:]
        return self


TINY = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "callbacks.progress_bar=null",
)


@pytest.fixture
def run_train(tmp_path: Path) -> Callable[..., TrainRun]:
    """Run ``train.py`` with overrides in ``tmp_path`` (its run folder is ``tmp_path/run``)."""

    def _run(*overrides: str, env: dict[str, str] | None = None, timeout: int = 300) -> TrainRun:
        run_dir = tmp_path / "run"
        cmd = [sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
        proc = subprocess.run(
            cmd,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
        return TrainRun(proc, run_dir)

    return _run
