"""Classifier heads a backbone composes, and the one argument check of every head.

* :class:`LinearHead`: global average pool → dropout → linear, the classifier of ResNet,
  GoogLeNet, EfficientNet (behind its 1x1 ``conv_head``), timm backbones and most plugins.
* :class:`FCHead`: torchvision's AlexNet/VGG classifier, three fully connected layers on the last
  stage pooled to a fixed grid.
* :func:`check_head_args`: the check of an output count and a dropout probability, shared by
  these and by the task heads of :mod:`cvtasks.heads`.

A head holds its parameters under the names torchvision and timm use (``fc.weight`` where a
backbone names its :class:`LinearHead` ``fc``; ``head.fc1.weight`` ... for :class:`FCHead`), so
their checkpoints load key for key.
"""

from __future__ import annotations

import numbers
from collections import OrderedDict

import torch
from torch import nn


def check_head_args(
    count: int,
    dropout: float = 0.0,
    what: str = "num_classes",
    dropout_name: str = "task.head.dropout",
    minimum: int = 1,
) -> None:
    """Reject an output count below ``minimum`` or a dropout outside [0, 1), naming the key.

    Args:
        count: the outputs the head predicts (classes, keypoints).
        dropout: the head's dropout probability.
        what: how the message names ``count``.
        dropout_name: how the message names ``dropout`` (``"drop_rate"`` for a backbone).
        minimum: the smallest count allowed; a backbone allows 0, meaning no classifier.

    Raises:
        ValueError: one line naming the key, the bound and the value given.
    """
    if not isinstance(count, numbers.Integral) or isinstance(count, bool) or count < minimum:
        hint = " (0: no classifier)" if minimum == 0 else ""
        raise ValueError(f"{what} must be an int >= {minimum}{hint}, got {count!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{dropout_name} must be in [0, 1), got {dropout!r}")


def pool_flat(x: torch.Tensor) -> torch.Tensor:
    """Global average pool: ``[B, C, H, W] -> [B, C]``."""
    return nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)


class LinearHead(nn.Linear):
    """Global average pool → dropout → linear: logits from the last stage's map.

    A ``nn.Linear`` that pools its input first, so its parameters are the linear layer's own:
    registered as a backbone's ``fc``, its keys are ``fc.weight`` and ``fc.bias``, as in
    torchvision's and timm's ResNet. Its weights start as ``nn.Linear``'s.

    Args:
        in_chs: channels of the map it classifies.
        num_classes: logits (>= 1; a backbone without classes builds no head).
        drop_rate: dropout probability before the linear layer.

    Raises:
        ValueError: ``num_classes`` below 1 or ``drop_rate`` outside [0, 1).
    """

    def __init__(self, in_chs: int, num_classes: int, drop_rate: float = 0.0) -> None:
        check_head_args(num_classes, drop_rate, dropout_name="drop_rate")
        super().__init__(in_chs, num_classes)
        self.drop = nn.Dropout(drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_chs, H, W] -> [B, num_classes]``."""
        return super().forward(self.drop(pool_flat(x)))


class FCHead(nn.Sequential):
    """torchvision's AlexNet/VGG classifier: pool to a grid, flatten, three fully connected layers.

    ``pool`` averages the map to ``pool_size`` x ``pool_size`` (the size the defined input gives
    there: smaller maps are repeated, larger ones averaged), then ``fc1``, ReLU, ``fc2``, ReLU,
    ``fc``, with a dropout in front of ``fc1`` and ``fc2`` (AlexNet) or behind each ReLU (VGG).

    Args:
        in_chs: channels of the last stage.
        num_classes: outputs of ``fc`` (>= 1).
        drop_rate: dropout probability of ``drop1`` and ``drop2``.
        pool_size: side of the pooled grid that ``fc1`` reads.
        hidden: width of ``fc1`` and ``fc2``.
        dropout_first: dropout in front of ``fc1`` and ``fc2`` (AlexNet) rather than behind
            their ReLUs (VGG).

    Raises:
        ValueError: ``num_classes`` below 1 or ``drop_rate`` outside [0, 1).
    """

    def __init__(
        self,
        in_chs: int,
        num_classes: int,
        drop_rate: float,
        pool_size: int,
        hidden: int,
        dropout_first: bool,
    ) -> None:
        check_head_args(num_classes, drop_rate, dropout_name="drop_rate")
        layers: list[tuple[str, nn.Module]] = [
            ("pool", nn.AdaptiveAvgPool2d(pool_size)),
            ("flatten", nn.Flatten(1)),
        ]
        width = in_chs * pool_size**2
        for i in (1, 2):
            dense = [(f"fc{i}", nn.Linear(width, hidden)), (f"act{i}", nn.ReLU())]
            drop = (f"drop{i}", nn.Dropout(drop_rate))
            layers += [drop, *dense] if dropout_first else [*dense, drop]
            width = hidden
        layers.append(("fc", nn.Linear(hidden, num_classes)))
        super().__init__(OrderedDict(layers))
