"""Single-object localization heads: class scores over ``C`` classes plus *nothing*, and one box.

Seed 001 §6.6 ("Object Localization") encodes the output as
``(p_nothing, p_1, ..., p_C, y_x, y_y, y_h, y_w)``. Both heads here return

    {"logits": float[B, C + 1], "box": float[B, 4]}

with logit 0 for *nothing* and the box as ``(cx, cy, w, h)`` normalized to the image.

* ``localization_fc`` is the seed's "regression head ... of fully connected layers" on the
  final convolutional layer: pool the last map to a small grid, flatten, hidden
  layers, then the scores and a sigmoid box.
* ``localization`` (the default) keeps the map spatial. Every cell of the map proposes a box
  relative to its own position, ``(cell centre + offset, w, h)``, and an attention score; the
  box is the softmax-attention-weighted mean of the proposals (a soft arg-max), and the class
  scores read the globally pooled and the attention-pooled features. Position then comes from
  where the evidence is, not from channels that have to encode it after pooling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from cvtasks.heads.classification import pooled_mlp
from cvtasks.layers import ConvNormAct, check_head_args
from cvtasks.registry import HEADS

#: how messages name ``num_classes`` here
OBJECT_CLASSES = "num_classes (object classes, without nothing)"


def _stage(feature_info: Sequence[Mapping[str, Any]], feature_index: int) -> int:
    """Channels of the stage the head reads; a bad index names the stages there are."""
    try:
        return int(feature_info[feature_index]["num_chs"])
    except IndexError:
        raise ValueError(
            f"task.head.feature_index={feature_index} but the backbone has "
            f"{len(feature_info)} stages (use -1 for the deepest)"
        ) from None


@HEADS.register("localization")
class AttentionBoxHead(nn.Module):
    """Per-cell box proposals averaged by a spatial softmax, plus class scores.

    Args:
        feature_info: the backbone's stages.
        num_classes: object classes ``C``; the head scores ``C + 1`` (index 0 is *nothing*).
        channels: width of the 3x3 conv-BN-ReLU block before the outputs; 0 uses the map as is.
        dropout: dropout before the class scores.
        feature_index: which stage to read (-1: the deepest).
        max_offset: how far, in cells, a proposal's centre may lie from its cell's centre.
    """

    def __init__(
        self,
        feature_info: Sequence[Mapping[str, Any]],
        num_classes: int,
        channels: int = 128,
        dropout: float = 0.0,
        feature_index: int = -1,
        max_offset: float = 2.0,
    ) -> None:
        super().__init__()
        check_head_args(num_classes, dropout, OBJECT_CLASSES)
        if max_offset <= 0:
            raise ValueError(f"task.head.max_offset must be > 0, got {max_offset}")
        width = _stage(feature_info, feature_index)
        self.neck: nn.Module = nn.Identity()
        if channels:
            self.neck = ConvNormAct(width, int(channels), 3)
            width = int(channels)
        # Channel 0: attention score; 1-2: centre offset (tanh, in cells); 3-4: width, height.
        self.proposals = nn.Conv2d(width, 5, kernel_size=1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width, num_classes + 1))
        self.feature_index = feature_index
        self.max_offset = float(max_offset)
        self.num_classes = num_classes

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"logits": [B, C + 1], "box": [B, 4]}`` from ``features[feature_index]``."""
        x = self.neck(features[self.feature_index])
        batch, _, height, width = x.shape
        raw = self.proposals(x).flatten(2).float()  # [B, 5, H*W]
        attention = raw[:, 0].softmax(dim=-1)  # [B, H*W]
        ys = (torch.arange(height, device=x.device, dtype=raw.dtype) + 0.5) / height
        xs = (torch.arange(width, device=x.device, dtype=raw.dtype) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        offset = torch.tanh(raw[:, 1:3]) * self.max_offset
        cx = grid_x.reshape(1, -1) + offset[:, 0] / width
        cy = grid_y.reshape(1, -1) + offset[:, 1] / height
        size = torch.sigmoid(raw[:, 3:5])
        proposals = torch.stack([cx, cy, size[:, 0], size[:, 1]], dim=1)  # [B, 4, H*W]
        box = (proposals * attention.unsqueeze(1)).sum(dim=-1)
        flat = x.flatten(2)
        pooled = torch.cat(
            [flat.mean(dim=-1), (flat * attention.unsqueeze(1).to(flat.dtype)).sum(dim=-1)], dim=1
        )
        return {"logits": self.classifier(pooled), "box": box.reshape(batch, 4)}


@HEADS.register("localization_fc")
class FCBoxHead(nn.Module):
    """Seed 001's fully connected regression head: pooled grid → hidden layers → scores + box.

    Args:
        feature_info: the backbone's stages.
        num_classes: object classes ``C``; the head scores ``C + 1`` (index 0 is *nothing*).
        pool_size: the last map is average-pooled to ``pool_size x pool_size`` and flattened, so
            that position survives (1 keeps only global features).
        hidden_dims: widths of the hidden fully connected layers.
        dropout: dropout before each linear layer.
        act_layer: activation between layers.
        feature_index: which stage to read (-1: the deepest).
    """

    def __init__(
        self,
        feature_info: Sequence[Mapping[str, Any]],
        num_classes: int,
        pool_size: int = 4,
        hidden_dims: Sequence[int] = (256,),
        dropout: float = 0.0,
        act_layer: str = "relu",
        feature_index: int = -1,
    ) -> None:
        super().__init__()
        check_head_args(num_classes, dropout, OBJECT_CLASSES)
        if pool_size < 1:
            raise ValueError(f"task.head.pool_size must be >= 1, got {pool_size}")
        in_chs = _stage(feature_info, feature_index)
        self.layers = pooled_mlp(
            in_chs, num_classes + 1 + 4, hidden_dims, dropout, act_layer, pool_size
        )
        self.feature_index = feature_index
        self.num_classes = num_classes

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"logits": [B, C + 1], "box": [B, 4]}``; the box goes through a sigmoid."""
        out = self.layers(features[self.feature_index])
        return {"logits": out[:, :-4], "box": torch.sigmoid(out[:, -4:].float())}
