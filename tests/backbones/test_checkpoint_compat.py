"""Checkpoints written by the previous release load into today's backbones, with the same logits.

Each fixture in ``tests/fixtures/checkpoints/`` was written by the released code: the layout of a
checkpoint (every state-dict key with its shape and dtype), how it was built (a classification
task's hyper-parameters, or a backbone's registry name and keywords) and the logits that code
computed on :func:`probe_input` with the weights :func:`fill_weights` draws for that layout. The
weights themselves are not stored (a ResNet-18 would be 22 MB even in fp16): they are redrawn from
the key list, so the test proves both that every key and shape still fits (a strict load) and that
the network computes what it computed then.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from cvtasks.registry import BACKBONES
from cvtasks.tasks.classification import ClassificationTask

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"
CASES = sorted(p.stem for p in FIXTURES.glob("*.json"))


def fill_weights(layout: list[list[Any]], gain: float = 1.0) -> dict[str, torch.Tensor]:
    """Deterministic weights for a checkpoint layout ``[[key, shape, dtype], ...]``.

    Each tensor is drawn from a generator seeded with its index, scaled so that activations keep
    their size through a deep network (weights ``N(0, gain²/fan_in)``, norm scales and running
    variances in [0.5, 1.5], biases and running means small): the logits stay finite and depend on
    the input and on every tensor. ``gain`` makes up for what a family's activations lose per
    layer (SiLU and the squeeze-and-excitation gates shrink an EfficientNet's signal).
    """
    state: dict[str, torch.Tensor] = {}
    for i, (key, shape, dtype) in enumerate(layout):
        g = torch.Generator().manual_seed(i)
        if dtype == "torch.int64":
            state[key] = torch.tensor(10, dtype=torch.int64).expand(shape).clone()
        elif key.endswith("running_var") or (len(shape) == 1 and key.endswith("weight")):
            state[key] = torch.empty(shape).uniform_(0.5, 1.5, generator=g)
        elif len(shape) <= 1:
            state[key] = torch.empty(shape).uniform_(-0.2, 0.2, generator=g)
        else:
            fan_in = math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=g) * gain / math.sqrt(fan_in)
    return state


def probe_input(in_chans: int) -> torch.Tensor:
    """The fixed batch the fixtures' logits were computed on: ``[2, in_chans, 64, 64]``."""
    return torch.randn(2, in_chans, 64, 64, generator=torch.Generator().manual_seed(0))


def build(fixture: dict[str, Any]) -> nn.Module:
    """The model a fixture describes, built by today's code, in eval mode."""
    if fixture["kind"] == "task":
        return ClassificationTask(**fixture["hyper_parameters"]).eval()
    return BACKBONES.build(fixture["name"], **fixture["kwargs"]).eval()


def layout_of(model: nn.Module) -> list[list[Any]]:
    """``[[key, shape, dtype], ...]`` of ``model``'s state dict, in its order."""
    return [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]


@pytest.mark.parametrize("case", CASES)
def test_previous_checkpoint_loads_strictly_with_the_same_logits(case):
    fixture = json.loads((FIXTURES / f"{case}.json").read_text())
    model = build(fixture)
    assert layout_of(model) == fixture["layout"]  # same keys, order, shapes and dtypes
    model.load_state_dict(fill_weights(fixture["layout"], fixture["gain"]), strict=True)
    with torch.no_grad():
        logits = model(probe_input(fixture["in_chans"]))
    expected = torch.tensor(fixture["logits"])
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)


def test_fixtures_cover_the_residual_and_mbconv_blocks():
    # the blocks whose classes changed: a ResNet and an EfficientNet, as a task and standalone
    assert {"resnet18_task", "efficientnet_b0_task", "resnet18_backbone"} <= set(CASES)
    assert "efficientnet_b0_backbone" in CASES


def test_a_changed_layout_fails_the_strict_load():
    # the oracle can fail: a checkpoint missing one tensor is refused by the strict load
    fixture = json.loads((FIXTURES / "resnet18_backbone.json").read_text())
    model = build(fixture)
    state = fill_weights(fixture["layout"])
    state.pop(next(iter(state)))
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_state_dict(state, strict=True)
