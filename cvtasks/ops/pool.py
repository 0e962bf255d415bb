"""Reference 2-D pooling (max, average, L2) with optional partial right/bottom windows.

Seed 001 §6.4 ("Pooling Layers") defines pooling over a window ``I(i,k)`` of input pixels per output
pixel: max-pooling takes the largest value, average-pooling divides the sum by ``|I(i,k)|``; the
window moves like a convolution with stride and padding (Fig 6.11). The CS231n notes of seed 003
("Implementation as Matrix Multiplication") note that "the same im2col idea can be reused to perform
the pooling operation": windows are gathered with ``F.unfold`` and reduced along the window axis.

Padding. Padded positions belong to the window but never win: they are ``-inf`` for max (as in
``F.max_pool2d``) and zeros for the sums, and the average counts them (``count_include_pad=True``,
PyTorch's default), since seed 001 §6.3 ("Padding, Stride, and Dilation") pads by "adding extra
zero-valued pixels around the input". As in PyTorch, padding is at most half the window, so every
window holds a real pixel.

Partial windows (seed 003, SAS notes, "Differences between Pooling and Convolution Padding"). "The
left edge of the pooling window always starts at the left edge of the input matrix" and windows keep
stepping by the stride as long as they start inside the input; a window hanging over the
right/bottom edge "effectively becomes smaller": over ``[2, 4, 6, 1, 5, 3, 2]`` a width-3, stride-1
max-pool gives ``[6, 6, 6, 5, 5, 3, 2]`` and the mean divides the last two windows by 2 and 1. "For
pooling strides of 1, you always get an output matrix with the same dimensions as the input matrix".
Starting at the left edge of the padded input, that is

    ``n = ceil((W + P) / S)`` windows (``ceil(W / S)`` without padding),

one for every start position before the end of the real input. A window is cut where the
padded input ends; ``avg`` divides by the positions left in it (the real elements when
``P = 0``), ``max`` and ``l2`` reduce over them.

Compared with ``F.max_pool2d(ceil_mode=True)``: PyTorch keeps
``ceil((W + 2P - F) / S) + 1`` windows and then drops a last one that would start in the right
padding, i.e. it stops after the first window that reaches the right edge. Its count is
``min(ceil((W + 2P - F) / S) + 1, n)``; the two agree whenever ``F <= S`` (non-overlapping
windows, e.g. 2x2 stride 2) but not for overlapping windows: the seed's example keeps 7 windows
where ceil mode keeps 5. The windows both keep are the same, with the same values for ``max``
and ``avg``. ``F.lp_pool2d(ceil_mode=True)`` rescales a cut window's mean by the full window
area, so its L2 over a partial window is not the root of the sum of squares; ours is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cvtasks.ops.conv import _pair
from cvtasks.ops.sizes import conv_output_size

POOL_MODES = ("max", "avg", "l2")


def pool_output_size(
    size: int,
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    partial_windows: bool = False,
) -> int:
    """Number of pooling windows along one axis.

    Without partial windows the windows must fit the padded input and the count rounds down,
    ``floor((W + 2P - F) / S) + 1`` (seed 003, CS231n notes, "Spatial arrangement"; what
    ``nn.MaxPool2d`` does). With them it is
    ``ceil((W + P) / S)``: one window per start position, from the left edge of the padded input
    to the last real element (seed 003, SAS notes on pooling padding; derivation in the module
    docstring).

    Args:
        size: input size ``W`` along the axis.
        kernel_size: window size ``F``.
        stride: step ``S``; defaults to ``kernel_size`` (non-overlapping windows, seed 001
            §6.4, Fig 6.11).
        padding: padding ``P`` on each side, at most ``kernel_size // 2``.
        partial_windows: keep windows that hang over the right/bottom edge.

    Returns:
        The number of output positions.

    Raises:
        ValueError: non-positive sizes, padding beyond half the window, or (without partial
            windows) a window larger than the padded input.
    """
    stride = kernel_size if stride is None else stride
    for name, value in (("size", size), ("kernel_size", kernel_size), ("stride", stride)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not 0 <= padding <= kernel_size // 2:
        # Wider padding would allow windows of padding only, with no real pixel to pool.
        raise ValueError(
            f"padding must be between 0 and kernel_size // 2 = {kernel_size // 2}, got {padding}"
        )
    if partial_windows:
        return -(-(size + padding) // stride)  # ceil
    return conv_output_size(size, kernel_size, stride, padding, floor=True)


def pool2d(
    x: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    mode: str = "max",
    partial_windows: bool = False,
) -> Tensor:
    """Max, average or L2 pooling of ``[B, C, H, W]``, optionally over partial edge windows.

    Without partial windows it equals ``F.max_pool2d``, ``F.avg_pool2d`` (with
    ``count_include_pad=True``) and ``F.lp_pool2d(norm_type=2)``. With them, windows hanging
    over the right/bottom edge are kept and reduced over the elements they still cover (seed 003's
    SAS notes: ``[2, 4, 6, 1, 5, 3, 2]``, window 3, stride 1 → max ``[6, 6, 6, 5, 5, 3, 2]``).
    See the module docstring for the window count and how it relates to PyTorch's ``ceil_mode``.

    The maximum is taken with ``amax``, which splits the gradient evenly between tied maxima
    where ``F.max_pool2d`` routes it to one of them; the forward values are the same.

    Args:
        x: floating-point input ``[B, C, H, W]``.
        kernel_size: window size, an int or ``(F_h, F_w)``.
        stride: step, an int or ``(S_h, S_w)``; defaults to ``kernel_size``.
        padding: padding on each side, an int or ``(P_h, P_w)``, at most half the window.
        mode: ``"max"``, ``"avg"`` (sum / number of window positions inside the padded input)
            or ``"l2"`` (square root of the sum of squares).
        partial_windows: keep the windows that hang over the right/bottom edge.

    Returns:
        ``[B, C, H_out, W_out]`` with sizes from :func:`pool_output_size`.

    Raises:
        ValueError: an unknown ``mode``, a tensor that is not 4-D, or sizes that
            :func:`pool_output_size` rejects.
        TypeError: a non-floating-point input.
    """
    if mode not in POOL_MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, POOL_MODES))}; got {mode!r}")
    if x.dim() != 4:
        raise ValueError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"pool2d needs a floating-point input (max pads with -inf), got {x.dtype}")
    kernel_h, kernel_w = _pair(kernel_size, "kernel_size")
    stride_h, stride_w = (kernel_h, kernel_w) if stride is None else _pair(stride, "stride")
    pad_h, pad_w = _pair(padding, "padding")
    batch, chans, height, width = x.shape
    out_h = pool_output_size(height, kernel_h, stride_h, pad_h, partial_windows)
    out_w = pool_output_size(width, kernel_w, stride_w, pad_w, partial_windows)

    # Positions a cut window would need past the padded input: they do not exist, so they are
    # filled with the reduction's neutral value and left out of the average's count.
    beyond_h = max((out_h - 1) * stride_h + kernel_h - (height + 2 * pad_h), 0)
    beyond_w = max((out_w - 1) * stride_w + kernel_w - (width + 2 * pad_w), 0)
    fill = float("-inf") if mode == "max" else 0.0
    padded = F.pad(x, (pad_w, pad_w + beyond_w, pad_h, pad_h + beyond_h), value=fill)
    # [B, C·F_h·F_w, H_out·W_out] → [B, C, F_h·F_w, H_out, W_out]; unfold is channel-major.
    windows = F.unfold(padded, (kernel_h, kernel_w), stride=(stride_h, stride_w))
    windows = windows.view(batch, chans, kernel_h * kernel_w, out_h, out_w)

    if mode == "max":
        return windows.amax(dim=2)
    if mode == "l2":
        return windows.square().sum(dim=2).sqrt()
    # Positions of each window inside the padded input, per axis; their product is |I(i,k)| of
    # seed 001 §6.4 (average pooling). Equal to F_h·F_w everywhere unless a window is cut.
    count_h = _window_extent(out_h, kernel_h, stride_h, height + 2 * pad_h, x.device)
    count_w = _window_extent(out_w, kernel_w, stride_w, width + 2 * pad_w, x.device)
    count = (count_h.unsqueeze(1) * count_w.unsqueeze(0)).to(x.dtype)
    return windows.sum(dim=2) / count


def _window_extent(
    num_windows: int, kernel_size: int, stride: int, padded_size: int, device: torch.device
) -> Tensor:
    """How many positions of each window along one axis lie inside the padded input."""
    starts = torch.arange(num_windows, device=device) * stride
    return (starts + kernel_size).clamp(max=padded_size) - starts
