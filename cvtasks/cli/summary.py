"""Backbone inspection: parameters, FLOPs and feature stages, and a per-layer table.

Models are built on the ``meta`` device, so even VGG-19 or EfficientNet-B7 is inspected in a
fraction of a second without allocating weights. FLOPs come from ``torch.utils.flop_counter``
(one multiply-add counts as two FLOPs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cvtasks.registry import BACKBONES

#: classifier size used for parameter counts, as in ImageNet-trained references (torchvision).
NUM_CLASSES = 1000


@dataclass
class BackboneInfo:
    """What the listing prints for one backbone."""

    name: str
    params: int
    gflops: float
    input_size: int
    stages: list[dict]

    def line(self) -> str:
        """One aligned line: name, parameters, GFLOPs, input size and stages."""
        stages = " ".join(f"{s['num_chs']}@{s['reduction']}" for s in self.stages)
        return (
            f"{self.name:20s} {self.params:>13,d} {self.gflops:>9.4g} {self.input_size:>5d}  "
            f"{stages}"
        )


HEADER = f"{'name':20s} {'params':>13s} {'GFLOPs':>9s} {'input':>5s}  stages (channels@reduction)"


def _build_meta(name: str, num_classes: int = NUM_CLASSES) -> nn.Module:
    with torch.device("meta"):
        return BACKBONES.build(name, num_classes=num_classes).eval()


def input_size_of(model: nn.Module) -> int:
    """The backbone's default (training) resolution: ``default_input_size``, else 224."""
    return int(getattr(model, "default_input_size", 224))


def backbone_info(name: str, input_size: int | None = None) -> BackboneInfo:
    """Parameters (with a 1000-class classifier), GFLOPs of one image and the feature stages."""
    model = _build_meta(name)
    size = input_size or input_size_of(model)
    x = torch.empty(1, int(getattr(model, "in_chans", 3)), size, size, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return BackboneInfo(
        name=name,
        params=sum(p.numel() for p in model.parameters()),
        gflops=counter.get_total_flops() / 1e9,
        input_size=size,
        stages=[dict(s) for s in model.feature_info],
    )


def layer_table(name: str, input_size: int | None = None) -> list[str]:
    """A per-layer table (output shape, parameters) of a backbone, like the seed's VGG table.

    Every module without children is one row, in call order; the total closes the table.
    """
    model = _build_meta(name)
    size = input_size or input_size_of(model)
    rows: list[str] = [f"{'layer':40s} {'type':18s} {'output':>20s} {'params':>12s}"]
    hooks = []
    for module_name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue

        def hook(mod: nn.Module, _inp: object, out: object, label: str = module_name) -> None:
            shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else "-"
            params = sum(p.numel() for p in mod.parameters(recurse=False))
            shown = "x".join(map(str, shape)) if isinstance(shape, tuple) else shape
            rows.append(f"{label:40s} {type(mod).__name__:18s} {shown:>20s} {params:>12,d}")

        hooks.append(module.register_forward_hook(hook))
    x = torch.empty(1, int(getattr(model, "in_chans", 3)), size, size, device="meta")
    with torch.no_grad():
        model(x)
    for handle in hooks:
        handle.remove()
    total = sum(p.numel() for p in model.parameters())
    rows.append(f"{'total':40s} {'':18s} {'':>20s} {total:>12,d}")
    return rows
