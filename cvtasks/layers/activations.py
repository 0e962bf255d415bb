"""Activation layers by name or class, so configs can say ``act_layer: relu``."""

from __future__ import annotations

import difflib

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "hardswish": nn.Hardswish,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def make_activation(act: str | type[nn.Module] | nn.Module) -> nn.Module:
    """Return an activation module for a name (``"relu"``), a class (``nn.GELU``) or a module.

    Raises:
        ValueError: an unknown name; the message lists the close matches and every allowed name.
    """
    if isinstance(act, nn.Module):
        return act
    if isinstance(act, str):
        key = act.lower()
        if key not in ACTIVATIONS:
            close = difflib.get_close_matches(key, ACTIVATIONS, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown activation {act!r}.{hint} Allowed: {', '.join(sorted(ACTIVATIONS))}."
            )
        return ACTIVATIONS[key]()
    return act()
