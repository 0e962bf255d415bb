"""TinyNet from Hydra config values, as a pooled feature extractor, and under every task head.

Run from the repository root: ``python -m pytest plugins/cvtasks-tinynet/tests``. The contract,
the shipped config and weight loading are tested in ``tests/backbones/test_tinynet_plugin.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cvtasks.registry import TASKS

PLUGIN = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PLUGIN))  # the source tree, whether or not the package is installed
from cvtasks_tinynet import TinyNet  # noqa: E402 - registers "tinynet"


def test_widths_from_a_hydra_list_config_become_plain_ints():
    cfg = OmegaConf.create(
        {"_target_": "cvtasks_tinynet.TinyNet", "widths": [8, 12], "in_chans": 1}
    )
    net = instantiate(cfg)
    assert [info["num_chs"] for info in net.feature_info] == [8, 12]
    assert all(type(info["num_chs"]) is int for info in net.feature_info)
    assert net.stages[0][0].in_channels == 1 and net.num_features == 12
    with pytest.raises(ValueError, match=r"widths must be one or more positive ints, got \[8, 0\]"):
        TinyNet(widths=[8, 0])


def test_without_classes_forward_pools_the_last_stage():
    torch.manual_seed(0)
    net = TinyNet(num_classes=0, drop_rate=0.5).eval()
    x = torch.randn(3, 3, 40, 24)
    pooled = net(x)
    assert pooled.shape == (3, 64)
    torch.testing.assert_close(pooled, net.forward_features(x)[-1].mean(dim=(2, 3)))


TASK_ARGS = {
    "classification": {"num_classes": 3},
    "localization": {"num_classes": 2},
    "landmarks": {"num_keypoints": 4},
    "segmentation": {"num_classes": 3, "head": {"name": "unet"}},
    "siamese": {"head": {"name": "embedding", "embedding_dim": 16}},
}


@pytest.mark.parametrize("task", list(TASK_ARGS))
def test_every_task_head_builds_on_tinynet_features_and_backpropagates(task):
    """The heads read the plugin's feature_info (channels and reductions), nothing else."""
    torch.manual_seed(0)
    module = TASKS.build(
        task, backbone={"name": "tinynet", "widths": [8, 16, 32]}, **TASK_ARGS[task]
    )
    assert isinstance(module.backbone, TinyNet)
    x = torch.randn(4, 3, 32, 32)
    outputs = module(x)
    if task == "segmentation":
        assert outputs.shape == (4, 3, 32, 32)  # per-pixel logits at the input size
    elif task == "siamese":
        assert outputs.shape == (4, 16)
    loss = sum(
        v.float().sum() for v in (outputs.values() if isinstance(outputs, dict) else [outputs])
    )
    loss.backward()
    grads = [p.grad for p in module.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
