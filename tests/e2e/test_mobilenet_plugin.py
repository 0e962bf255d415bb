"""The first-party MobileNetV2 plugin, installed as a wheel into a temporary folder, trains.

Installing (not importing from the source tree) checks what a user gets from ``pip install``:
the entry point that registers ``mobilenet_v2`` and the packaged ``conf/backbone`` config that
makes ``backbone=mobilenet_v2`` a Hydra choice.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY

pytestmark = pytest.mark.slow


def install_plugin(folder: Path, target: Path) -> dict[str, str]:
    """``pip install`` a plugin folder into ``target``; returns the environment that sees it."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "--target", str(target), str(folder)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


def cvtasks_command(env: dict[str, str], *args: str) -> str:
    """The standard output of ``python -m cvtasks ARGS`` in ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "cvtasks", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=True,
    ).stdout


def test_installed_mobilenet_plugin_trains_and_lists(run_train, tmp_path):
    target = tmp_path / "site"
    env = install_plugin(ROOT / "plugins" / "cvtasks-mobilenet", target)
    assert Path(target, "cvtasks_mobilenet", "conf", "backbone", "mobilenet_v2.yaml").is_file()

    run = run_train(*TINY, "backbone=mobilenet_v2", "backbone.width_mult=0.35", env=env).check()
    config = (run.run_dir / "config.yaml").read_text()
    assert "name: mobilenet_v2" in config and "width_mult: 0.35" in config
    assert 0.0 <= run.metrics["test/acc"] <= 1.0

    listed = cvtasks_command(env, "list", "backbones", "mobilenet*")
    assert "mobilenet_v2" in listed and "3,504,872" in listed
    plugins = cvtasks_command(env, "list", "plugins")
    assert "mobilenet" in plugins and "cvtasks_mobilenet" in plugins
