"""Classification heads: pooled deepest features → (MLP →) class logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvtasks.layers import check_head_args, make_activation
from cvtasks.registry import HEADS


def pooled_mlp(
    in_chs: int,
    out_features: int,
    hidden_dims: Sequence[int] = (),
    dropout: float = 0.0,
    act_layer: str | type[nn.Module] = "relu",
    pool_size: int = 1,
) -> nn.Sequential:
    """Average-pool a feature map to ``pool_size`` x ``pool_size``, flatten, then an MLP.

    Each layer is dropout → linear, with ``act_layer`` after every hidden one; the last linear
    layer gives ``out_features``. Shared by the classification, box and keypoint heads.
    """
    width = in_chs * pool_size * pool_size
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(pool_size), nn.Flatten(1)]
    for hidden in hidden_dims:
        layers += [nn.Dropout(dropout), nn.Linear(width, int(hidden)), make_activation(act_layer)]
        width = int(hidden)
    layers += [nn.Dropout(dropout), nn.Linear(width, out_features)]
    return nn.Sequential(*layers)


class ClassifierHead(nn.Module):
    """Global average pooling of the last feature map, optional hidden layers, then logits.

    Args:
        feature_info: the backbone's stage descriptions; the last one gives the input width.
        num_classes: number of output logits.
        hidden_dims: widths of hidden layers (empty: a single linear layer).
        dropout: dropout probability before each linear layer.
        act_layer: activation between hidden layers.
    """

    def __init__(
        self,
        feature_info: Sequence[dict],
        num_classes: int,
        hidden_dims: Sequence[int] = (),
        dropout: float = 0.0,
        act_layer: str | type[nn.Module] = "relu",
    ) -> None:
        super().__init__()
        check_head_args(num_classes, dropout)
        in_chs = int(feature_info[-1]["num_chs"])
        self.layers = pooled_mlp(in_chs, num_classes, hidden_dims, dropout, act_layer)
        self.num_classes = num_classes

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Logits ``[B, num_classes]`` from the deepest feature map ``features[-1]``."""
        return self.layers(features[-1])


@HEADS.register("linear")
def linear_head(
    feature_info: Sequence[dict], num_classes: int, dropout: float = 0.0
) -> ClassifierHead:
    """Pooled features → dropout → one linear layer."""
    return ClassifierHead(feature_info, num_classes, hidden_dims=(), dropout=dropout)


@HEADS.register("mlp")
def mlp_head(
    feature_info: Sequence[dict],
    num_classes: int,
    hidden_dims: Sequence[int] = (256,),
    dropout: float = 0.0,
    act_layer: str = "relu",
) -> ClassifierHead:
    """Pooled features → hidden layers (``hidden_dims``) with ``act_layer`` → logits."""
    return ClassifierHead(feature_info, num_classes, hidden_dims, dropout, act_layer)
