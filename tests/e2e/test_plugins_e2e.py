"""Plugins from a .py path and from the installed example package both train."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, TINY

pytestmark = pytest.mark.slow

PLUGIN = textwrap.dedent(
    """
    from torch import nn
    from cvtasks.backbones.base import Backbone
    from cvtasks.registry import BACKBONES


    class FileNet(Backbone):
        def __init__(self, in_chans=3, num_classes=0, drop_rate=0.0):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(in_chans, 12, 3, stride=2, padding=1), nn.ReLU())
            self.feature_info = [dict(num_chs=12, reduction=2, module="body")]
            self.num_features = 12
            self.init_head(num_classes, drop_rate)

        def forward_features(self, x):
            return [self.body(x)]


    BACKBONES.register("file_net")(FileNet)
    """
)


def test_py_path_plugin_backbone_trains(run_train, tmp_path):
    path = tmp_path / "file_net.py"
    path.write_text(PLUGIN)
    run = run_train(
        *TINY, f"plugins=[{path}]", "backbone=custom", "backbone.name=file_net", own_process=True
    ).check()
    assert run.metrics["test/acc"] >= 0.0
    assert "file_net" in (run.run_dir / "config.yaml").read_text()


GENERATED = textwrap.dedent(
    """
    from torch import nn
    from cvtasks.backbones.base import Backbone
    from cvtasks.registry import BACKBONES


    class MyNet(Backbone):
        def __init__(self, width, in_chans, num_classes, drop_rate):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(in_chans, width, 3, stride=2, padding=1), nn.ReLU())
            self.feature_info = [dict(num_chs=width, reduction=2, module="body")]
            self.num_features = width
            self.init_head(num_classes, drop_rate)

        def forward_features(self, x):
            return [self.body(x)]


    @BACKBONES.register("my_net")
    def my_net(width=12, in_chans=3, num_classes=0, drop_rate=0.25, pretrained=None):
        assert pretrained is None
        return MyNet(width, in_chans, num_classes, drop_rate)
    """
)


def test_a_plugin_file_backbone_trains_by_its_name_with_no_yaml(run_train, tmp_path):
    (tmp_path / "my_net.py").write_text(GENERATED)
    run = run_train(
        *TINY, "plugins=[./my_net.py]", "backbone=my_net", "backbone.width=8", own_process=True
    ).check()
    assert run.metrics["test/acc"] >= 0.0
    backbone = yaml.safe_load((run.run_dir / "config.yaml").read_text())["backbone"]
    # the builder's defaults, the command line's width, no num_classes (the task's to set)
    assert backbone == {
        "name": "my_net",
        "in_chans": 3,
        "drop_rate": 0.25,
        "pretrained": None,
        "width": 8,
    }
    assert not (tmp_path / "backbone").exists() and not list(tmp_path.glob("*.yaml"))


def test_installed_plugin_package_ships_its_backbone_and_config(run_train, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT / "plugins" / "cvtasks-tinynet"),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    env = {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    run = run_train(*TINY, "backbone=tinynet", env=env).check()
    config = (run.run_dir / "config.yaml").read_text()
    assert "name: tinynet" in config and "widths" in config
    assert run.metrics["test/acc"] >= 0.0
    assert Path(target, "cvtasks_tinynet", "conf", "backbone", "tinynet.yaml").is_file()
