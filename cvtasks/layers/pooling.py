"""Pooling modules: global pooling for classifier heads and pooling over partial edge windows."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvtasks.ops.pool import POOL_MODES, pool2d

GLOBAL_POOL_MODES = ("avg", "max", "avgmax", "catavgmax")


class GlobalPool(nn.Module):
    """Pool each channel of ``[B, C, H, W]`` over all positions.

    Modes: ``"avg"``; ``"max"``; ``"avgmax"``, ``(avg + max) / 2``; ``"catavgmax"``, avg and max
    concatenated along the channels (``2·C`` features, see :meth:`feat_mult`).

    Args:
        mode: one of :data:`GLOBAL_POOL_MODES`.
        flatten: return ``[B, C·feat_mult()]`` instead of ``[B, C·feat_mult(), 1, 1]``.

    Raises:
        ValueError: an unknown mode.
    """

    def __init__(self, mode: str = "avg", flatten: bool = True) -> None:
        super().__init__()
        if mode not in GLOBAL_POOL_MODES:
            raise ValueError(
                f"global pool mode must be one of {', '.join(GLOBAL_POOL_MODES)}, got {mode!r}"
            )
        self.mode = mode
        self.flatten = flatten

    def feat_mult(self) -> int:
        """How many features per input channel: 2 for ``"catavgmax"``, else 1."""
        return 2 if self.mode == "catavgmax" else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C·feat_mult()]`` (or ``[B, C·feat_mult(), 1, 1]``)."""
        if self.mode == "avg":
            out = x.mean((2, 3), keepdim=True)
        elif self.mode == "max":
            out = x.amax((2, 3), keepdim=True)
        elif self.mode == "avgmax":
            out = 0.5 * (x.mean((2, 3), keepdim=True) + x.amax((2, 3), keepdim=True))
        else:
            out = torch.cat([x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)], 1)
        return out.flatten(1) if self.flatten else out

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, flatten={self.flatten}"


class PartialWindowPool2d(nn.Module):
    """Max, average or L2 pooling that keeps windows hanging over the right/bottom edge.

    Seed 003, SAS notes ("Differences between Pooling and Convolution Padding"): windows start at
    the left edge and step by the stride while they start inside the input; a window past the edge
    "effectively becomes smaller". Over the 1x7 input ``[2, 4, 6, 1, 5, 3, 2]`` a 1x3 window at
    stride 1 gives max ``[6, 6, 6, 5, 5, 3, 2]``, and the mean divides each window by its real
    elements (2 and 1 at the end). At stride 1 the output has the input's size. The numbers come
    from :func:`cvtasks.ops.pool.pool2d` with ``partial_windows=True``.

    Args:
        kernel_size: window, an int or ``(kh, kw)``.
        stride: step, an int or ``(sh, sw)``; defaults to ``kernel_size``.
        padding: zeros (``-inf`` for max) on every side, at most half the window.
        mode: ``"max"``, ``"avg"`` or ``"l2"``.

    Raises:
        ValueError: an unknown mode.
    """

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        mode: str = "max",
    ) -> None:
        super().__init__()
        if mode not in POOL_MODES:
            raise ValueError(f"pool mode must be one of {', '.join(POOL_MODES)}, got {mode!r}")
        self.kernel_size, self.stride, self.padding, self.mode = kernel_size, stride, padding, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, ceil((H + P) / S), ceil((W + P) / S)]``."""
        return pool2d(
            x, self.kernel_size, self.stride, self.padding, mode=self.mode, partial_windows=True
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"mode={self.mode!r}"
        )
