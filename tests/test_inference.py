"""The inference path: BatchNorm folded, results unchanged, the training module untouched."""

from __future__ import annotations

import pytest
import torch

from cvtasks.inference import Predictor, count_batchnorms, resolve_device
from cvtasks.registry import TASKS
from tests.cli.conftest import randomize_batchnorm


@pytest.fixture(scope="module")
def task():
    torch.manual_seed(0)
    module = TASKS.build("classification", backbone={"name": "resnet18"}, num_classes=4)
    randomize_batchnorm(module)
    return module.eval()


def test_predictions_match_the_training_module(task):
    predictor = Predictor(task, device="cpu")
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = task.predict_outputs(task(images), {"image": images})
    found = predictor.predict({"image": images})
    for a, b in zip(found, expected):
        assert a["label"] == b["label"]
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-5)
    logits = predictor.forward(images)
    assert torch.allclose(logits, task(images).detach(), atol=1e-4)
    assert logits.is_inference() and not logits.requires_grad


def test_batchnorm_is_folded_in_a_copy(task):
    before = count_batchnorms(task.net)
    task.train()
    predictor = Predictor(task, device="cpu")
    assert before == 20 and count_batchnorms(task.net) == before and task.training
    assert count_batchnorms(predictor.task.net) == 0 and not predictor.task.training
    assert not any(p.requires_grad for p in predictor.task.parameters())
    task.eval()


def test_channels_last_predictions_equal_contiguous_ones(task):
    images = torch.randn(2, 3, 32, 32)
    assert Predictor(task, device="cpu").task.channels_last is False  # auto: GPUs only
    nhwc = Predictor(task, device="cpu", channels_last=True)
    conv = next(m for m in nhwc.task.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        nhwc.forward(images), Predictor(task, device="cpu").forward(images), atol=1e-4, rtol=1e-4
    )
    with pytest.raises(ValueError, match="channels_last='yes' is not allowed"):
        Predictor(task, device="cpu", channels_last="yes")


def test_precision_and_device_choices(task):
    with pytest.raises(ValueError, match="precision must be one of"):
        Predictor(task, precision="fp8")
    assert Predictor(task, device="cpu").dtype is None
    assert Predictor(task, device="cpu", precision="bf16").dtype is torch.bfloat16
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_bf16_and_compile_agree_with_float32(task):
    images = torch.randn(8, 3, 32, 32)
    reference = Predictor(task, device="cuda", precision="32").forward(images).float()
    fast = Predictor(task, device="cuda", compile=True)
    assert fast.dtype is torch.bfloat16
    for _ in range(3):  # reduce-overhead records CUDA graphs over the first calls
        found = fast.forward(images).float()
    assert (found - reference).abs().max() < 0.1 * reference.abs().max()
    assert (found.argmax(1) == reference.argmax(1)).float().mean() >= 0.75
