"""Building blocks shared by backbones and heads."""

from cvtasks.layers.activations import ACTIVATIONS, make_activation

__all__ = ["ACTIVATIONS", "make_activation"]
