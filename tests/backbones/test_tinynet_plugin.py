"""The example plugin package ``plugins/cvtasks-tinynet``, imported from the source tree."""

import sys
from pathlib import Path

import pytest
import torch
import yaml

from cvtasks.backbones import validate_backbone
from cvtasks.registry import BACKBONES

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "cvtasks-tinynet"
sys.path.insert(0, str(PLUGIN))
import cvtasks_tinynet  # noqa: E402 - registers "tinynet"


def test_registered_and_follows_the_contract():
    assert BACKBONES.origin("tinynet") == "cvtasks_tinynet"
    net = BACKBONES.build("tinynet", in_chans=3, num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    validate_backbone(net, x)
    shapes = [tuple(f.shape) for f in net.forward_features(x)]
    assert shapes == [(2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4)]
    assert [i["reduction"] for i in net.feature_info] == [2, 4, 8]
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_shipped_config_builds_the_backbone():
    cfg = yaml.safe_load((PLUGIN / "cvtasks_tinynet/conf/backbone/tinynet.yaml").read_text())
    assert cfg["name"] == "tinynet" and cfg["in_chans"] == 3 and cfg["pretrained"] is None
    net = BACKBONES.build(cfg.pop("name"), **cfg)
    assert net.num_features == cfg["widths"][-1]
    narrow = BACKBONES.build("tinynet", widths=[4, 8])
    assert [i["num_chs"] for i in narrow.feature_info] == [4, 8]
    with pytest.raises(ValueError, match="widths"):
        cvtasks_tinynet.TinyNet(widths=[])


def test_pretrained_round_trip(tmp_path):
    src = cvtasks_tinynet.TinyNet(num_classes=3)
    torch.save(src.state_dict(), tmp_path / "tiny.pth")
    dst = cvtasks_tinynet.tinynet(num_classes=3, pretrained=tmp_path / "tiny.pth")
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k


def test_pyproject_declares_entry_point_and_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((PLUGIN / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "cvtasks-tinynet"
    assert "cvtasks" in meta["project"]["dependencies"]
    assert meta["project"]["entry-points"]["cvtasks.plugins"] == {"tinynet": "cvtasks_tinynet"}
    assert meta["tool"]["setuptools"]["package-data"]["cvtasks_tinynet"] == ["conf/**/*.yaml"]
