"""What several backbone families share beyond :class:`~cvtasks.backbones.base.Backbone`.

* :func:`run_stages`: the feature maps of a ``Sequential`` of stages, run one after the other.
* :class:`FCHeadBackbone`: torchvision's AlexNet and VGG classifier, three fully connected
  layers on the last stage pooled to a fixed grid.
* :class:`ConvHeadBackbone`: a stem, stages in ``blocks`` and a 1x1 ``conv_head`` that widens
  the last stage for the linear layer only (EfficientNet here, MobileNetV2 in the
  ``cvtasks-mobilenet`` plugin).
* :func:`init_torchvision_weights`: torchvision's initialisation of VGG, EfficientNet and
  MobileNetV2, so that training from scratch follows its recipes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Container, Iterable
from typing import Any

import torch
from torch import nn

from cvtasks.backbones.base import Backbone
from cvtasks.layers import ConvNormAct, GlobalPool


def run_stages(
    stages: Iterable[nn.Module], x: torch.Tensor, keep: Container[int] | None = None
) -> list[torch.Tensor]:
    """Run ``x`` through ``stages`` in order and collect their outputs.

    Args:
        stages: the stages, shallow to deep (an ``nn.Sequential`` or ``nn.ModuleList``).
        x: the input of the first stage.
        keep: indices of the stages whose outputs are features; ``None`` keeps every stage's.

    Returns:
        The kept outputs, shallow to deep.
    """
    features = []
    for i, stage in enumerate(stages):
        x = stage(x)
        if keep is None or i in keep:
            features.append(x)
    return features


class FCHeadBackbone(Backbone):
    """A backbone with torchvision's AlexNet/VGG classifier: three fully connected layers.

    A subclass builds its stages, sets ``num_features``, ``num_classes`` and ``variant``, and
    calls :meth:`init_fc_head`. The classifier ``head`` average-pools the last stage to a fixed
    grid (the size the defined input gives there: smaller maps are repeated, larger ones
    averaged), flattens it and applies ``fc1``, ReLU, ``fc2``, ReLU, ``fc``, with a dropout in
    front of ``fc1`` and ``fc2`` (AlexNet) or behind each ReLU (VGG). Without classes it is not
    built and :meth:`forward_head` returns the last stage averaged over positions.
    """

    classifier_modules = ("head",)
    variant: str = ""  # the registered name, set by the family's create function

    def init_fc_head(
        self,
        num_classes: int,
        drop_rate: float,
        pool_size: int,
        hidden: int,
        dropout_first: bool,
    ) -> None:
        """Build ``global_pool`` (the features path) and the classifier ``head``.

        Args:
            num_classes: outputs of ``fc``; 0 leaves ``head`` an ``nn.Identity``.
            drop_rate: dropout probability of ``drop1`` and ``drop2``.
            pool_size: side of the pooled grid that ``fc1`` reads.
            hidden: width of ``fc1`` and ``fc2``.
            dropout_first: dropout in front of ``fc1`` and ``fc2`` (AlexNet) rather than
                behind their ReLUs (VGG).
        """
        self.global_pool = GlobalPool("avg")  # the features path: pre_logits or no classes
        self.head: nn.Module = nn.Identity()
        if not num_classes:
            return
        layers: list[tuple[str, nn.Module]] = [
            ("pool", nn.AdaptiveAvgPool2d(pool_size)),
            ("flatten", nn.Flatten(1)),
        ]
        width = self.num_features * pool_size**2
        for i in (1, 2):
            dense = [(f"fc{i}", nn.Linear(width, hidden)), (f"act{i}", nn.ReLU())]
            drop = (f"drop{i}", nn.Dropout(drop_rate))
            layers += [drop, *dense] if dropout_first else [*dense, drop]
            width = hidden
        layers.append(("fc", nn.Linear(hidden, num_classes)))
        self.head = nn.Sequential(OrderedDict(layers))

    def extra_repr(self) -> str:
        return f"variant={self.variant}"

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classify the last stage's map ``[B, num_features, H, W]``.

        Args:
            x: the last stage's map.
            pre_logits: return the map averaged over positions, ``[B, num_features]``.

        Returns:
            Logits ``[B, num_classes]``, or ``[B, num_features]`` features when ``pre_logits``
            or ``num_classes == 0``.
        """
        if pre_logits or not self.num_classes:
            return self.global_pool(x)
        return self.head(x)


