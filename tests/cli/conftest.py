"""Tiny task checkpoints written in-process, in train.py's format, for the after-training tools."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from cvtasks.cli.common import CONFIG_KEY
from cvtasks.registry import TASKS

NARROW_RESNET = {"name": "timm/resnet10t", "stem_width": 16, "channels": [16, 32, 64, 128]}
#: task name -> (constructor arguments, data config): small networks with BatchNorm.
TINY_TASKS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "classification": (
        {"backbone": NARROW_RESNET, "num_classes": 3, "class_names": ["cat", "dog", "eel"]},
        {"name": "digits", "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3},
    ),
    "segmentation": (
        {"backbone": NARROW_RESNET, "num_classes": 4, "head": {"name": "unet"}},
        {"name": "shapes", "image_size": 64, "mean": [0.5] * 3, "std": [0.25] * 3},
    ),
    "landmarks": (
        {
            "backbone": {**NARROW_RESNET, "name": "timm/resnet18", "out_indices": [1, 2, 3]},
            "num_keypoints": 5,
            "keypoint_names": ["left_eye", "right_eye", "nose", "mouth_l", "mouth_r"],
            "head": {"name": "keypoint_heatmap"},
        },
        {"name": "synthetic_faces", "image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3},
    ),
    "siamese": (
        {"backbone": NARROW_RESNET, "head": {"name": "embedding", "embedding_dim": 16}},
        {"name": "synthetic_identities", "image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3},
    ),
    "localization": (
        {"backbone": NARROW_RESNET, "num_classes": 3, "class_names": ["cat", "dog", "eel"]},
        {"name": "digits_localization", "image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3},
    ),
    "multilabel": (
        {"backbone": NARROW_RESNET, "num_classes": 4, "class_names": ["a", "b", "c", "d"]},
        {"name": "digits_multilabel", "image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3},
    ),
}


def randomize_batchnorm(module: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine weights (as after training)."""
    generator = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
            bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def spread_detection_scores(task: nn.Module) -> None:
    """Random weights for the last heatmap layer of an untrained detection head, which scores
    every cell 0.01, so that its detections spread over the scores."""
    with torch.no_grad():
        last = task.head.heatmap[-1]
        generator = torch.Generator().manual_seed(0)
        last.weight.copy_(torch.randn(last.weight.shape, generator=generator))
        last.bias.fill_(-1.0)


def save_checkpoint(task: nn.Module, name: str, data: dict[str, Any], path: Path) -> Path:
    """Write ``task`` as train.py would: state dict, hyper-parameters and the run config."""
    config = {"task": {"name": name}, "data": data, "backbone": dict(task.hparams["backbone"])}
    checkpoint = {
        "state_dict": task.state_dict(),
        "hyper_parameters": dict(task.hparams),
        CONFIG_KEY: config,
    }
    torch.save(checkpoint, path)
    return path


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Callable[[str], Path]:
    """``make(task_name) -> path`` of a checkpoint of a tiny, BN-randomized model of that task."""

    def make(name: str) -> Path:
        kwargs, data = TINY_TASKS[name]
        torch.manual_seed(0)
        task = TASKS.build(name, **kwargs)
        randomize_batchnorm(task)
        return save_checkpoint(task.eval(), name, data, tmp_path / f"{name}.ckpt")

    return make
