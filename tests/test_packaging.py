"""The wheel is the product: it carries every config, and its commands work from any folder.

The slow tests build the wheel twice from a clean copy of the checkout, as ``pip install .`` does
(straight from the tree) and as an index does (sdist first, then a wheel from the sdist), install
it into a folder of its own, and run ``cvtasks`` from another folder with only that install on
the path. Building in a copy keeps ``build/`` and ``*.egg-info`` out of the shared checkout, and
a stale ``build/lib`` out of the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cvtasks.config import CONFIG_DIR, find_config_dir
from tests.conftest import ROOT, TINY

#: what a build reads from the checkout (README.md is the package's long description)
SOURCES = ("cvtasks", "conf", "setup.py", "pyproject.toml", "README.md")
PIP = [sys.executable, "-m", "pip"]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def repo_configs() -> set[str]:
    return {p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"tree": wheel built from the source tree, "sdist": wheel built from the sdist}``."""
    root = tmp_path_factory.mktemp("package")
    src = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    build = ["wheel", "-q", "--no-deps", "--no-build-isolation"]
    run([*PIP, *build, "-w", str(root / "tree"), str(src)])
    sdist = "from setuptools import build_meta; import sys; build_meta.build_sdist(sys.argv[1])"
    run([sys.executable, "-c", sdist, str(root / "sdist")], cwd=src)
    (archive,) = (root / "sdist").glob("cvtasks-*.tar.gz")
    run([*PIP, *build, "-w", str(root / "from_sdist"), str(archive)])
    (tree,) = (root / "tree").glob("cvtasks-*.whl")
    (from_sdist,) = (root / "from_sdist").glob("cvtasks-*.whl")
    return {"tree": tree, "sdist": from_sdist}


def test_config_dir_is_the_package_folder_in_a_wheel_and_beside_it_in_a_checkout(tmp_path):
    package = tmp_path / "cvtasks"
    (tmp_path / "conf").mkdir(parents=True)
    (tmp_path / "conf" / "train.yaml").write_text("seed: 0\n")
    package.mkdir()
    assert find_config_dir(package) == tmp_path / "conf"  # a checkout: conf/ beside cvtasks/
    (package / "conf").mkdir()
    assert find_config_dir(package) == tmp_path / "conf"  # an empty folder is no config folder
    (package / "conf" / "train.yaml").write_text("seed: 0\n")
    assert find_config_dir(package) == package / "conf"  # a wheel: cvtasks/conf wins
    assert (
        find_config_dir(tmp_path / "empty" / "cvtasks") == tmp_path / "empty" / "cvtasks" / "conf"
    )


def test_checkout_reads_the_top_level_conf():
    assert CONFIG_DIR == ROOT / "conf"
    assert not (ROOT / "cvtasks" / "conf").exists(), "conf/ must have one copy, at the top level"


@pytest.mark.slow
@pytest.mark.parametrize("build", ["tree", "sdist"])
def test_wheel_holds_every_config(wheels, build):
    names = zipfile.ZipFile(wheels[build]).namelist()
    packaged = {n.removeprefix("cvtasks/conf/") for n in names if n.startswith("cvtasks/conf/")}
    assert packaged == repo_configs()
    assert "cvtasks/__main__.py" in names and "cvtasks/cli/train.py" in names


@pytest.mark.slow
def test_installed_wheel_trains_and_lists_from_another_folder(wheels, tmp_path):
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    run([*PIP, "install", "-q", "--no-deps", "--target", str(site), str(wheels["tree"])])
    # Only the install on the path: no checkout, no PYTHONPATH of the caller's. The editable
    # install's finder sits after the path finders, so it cannot shadow this copy.
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = "import cvtasks, cvtasks.config as c; print(cvtasks.__file__); print(c.CONFIG_DIR)"
    module, conf = run([sys.executable, "-c", where], cwd=elsewhere, env=env).stdout.split()
    assert Path(module).is_relative_to(site) and Path(conf) == site / "cvtasks" / "conf"

    cvtasks = str(site / "bin" / "cvtasks")
    run_dir = elsewhere / "run"
    run([cvtasks, "train", *TINY, f"hydra.run.dir={run_dir}"], cwd=elsewhere, env=env)
    assert 0.0 <= json.loads((run_dir / "metrics.json").read_text())["test/acc"] <= 1.0
    # Hydra's record of where it read the configs: the wheel's folder, as the main source
    hydra = (run_dir / ".hydra" / "hydra.yaml").read_text()
    assert f"path: {site / 'cvtasks' / 'conf'}\n      schema: file\n      provider: main" in hydra
    assert f"path: {ROOT / 'conf'}\n" not in hydra

    listed = run([cvtasks, "list", "backbones"], cwd=elsewhere, env=env).stdout
    assert "lenet5" in listed and "resnet50" in listed and "25,557,032" in listed
