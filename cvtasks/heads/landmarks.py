"""Landmark heads: ``K`` points per image, by direct regression or from heatmaps.

Seed 001 §6.6 (Fig 6.16 (c)): for landmark detection "a list of
coordinates of the locations of landmarks comprises the output", handled "in a similar spirit"
to localization, i.e. a regression head on the final convolutional layer ("Object
Localization"). Two heads give those coordinates:

* ``keypoint_regression``: pooled deepest features → fully connected layers → ``K x 2``
  coordinates and ``K`` visibility logits (the per-point confidence);
* ``keypoint_heatmap``: a top-down upsampling head (FPN-like: each stage from the deepest up adds
  a 1x1 lateral of the backbone stage at its scale) → ``K`` heatmaps at ``stride`` of the input,
  decoded by :func:`soft_argmax` into sub-pixel coordinates; the peak value is the confidence.

Both return a dict of raw outputs and offer ``decode(outputs) -> (points, confidence)`` with
points normalized to [0, 1] (``x`` by width, ``y`` by height) and confidence in [0, 1], so a task
needs to know nothing else about them. Channel counts come from ``feature_info``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvtasks.heads.classification import pooled_mlp
from cvtasks.layers import ConvNormAct, check_head_args
from cvtasks.registry import HEADS


def soft_argmax(heatmaps: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Expected position under ``softmax(beta * heatmap)``: a differentiable, sub-pixel argmax.

    Cell ``(i, j)`` stands for the point ``((j + 0.5) / w, (i + 0.5) / h)``, the convention of
    :func:`cvtasks.losses.landmarks.gaussian_heatmaps`, so a rendered Gaussian decodes back to
    its centre. ``beta`` sharpens the distribution so that the flat background of a heatmap
    trained towards 0 does not pull the expectation to the middle of the map.

    Args:
        heatmaps: ``float[B, K, h, w]``.
        beta: inverse temperature of the softmax.

    Returns:
        ``float[B, K, 2]``: normalized ``(x, y)``.
    """
    batch, points, height, width = heatmaps.shape
    weights = torch.softmax(heatmaps.float().flatten(2) * beta, dim=-1)
    weights = weights.view(batch, points, height, width)
    xs = (torch.arange(width, device=heatmaps.device, dtype=torch.float32) + 0.5) / width
    ys = (torch.arange(height, device=heatmaps.device, dtype=torch.float32) + 0.5) / height
    x = (weights.sum(dim=2) * xs).sum(dim=-1)
    y = (weights.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1)


@HEADS.register("keypoint_regression")
class KeypointRegressionHead(nn.Module):
    """Pooled deepest features → hidden layers → ``K`` points and ``K`` visibility logits.

    Args:
        feature_info: the backbone's stages; the last one is read.
        num_keypoints: ``K``.
        hidden_dims: widths of the hidden layers.
        dropout: dropout before each linear layer.
        act_layer: activation between layers.
        pool_size: the deepest map is average-pooled to ``pool_size x pool_size`` and flattened;
            more than 1 keeps some of the spatial layout that global pooling loses.
    """

    def __init__(
        self,
        feature_info: Sequence[Mapping[str, Any]],
        num_keypoints: int,
        hidden_dims: Sequence[int] = (256,),
        dropout: float = 0.0,
        act_layer: str | type[nn.Module] = "relu",
        pool_size: int = 1,
    ) -> None:
        super().__init__()
        check_head_args(num_keypoints, dropout, "num_keypoints")
        if pool_size < 1:
            raise ValueError(f"task.head.pool_size must be >= 1, got {pool_size}")
        in_chs = int(feature_info[-1]["num_chs"])
        self.layers = pooled_mlp(
            in_chs, num_keypoints * 3, hidden_dims, dropout, act_layer, pool_size
        )
        self.num_keypoints = num_keypoints

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"keypoints": float[B, K, 2] normalized, "visibility": float[B, K] logits}``.

        Coordinates are the linear outputs plus 0.5, so an untrained head points at the image
        centre and points outside the image stay representable (no squashing).
        """
        out = self.layers(features[-1]).view(-1, self.num_keypoints, 3)
        return {"keypoints": out[..., :2] + 0.5, "visibility": out[..., 2]}

    def decode(self, outputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Points ``[B, K, 2]`` (normalized) and confidence ``[B, K]`` (sigmoid of the logits)."""
        return outputs["keypoints"].float(), outputs["visibility"].float().sigmoid()


