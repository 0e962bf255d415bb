"""Building blocks shared by backbones and heads."""

from cvtasks.layers.activations import ACTIVATIONS, make_activation
from cvtasks.layers.classifier import FCHead, LinearHead, check_head_args, pool_flat
from cvtasks.layers.conv import ConvNormAct, SamePad2d, remap_conv_norm_act_keys, resolve_padding
from cvtasks.layers.drop import DropPath, drop_path
from cvtasks.layers.fuse import can_fuse, fuse_batchnorm, fuse_conv_bn
from cvtasks.layers.inception import Inception
from cvtasks.layers.mbconv import MBConv, SqueezeExcite, make_divisible
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
    "FCHead",
    "GlobalPool",
    "Inception",
    "LinearHead",
    "MBConv",
    "PartialWindowPool2d",
    "SamePad2d",
    "SqueezeExcite",
    "can_fuse",
    "check_head_args",
    "drop_path",
    "fuse_batchnorm",
    "fuse_conv_bn",
    "make_activation",
    "make_divisible",
    "make_norm",
    "pool_flat",
    "remap_conv_norm_act_keys",
    "resolve_padding",
]
