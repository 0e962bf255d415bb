"""Shared fixtures: an isolated data cache, one torch thread, Hydra composition, train.py runs."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import warnings
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
    """The outcome of one ``python train.py`` run (a subprocess, or in this process)."""

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
    """Run ``train.py`` with overrides in ``tmp_path`` (its run folder is ``tmp_path/run``).

    The run goes through ``train.py``'s entry point in this process: a subprocess would spend
    about five seconds importing torch and Lightning before it trains. ``own_process=True`` (or
    an ``env``) starts a real ``python train.py`` instead, for what only a process shows: exit
    codes of signals, environment variables, strategies that launch copies of the command,
    plugins that must not stay registered here.
    """

    def _run(
        *overrides: str,
        env: dict[str, str] | None = None,
        timeout: int = 300,
        own_process: bool = False,
    ) -> TrainRun:
        run_dir = tmp_path / "run"
        if not (own_process or env):
            from cvtasks.cli.train import main

            argv = ["train.py", *overrides, f"hydra.run.dir={run_dir}"]
            return TrainRun(run_in_process(main, argv, tmp_path), run_dir)
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


def run_cvtasks(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m cvtasks ARGS`` in ``cwd``, importing this checkout (and its test helpers)."""
    return subprocess.run(
        [sys.executable, "-m", "cvtasks", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_in_process(
    entry: Callable[[], object], argv: list[str], cwd: Path
) -> subprocess.CompletedProcess:
    """Call a command's entry point with ``argv`` in ``cwd``; its exit code, stdout and stderr.

    For commands whose subprocess would spend most of its time importing torch and Lightning.
    Hydra's global state, the working folder and the logging handlers Hydra installs are put
    back afterwards.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    old_argv, old_cwd = sys.argv, os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    sys.argv = argv
    os.chdir(cwd)
    GlobalHydra.instance().clear()
    try:
        # catch_warnings: a warning an earlier call printed is printed again, as in a new process
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            warnings.catch_warnings(),
        ):
            warnings.showwarning = _print_warning  # to stderr, not pytest's record
            result = entry()
        code = result if isinstance(result, int) else 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        GlobalHydra.instance().clear()
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def cvtasks_in_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m cvtasks ARGS`` in ``cwd``, through its entry point in this process."""
    from cvtasks.__main__ import main

    return run_in_process(lambda: main(list(args)), ["cvtasks", *args], cwd)


@pytest.fixture
def train_in_process(tmp_path: Path) -> Callable[..., TrainRun]:
    """Run ``train.py``'s entry point in this process, in ``tmp_path`` (run folder
    ``tmp_path/run``): for runs that end before training (bad config, bad data), which a
    subprocess would spend seconds just importing for."""
    from cvtasks.cli.train import main

    def _run(*overrides: str) -> TrainRun:
        run_dir = tmp_path / "run"
        argv = ["train.py", *overrides, f"hydra.run.dir={run_dir}"]
        return TrainRun(run_in_process(main, argv, tmp_path), run_dir)

    return _run