@HEADS.register("keypoint_heatmap")
class KeypointHeatmapHead(nn.Module):
    """Top-down upsampling head: ``K`` heatmaps at ``stride`` of the input, soft-argmax decoded.

    From the deepest stage up to the shallowest stage whose reduction is at least ``stride``,
    each step upsamples (bilinear, to that stage's size), adds a 1x1 lateral of the stage, and
    mixes with a 3x3 conv-norm-act. If that stage is still coarser than ``stride``, x2 steps
    without laterals follow. A 1x1 conv then gives one heatmap per point.

    Args:
        feature_info: the backbone's stages.
        num_keypoints: ``K``.
        stride: input pixels per heatmap cell; the finest stage used must be a power-of-two
            multiple of it.
        channels: width of the head.
        beta: soft-argmax inverse temperature. Heatmaps are trained towards Gaussian peaks of 1;
            for the default ``sigma`` of 2 cells, 15 decodes one to within 0.05 cell (tested).
        act_layer: activation of the conv blocks.
    """

    def __init__(
        self,
        feature_info: Sequence[Mapping[str, Any]],
        num_keypoints: int,
        stride: int = 4,
        channels: int = 64,
        beta: float = 15.0,
        act_layer: str | type[nn.Module] = "relu",
    ) -> None:
        super().__init__()
        check_head_args(num_keypoints, what="num_keypoints")
        if stride < 1:
            raise ValueError(f"task.head.stride must be >= 1, got {stride}")
        reductions = [int(info["reduction"]) for info in feature_info]
        used = [i for i, r in enumerate(reductions) if r >= stride]
        if not used:
            raise ValueError(
                f"task.head.stride={stride} is coarser than every backbone stage "
                f"(reductions {reductions}); use a stride <= {reductions[-1]}"
            )
        finest = reductions[used[0]]
        steps = finest // stride
        if finest % stride or steps & (steps - 1):
            raise ValueError(
                f"task.head.stride={stride} must divide the finest stage used ({finest}) by a "
                f"power of two; e.g. task.head.stride={finest}"
            )
        if beta <= 0:
            raise ValueError(f"task.head.beta must be > 0, got {beta}")
        self.used = used
        self.laterals = nn.ModuleList(
            ConvNormAct(int(feature_info[i]["num_chs"]), channels, 1, act_layer=None) for i in used
        )
        self.merges = nn.ModuleList(
            ConvNormAct(channels, channels, 3, act_layer=act_layer) for _ in used
        )
        self.upsamples = nn.ModuleList(
            ConvNormAct(channels, channels, 3, act_layer=act_layer)
            for _ in range(steps.bit_length() - 1)
        )
        self.out = nn.Conv2d(channels, num_keypoints, 1)
        self.num_keypoints = num_keypoints
        self.stride = stride
        self.beta = float(beta)

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"heatmaps": float[B, K, h, w]}``, ``h, w`` about the input size over ``stride``."""
        x: torch.Tensor | None = None
        for index, lateral, merge in zip(
            reversed(self.used), reversed(self.laterals), reversed(self.merges)
        ):
            skip = lateral(features[index])
            if x is not None:
                skip = skip + F.interpolate(
                    x, size=skip.shape[-2:], mode="bilinear", align_corners=False
                )
            x = merge(skip)
        for block in self.upsamples:
            x = block(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        return {"heatmaps": self.out(x)}

    def decode(self, outputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft-argmax points ``[B, K, 2]`` (normalized) and peak values in [0, 1] ``[B, K]``."""
        heatmaps = outputs["heatmaps"].float()
        confidence = heatmaps.flatten(2).amax(dim=-1).clamp(0.0, 1.0)
        return soft_argmax(heatmaps, self.beta), confidence
