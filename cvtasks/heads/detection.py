"""Object detection head: CenterNet heatmaps with TTFNet dense box regression.

Seed 001 §6.6 (Fig 6.16 (b)): detection outputs many boxes per image, each with its class. The
``centernet`` head (Zhou et al., "Objects as Points", 2019) predicts, at one output stride:

* ``heatmap``: one logit map per class; an object is a local peak at the cell of its centre;
* ``box``: at every cell the distances ``(left, top, right, bottom)`` in input pixels from the
  cell's centre to the box's edges, regressed at every cell near an object's centre (TTFNet,
  Liu et al. 2020), which trains in far fewer epochs than CenterNet's centre-only size.

The backbone's stages go through a neck (an FPN by default, from the ``NECKS`` registry) and
the head reads the neck's output at ``stride``. :func:`cvtasks.ops.centernet.decode` turns the
outputs into boxes, scores and labels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvtasks.layers import check_head_args, make_activation
from cvtasks.registry import HEADS, NECKS

#: The prior probability of an object at a cell that the heatmap starts from (RetinaNet's π).
PRIOR_PROBABILITY = 0.01


def _branch(in_chs: int, hidden: int, out_chs: int, act_layer: str | type[nn.Module]) -> nn.Module:
    """3x3 conv → activation → 1x1 conv, the output layer initialised small."""
    branch = nn.Sequential(
        nn.Conv2d(in_chs, hidden, 3, padding=1),
        make_activation(act_layer),
        nn.Conv2d(hidden, out_chs, 1),
    )
    nn.init.normal_(branch[-1].weight, std=0.01)
    nn.init.zeros_(branch[-1].bias)
    return branch


def _levels_at_or_above(feature_info: Sequence[Mapping[str, Any]], stride: int) -> list[int]:
    reductions = [int(info["reduction"]) for info in feature_info]
    used = [i for i, r in enumerate(reductions) if r >= stride]
    if not used:
        raise ValueError(
            f"task.head.stride={stride} is coarser than every backbone stage "
            f"(reductions {reductions}); use task.head.stride={reductions[-1]} or less"
        )
    finest = reductions[used[0]]
    if finest % stride:
        raise ValueError(
            f"task.head.stride={stride} must divide the reduction of the finest backbone stage "
            f"at or above it ({finest}); e.g. task.head.stride={finest}"
        )
    return used


@HEADS.register("centernet")
class CenterNetHead(nn.Module):
    """Class heatmaps and ltrb box distances at one stride, over a neck (CenterNet + TTFNet).

    Args:
        feature_info: the backbone's stages, shallow to deep.
        num_classes: heatmap channels ``C``.
        stride: input pixels per output cell. The neck reads the backbone stages whose
            reduction is at least ``stride``; when the finest of them is coarser, its neck
            output is upsampled (nearest) to ``stride``.
        neck: ``{"name": <NECKS name>, **its keywords}``; default ``{"name": "fpn",
            "channels": 64}``. ``feature_info``, ``levels`` and ``outputs`` (1) are set by the head.
        head_channels: width of the 3x3 convolution of each branch.
        box_scale: input pixels per unit of the box branch. Distances are
            ``softplus(x) · box_scale``: positive everywhere with a gradient everywhere (a ReLU
            leaves cells whose four outputs went negative with no gradient to recover), nearly
            linear for large ``x``; 16 is TTFNet's ``wh_offset_base``, so an untrained head
            predicts boxes of about 22 pixels.
        act_layer: activation of the branches.

    Attributes:
        stride: input pixels per output cell.
        num_classes: ``C``.
        neck: the neck module.
    """

    def __init__(
        self,
        feature_info: Sequence[Mapping[str, Any]],
        num_classes: int,
        stride: int = 4,
        neck: Mapping[str, Any] | None = None,
        head_channels: int = 64,
        box_scale: float = 16.0,
        act_layer: str | type[nn.Module] = "relu",
    ) -> None:
        super().__init__()
        check_head_args(num_classes)
        if int(stride) < 1:
            raise ValueError(f"task.head.stride must be >= 1, got {stride}")
        if box_scale <= 0:
            raise ValueError(f"task.head.box_scale must be > 0, got {box_scale}")
        self.stride = int(stride)
        self.num_classes = int(num_classes)
        self.box_scale = float(box_scale)
        levels = _levels_at_or_above(feature_info, self.stride)
        neck_kw = dict(neck) if neck is not None else {"name": "fpn", "channels": 64}
        if "name" not in neck_kw:
            raise ValueError(
                f"task.head.neck needs a 'name' (e.g. {{name: fpn, channels: 64}}), got {neck_kw}"
            )
        if "outputs" in neck_kw:
            raise ValueError(
                "task.head.neck.outputs is chosen by the head (it reads the finest map only); "
                "remove it"
            )
        if "levels" in neck_kw:
            raise ValueError(
                "task.head.neck.levels is chosen by the head (the stages at or above "
                "task.head.stride); remove it and set task.head.stride instead"
            )
        neck_name = str(neck_kw.pop("name"))
        # the head reads the finest map only: a neck returns just that one (``outputs=1``)
        self.neck = NECKS.build(
            neck_name, feature_info=list(feature_info), levels=levels, outputs=1, **neck_kw
        )
        finest = self.neck.feature_info[0]
        self.upsample = int(finest["reduction"]) // self.stride  # 1 when a level is at stride
        in_chs = int(finest["num_chs"])
        self.heatmap = _branch(in_chs, int(head_channels), self.num_classes, act_layer)
        self.box = _branch(in_chs, int(head_channels), 4, act_layer)
        # Focal-loss prior (RetinaNet, CenterNet): every cell starts at PRIOR_PROBABILITY, so the
        # many negatives do not swamp the first steps.
        nn.init.constant_(
            self.heatmap[-1].bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        )

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"heatmap": float[B, C, h, w] logits, "box": float[B, 4, h, w] ltrb pixels}``."""
        x = self.neck(features)[0]
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=float(self.upsample), mode="nearest")
        return {
            "heatmap": self.heatmap(x),
            "box": F.softplus(self.box(x)) * self.box_scale,
        }
