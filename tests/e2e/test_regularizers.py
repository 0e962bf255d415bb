"""Whole runs with the regularizers on: mixup/CutMix, a named augmentation strength and
stochastic depth go from the command line to a trained, saved model."""

import math

import pytest
import torch

from tests.conftest import TINY

pytestmark = pytest.mark.slow


def test_mixup_cutmix_and_a_named_strength_train_a_classifier(run_train):
    run = run_train(
        *TINY,
        "task.mixup.mixup_alpha=0.8",
        "task.mixup.cutmix_alpha=1.0",
        "data.augment=medium",
        "backbone=resnet10_tiny",
        "backbone.drop_path_rate=0.1",
    ).check()
    metrics = run.metrics
    assert math.isfinite(metrics["train/loss"]) and 0.0 <= metrics["test/acc"] <= 1.0
    config = (run.run_dir / ".hydra" / "config.yaml").read_text()
    assert "augment: medium" in config and "mixup_alpha: 0.8" in config
    ckpt = torch.load(
        run.run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu"
    )
    hparams = ckpt["hyper_parameters"]
    assert hparams["mixup"]["cutmix_alpha"] == 1.0
    assert hparams["backbone"]["drop_path_rate"] == 0.1
