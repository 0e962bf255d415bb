"""Building blocks shared by backbones and heads."""

from cvtasks.layers.activations import ACTIVATIONS, make_activation
from cvtasks.layers.conv import ConvNormAct, SamePad2d, remap_conv_norm_act_keys, resolve_padding
from cvtasks.layers.fuse import can_fuse, fuse_batchnorm, fuse_conv_bn
from cvtasks.layers.inception import Inception
from cvtasks.layers.mbconv import DropPath, MBConv, SqueezeExcite, drop_path, make_divisible
from cvtasks.layers.norm import NORMS, make_norm
from cvtasks.layers.pooling import GLOBAL_POOL_MODES, GlobalPool, PartialWindowPool2d
from cvtasks.layers.residual import BasicBlock, Bottleneck

__all__ = [
    "ACTIVATIONS",
    "GLOBAL_POOL_MODES",
    "NORMS",
    "BasicBlock",
    "Bottleneck",
    "ConvNormAct",
    "DropPath",
    "GlobalPool",
    "Inception",
    "MBConv",
    "PartialWindowPool2d",
    "SamePad2d",
    "SqueezeExcite",
    "can_fuse",
    "drop_path",
    "fuse_batchnorm",
    "fuse_conv_bn",
    "make_activation",
    "make_divisible",
    "make_norm",
    "remap_conv_norm_act_keys",
    "resolve_padding",
]