class ConvHeadBackbone(Backbone):
    """A ``stem``, stages in ``blocks``, and a 1x1 ``conv_head`` that belongs to the classifier.

    The ``conv_head`` widens the last stage per pixel (no new receptive field) for the linear
    layer, so it is not a stage: ``num_features`` is the last stage's width, ``pre_logits`` and a
    model without classes (which builds no ``conv_head``) give the pooled last stage, and a
    checkpoint's ``conv_head`` and ``fc`` are skipped when they do not fit.

    A subclass builds ``stem`` (a :class:`~cvtasks.layers.ConvNormAct`) and ``blocks`` (a
    ``Sequential`` of stages), names the stages that are features in ``feature_stages``, sets
    ``feature_info``, ``num_features`` and ``num_classes``, and calls :meth:`init_conv_head`.
    """

    stem: nn.Module
    blocks: nn.Sequential
    classifier_modules = ("conv_head", "fc")
    stem_weight = "stem.conv.weight"
    feature_stages: tuple[int, ...] = ()  # indices into blocks of the stages that are features

    def init_conv_head(
        self, head_chs: int, num_classes: int, drop_rate: float, **conv_kwargs: Any
    ) -> None:
        """Build the classifier: ``conv_head`` → global average pool → dropout → ``fc``.

        Args:
            head_chs: output channels of ``conv_head`` and input features of ``fc``.
            num_classes: outputs of ``fc``; 0 builds neither ``conv_head`` nor ``fc``.
            drop_rate: dropout probability before ``fc``.
            **conv_kwargs: :class:`~cvtasks.layers.ConvNormAct` options of ``conv_head``
                (``act_layer``, ``norm_kwargs``, ...).
        """
        self.head_chs = head_chs
        self.conv_head = (
            ConvNormAct(self.num_features, head_chs, 1, **conv_kwargs)
            if num_classes
            else nn.Identity()
        )
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(head_chs, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the ``feature_stages``, shallow to deep."""
        return run_stages(self.blocks, self.stem(x), keep=self.feature_stages)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classify the last stage's map ``[B, num_features, H, W]``.

        Args:
            x: the last stage's map.
            pre_logits: return the pooled last stage ``[B, num_features]``, as every backbone
                does; the wider ``conv_head`` output is the classifier's own.

        Returns:
            Logits ``[B, num_classes]`` (``conv_head`` → pool → dropout → ``fc``), or pooled
            features ``[B, num_features]`` when ``pre_logits`` or ``num_classes == 0``.
        """
        if pre_logits or not self.num_classes:
            return self.global_pool(x).flatten(1)
        x = self.global_pool(self.conv_head(x)).flatten(1)
        return self.fc(self.head_drop(x))


def init_torchvision_weights(
    model: nn.Module, linear_init: Callable[[torch.Tensor], object]
) -> None:
    """Initialise ``model`` as torchvision initialises its VGG, EfficientNet and MobileNetV2.

    Every ``Conv2d`` gets He normal weights on fan-out and a zero bias; every ``BatchNorm2d``
    weight 1 and bias 0; every ``Linear`` ``linear_init(weight)`` and a zero bias. Modules are
    visited in ``model.modules()`` order, so a seeded run draws the same weights every time.

    Args:
        model: the network, initialised in place.
        linear_init: fills a linear layer's weight in place, e.g.
            ``partial(nn.init.normal_, mean=0.0, std=0.01)``.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            # The ReLU gain, sqrt(2); torchvision's EfficientNet and MobileNetV2 leave
            # kaiming_normal_'s default (leaky_relu with slope 0), which is the same number.
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            linear_init(module.weight)
            nn.init.zeros_(module.bias)
