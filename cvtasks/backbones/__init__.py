"""Backbones: one file per architecture family, each registering its variants on import.

Every backbone follows one contract (``forward_features``, ``feature_info``, ``num_features``,
``forward``), checked by :func:`validate_backbone`; see :mod:`cvtasks.backbones.base`. The names
below are what plugins build their backbones from; heads and blocks come from
:mod:`cvtasks.layers`.
"""

from cvtasks.backbones import alexnet, efficientnet, googlenet, lenet, resnet, timm_adapter, vgg
from cvtasks.backbones.base import Backbone, check_feature_info, validate_backbone
from cvtasks.backbones.common import init_torchvision_weights, run_stages
from cvtasks.backbones.input_size import native_input_size
from cvtasks.backbones.weights import (
    LoadedKeys,
    StateDict,
    build_with_weights,
    load_pretrained,
    rename_modules,
)

__all__ = [
    "Backbone",
    "LoadedKeys",
    "StateDict",
    "alexnet",
    "build_with_weights",
    "check_feature_info",
    "efficientnet",
    "googlenet",
    "init_torchvision_weights",
    "lenet",
    "load_pretrained",
    "native_input_size",
    "rename_modules",
    "resnet",
    "run_stages",
    "timm_adapter",
    "validate_backbone",
    "vgg",
]
