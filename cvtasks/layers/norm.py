"""Normalization layers by name or class, so configs can say ``norm_layer: batchnorm``."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from torch import nn


def _group_norm(num_features: int, num_groups: int = 32, **kwargs: Any) -> nn.GroupNorm:
    """``nn.GroupNorm`` with the channel count first, like every other norm here."""
    return nn.GroupNorm(num_groups, num_features, **kwargs)


NORMS: dict[str, Callable[..., nn.Module]] = {
    "batchnorm": nn.BatchNorm2d,
    "batchnorm2d": nn.BatchNorm2d,
    "bn": nn.BatchNorm2d,
    "syncbatchnorm": nn.SyncBatchNorm,
    "groupnorm": _group_norm,
    "gn": _group_norm,
    "instancenorm": nn.InstanceNorm2d,
}

NormLayer = str | Callable[..., nn.Module] | None


def make_norm(
    norm: NormLayer, num_features: int, norm_kwargs: dict[str, Any] | None = None
) -> nn.Module:
    """Return a normalization module over ``num_features`` channels, or ``nn.Identity``.

    Args:
        norm: a name (``"batchnorm"``, ``"groupnorm"``, ...), a class or callable called as
            ``norm(num_features, **norm_kwargs)`` (``nn.BatchNorm2d``,
            ``functools.partial(nn.BatchNorm2d, eps=1e-3)``), or ``None`` for no normalization.
        num_features: channels to normalize.
        norm_kwargs: keywords for the layer (``eps``, ``momentum``, ``num_groups``); unused
            when ``norm`` is ``None``.

    Returns:
        The module (``nn.Identity`` for ``None``).

    Raises:
        ValueError: an unknown name; the message lists the close matches and every allowed name.
    """
    if norm is None:
        return nn.Identity()
    if isinstance(norm, str):
        key = norm.lower()
        if key not in NORMS:
            close = difflib.get_close_matches(key, NORMS, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown norm layer {norm!r}.{hint} Allowed: {', '.join(sorted(NORMS))}, or None."
            )
        norm = NORMS[key]
    return norm(num_features, **(norm_kwargs or {}))
