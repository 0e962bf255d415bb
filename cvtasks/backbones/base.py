"""What every backbone shares: the feature contract and the default classifier.

A backbone is an ``nn.Module`` with

* ``forward_features(x) -> list[Tensor]``: every stage's feature map, shallow to deep;
* ``feature_info``: one ``dict(num_chs=int, reduction=int, module=str)`` per stage;
* ``num_features``: channels of the last stage;
* ``forward(x)``: class logits when built with ``num_classes > 0``, else the pooled last stage.

:func:`check_feature_info` and :func:`validate_backbone` check that contract in one place (the
way timm's ``_features.py`` does); :class:`Backbone` gives families the default classifier (a
:class:`~cvtasks.layers.LinearHead`) so that they only build stages. Building a variant and
loading its weights is :mod:`cvtasks.backbones.weights`.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from cvtasks.layers import LinearHead, check_head_args, pool_flat


# -- the contract -----------------------------------------------------------------------------
def check_feature_info(feature_info: Sequence[Mapping[str, Any]]) -> None:
    """Check a backbone's ``feature_info`` against the contract.

    Each stage needs ``num_chs`` (int > 0), ``reduction`` (int >= 1, never smaller than the
    stage before: deeper stages are not finer) and ``module`` (a string naming the module whose
    output the stage is). Extra keys (timm's ``index``, ``stage``) are allowed.

    Args:
        feature_info: one mapping per stage, shallow to deep.

    Raises:
        ValueError: the first violation, naming the stage index and the offending value.
    """
    if isinstance(feature_info, (str, bytes, Mapping)) or not isinstance(feature_info, Sequence):
        raise ValueError(
            "feature_info must be a list of dicts (one per stage), "
            f"got {type(feature_info).__name__}"
        )
    if not feature_info:
        raise ValueError("feature_info is empty: a backbone needs at least one stage")
    previous = 1
    for i, info in enumerate(feature_info):
        where = f"feature_info[{i}] = {info!r}"
        if not isinstance(info, Mapping):
            raise ValueError(f"{where} must be a dict with num_chs, reduction and module")
        missing = [k for k in ("num_chs", "reduction", "module") if k not in info]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        num_chs, reduction, module = info["num_chs"], info["reduction"], info["module"]
        if not _is_int(num_chs) or num_chs <= 0:
            raise ValueError(f"{where}: num_chs must be an int > 0, got {num_chs!r}")
        if not _is_int(reduction) or reduction < 1:
            raise ValueError(f"{where}: reduction must be an int >= 1, got {reduction!r}")
        if reduction < previous:
            raise ValueError(
                f"{where}: reduction {reduction} is smaller than the previous stage's {previous}; "
                "stages must be listed shallow to deep with non-decreasing reduction"
            )
        if not isinstance(module, str):
            raise ValueError(f"{where}: module must be a string, got {type(module).__name__}")
        previous = reduction


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_backbone(module: nn.Module, x: torch.Tensor | None = None) -> None:
    """Check that ``module`` follows the backbone contract.

    Runs :func:`check_feature_info` and checks ``num_features == feature_info[-1]["num_chs"]``.
    Given a sample batch ``x``, also runs ``forward_features`` once (without gradients) and checks
    that it returns one map per stage with the declared channel counts.

    Args:
        module: the backbone.
        x: an optional input batch ``[B, C, H, W]`` to probe the feature maps with.

    Raises:
        TypeError: ``module`` is not an ``nn.Module`` or lacks a part of the contract.
        ValueError: the parts disagree with each other or with the probed feature maps.
    """
    name = type(module).__name__
    if not isinstance(module, nn.Module):
        raise TypeError(f"a backbone must be an nn.Module, got {name}")
    parts = ("forward_features", "feature_info", "num_features")
    absent = [a for a in parts if not hasattr(module, a)]
    if absent:
        raise TypeError(
            f"backbone {name} has no {', '.join(absent)}; see cvtasks.backbones.base for the "
            "contract (subclass cvtasks.backbones.Backbone to get the classifier path for free)"
        )
    feature_info = module.feature_info
    try:
        check_feature_info(feature_info)
    except ValueError as err:
        raise ValueError(f"backbone {name}: {err}") from err
    last = feature_info[-1]["num_chs"]
    if module.num_features != last:
        raise ValueError(
            f"backbone {name}: num_features={module.num_features!r} but the last stage has "
            f"num_chs={last}; num_features must be the last stage's channel count"
        )
    if x is None:
        return
    with torch.no_grad():
        features = module.forward_features(x)
    if not isinstance(features, (list, tuple)) or len(features) != len(feature_info):
        got = len(features) if isinstance(features, (list, tuple)) else type(features).__name__
        raise ValueError(
            f"backbone {name}: forward_features returned {got} maps for "
            f"{len(feature_info)} stages in feature_info"
        )
    for i, (fmap, info) in enumerate(zip(features, feature_info)):
        if fmap.ndim != 4 or fmap.shape[1] != info["num_chs"]:
            raise ValueError(
                f"backbone {name}: stage {i} ({info['module']}) gave a map of shape "
                f"{tuple(fmap.shape)}, expected [B, {info['num_chs']}, H, W]"
            )


# -- the base class ---------------------------------------------------------------------------
class Backbone(nn.Module, metaclass=ABCMeta):
    """Base class of cvtasks backbones: families build stages, this adds the classifier path.

    A subclass builds its layers, sets ``feature_info`` and ``num_features``, calls
    :meth:`init_head` and implements :meth:`forward_features`. The default head is a
    :class:`~cvtasks.layers.LinearHead` named ``fc`` (global average pooling → dropout
    (``drop_rate``) → linear); with ``num_classes == 0`` there is none and :meth:`forward` returns
    the pooled last-stage features ``[B, num_features]``. A family with another head composes it
    from :mod:`cvtasks.layers` (:class:`~cvtasks.layers.FCHead`, a ``conv_head`` in front of the
    ``LinearHead``), overrides :meth:`forward_head` and names the head's modules in
    ``classifier_modules``.

    Attributes:
        feature_info: one ``dict(num_chs, reduction, module)`` per stage, shallow to deep.
        num_features: channels of the last stage.
        num_classes: logits of :meth:`forward` (0: pooled features instead).
        classifier_modules: names of the modules that depend on ``num_classes``; their
            checkpoint weights are skipped by
            :func:`~cvtasks.backbones.weights.load_pretrained` when they do not fit.
        default_input_size: the square input size the architecture is defined for.
        variant: the registered name it was built under (set by
            :func:`~cvtasks.backbones.weights.build_with_weights`).
    """

    feature_info: list[dict[str, Any]]
    num_features: int
    num_classes: int = 0
    classifier_modules: tuple[str, ...] = ("fc",)
    #: the resolution the architecture is defined for (listings count FLOPs at it).
    default_input_size: int = 224
    #: state-dict key of the first convolution's weight: a checkpoint's made for other input
    #: channels is adapted to ``in_chans`` as timm does (see :mod:`cvtasks.backbones.weights`).
    stem_weight: str | None = None
    variant: str = ""

    def init_head(self, num_classes: int, drop_rate: float) -> None:
        """Build the default classifier ``fc`` on ``self.num_features`` channels.

        Args:
            num_classes: number of logits; 0 builds no classifier.
            drop_rate: dropout probability before the linear layer.

        Raises:
            ValueError: a negative ``num_classes`` or a ``drop_rate`` outside [0, 1).
        """
        check_head_args(num_classes, drop_rate, dropout_name="drop_rate", minimum=0)
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.fc: nn.Module = (
            LinearHead(self.num_features, num_classes, drop_rate) if num_classes else nn.Identity()
        )

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's feature map, shallow to deep; each family implements it."""

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classify the last stage's map ``[B, num_features, H, W]``.

        Args:
            x: the deepest feature map.
            pre_logits: return the pooled features ``[B, num_features]`` even with a classifier.

        Returns:
            Logits ``[B, num_classes]``, or pooled features when ``pre_logits`` or
            ``num_classes == 0`` (no dropout: that belongs to the classifier).
        """
        if pre_logits or not self.num_classes:
            return pool_flat(x)
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` (or pooled features when ``num_classes == 0``)."""
        return self.forward_head(self.forward_features(x)[-1])

    def extra_repr(self) -> str:
        return f"variant={self.variant}" if self.variant else ""
