"""Backbones: one file per architecture family, each registering its variants on import.

Every backbone follows one contract (``forward_features``, ``feature_info``, ``num_features``,
``forward``), checked by :func:`validate_backbone`; see :mod:`cvtasks.backbones.base`.
"""

from cvtasks.backbones import alexnet, efficientnet, googlenet, lenet, resnet, timm_adapter, vgg
from cvtasks.backbones.base import (
    Backbone,
    LoadedKeys,
    check_feature_info,
    load_pretrained,
    validate_backbone,
)

__all__ = [
    "Backbone",
    "LoadedKeys",
    "alexnet",
    "check_feature_info",
    "efficientnet",
    "googlenet",
    "lenet",
    "load_pretrained",
    "resnet",
    "timm_adapter",
    "validate_backbone",
    "vgg",
]
