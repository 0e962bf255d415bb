"""Reference convolutions: im2col + matrix multiply in 2-D, a Toeplitz matrix in 1-D.

Both compute the *cross-correlation* ``z[t] = sum_i w[i] · x[t·S + i]`` that deep-learning libraries
call convolution. Seed 001 defines convolution with a flipped kernel (§6.2, eq. 6.1 and eq. 6.7) but
then builds the layer from the unflipped sum (§6.3, eq. 6.14) and explains right after eq. 6.15 that
flipping only re-indexes learned parameters, so "in deep learning, the flipping operation is
avoided". These functions follow eq. 6.14, which is what ``F.conv1d`` / ``F.conv2d`` compute; the
seed's flipped convolution is recovered by passing ``kernel.flip(-1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cvtasks.ops.sizes import conv_output_size


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """``value`` as a ``(height, width)`` pair; an int applies to both axes."""
    if isinstance(value, int):
        return value, value
    pair = tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return pair[0], pair[1]


def conv2d_reference(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution as one matrix multiplication over im2col columns; equals ``F.conv2d``.

    Seed 003, CS231n notes ("Implementation as Matrix Multiplication"): every receptive field is
    stretched into a column (``im2col``, here ``F.unfold``), every filter into a row, and the layer
    is ``np.dot(w_row, x_col)`` reshaped to the output volume. Each output channel is the sum over
    input channels of 2-D convolutions plus one bias (seed 001 §6.3, eq. 6.20, eq. 6.21); the column
    holds all input channels of a window, so the matrix product does that sum. Padding, stride and
    dilation set the output size of seed 001 eq. 6.17 with ``p`` zeros on each side (seed 003,
    CS231n notes: ``(W - F + 2P) / S + 1``, ``F = d·(K - 1) + 1``). ``groups`` (not in the seeds; as
    in ``F.conv2d``) splits the channels into independent convolutions: group ``g`` sees only its
    own slice of input channels and filters.

    Args:
        x: input ``[B, C_in, H, W]``.
        weight: filters ``[C_out, C_in / groups, K_h, K_w]``.
        bias: optional ``[C_out]``.
        stride: step ``S``, an int or ``(S_h, S_w)``.
        padding: zeros added on each side, an int or ``(P_h, P_w)``.
        dilation: spacing between kernel taps, an int or ``(d_h, d_w)``.
        groups: number of channel groups; divides ``C_in`` and ``C_out``.

    Returns:
        ``[B, C_out, H_out, W_out]``, ``H_out = floor((H + 2P_h - d_h(K_h - 1) - 1) / S_h) + 1``.

    Raises:
        ValueError: wrong tensor ranks, channel counts that do not match ``groups``, or a window
            that does not fit the padded input.
    """
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(
            f"x must be [B, C, H, W] and weight [C_out, C_in/groups, K_h, K_w]; got x of shape "
            f"{tuple(x.shape)} and weight of shape {tuple(weight.shape)}"
        )
    batch, in_chans, height, width = x.shape
    out_chans, group_in, kernel_h, kernel_w = weight.shape
    if groups < 1 or in_chans % groups or out_chans % groups or group_in * groups != in_chans:
        raise ValueError(
            f"groups={groups} needs C_in ({in_chans}) and C_out ({out_chans}) divisible by it and "
            f"weight.shape[1] == C_in / groups; got weight.shape[1] = {group_in}"
        )
    if bias is not None and bias.shape != (out_chans,):
        raise ValueError(f"bias must have shape ({out_chans},), got {tuple(bias.shape)}")
    stride_h, stride_w = _pair(stride, "stride")
    pad_h, pad_w = _pair(padding, "padding")
    dil_h, dil_w = _pair(dilation, "dilation")
    out_h = conv_output_size(height, kernel_h, stride_h, pad_h, dil_h, floor=True)
    out_w = conv_output_size(width, kernel_w, stride_w, pad_w, dil_w, floor=True)

    # x_col: [B, C_in·K_h·K_w, H_out·W_out]; unfold orders a column channel-major, so the rows of
    # one group's channels are contiguous and a view splits them.
    cols = F.unfold(
        x,
        (kernel_h, kernel_w),
        dilation=(dil_h, dil_w),
        padding=(pad_h, pad_w),
        stride=(stride_h, stride_w),
    )
    cols = cols.view(batch, groups, group_in * kernel_h * kernel_w, out_h * out_w)
    # w_row per group: [G, C_out/G, C_in/G·K_h·K_w]; broadcasting over the batch gives
    # [B, G, C_out/G, H_out·W_out], i.e. np.dot(w_row, x_col) for every image and group.
    rows = weight.reshape(groups, out_chans // groups, group_in * kernel_h * kernel_w)
    out = torch.matmul(rows, cols).reshape(batch, out_chans, out_h, out_w)
    if bias is not None:
        out = out + bias.view(1, out_chans, 1, 1)
    return out


def _pad_pair(padding: int | Sequence[int]) -> tuple[int, int]:
    """``(before, after)`` zero padding; an int pads both ends equally."""
    before, after = _pair(padding, "padding")
    if before < 0 or after < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return before, after


def toeplitz_matrix(
    kernel_1d: Tensor,
    input_length: int,
    padding: int | Sequence[int] = 0,
    stride: int = 1,
) -> Tensor:
    """The 1-D convolution (cross-correlation) with ``kernel_1d`` as a banded Toeplitz matrix.

    Seed 001 §6.2 ("Multiplication of Polynomials and the Convolution Matrix") writes the
    convolution ``z = f * g`` of a length-3 ``f`` and a length-6 ``g`` (the coefficients of a
    polynomial product, eq. 6.3) as ``z = T(f) g`` with an 8 x 6 Toeplitz matrix: constant along
    every diagonal, ``f`` running down each column (the same section gives the 8 x 3 ``T(g)`` the
    same way). The seed's product is the full, flipped convolution; this matrix encodes the
    unflipped sum of seed 001 eq. 6.14 that layers compute (see the module docstring), over the
    zero-padded input:

        ``M[t, j] = kernel[j + P_before - t·S]`` when that index is in the kernel, else 0,

    so ``M @ x`` equals ``F.conv1d`` and the seed's ``T(f)`` is
    ``toeplitz_matrix(f.flip(0), len(g), padding=len(f) - 1)``. Rows past the first are the
    previous row shifted right by ``S`` (for ``S = 1``, a Toeplitz matrix: seed 001 §6.2,
    footnote 4, "constant values on the diagonals").

    Args:
        kernel_1d: the kernel ``[K]``.
        input_length: length ``W`` of the input it multiplies.
        padding: zeros on each side, or ``(before, after)`` as :func:`same_padding` returns for
            the seed's asymmetric case (seed 003, SAS notes: one zero left, two right).
        stride: step ``S`` between outputs.

    Returns:
        ``[W_out, W]`` with ``W_out = floor((W + P_before + P_after - K) / S) + 1``, in the
        kernel's dtype and device.

    Raises:
        ValueError: a kernel that is not 1-D, negative padding, or a kernel longer than the
            padded input.
    """
    if kernel_1d.dim() != 1:
        raise ValueError(f"kernel_1d must be 1-D, got shape {tuple(kernel_1d.shape)}")
    before, after = _pad_pair(padding)
    taps = kernel_1d.numel()
    out_len = conv_output_size(input_length + before + after, taps, stride, floor=True)
    device = kernel_1d.device
    rows = torch.arange(out_len, device=device).unsqueeze(1)
    cols = torch.arange(input_length, device=device).unsqueeze(0)
    # Output t reads padded positions t·S .. t·S + K - 1; input j sits at padded position
    # j + P_before, so it meets kernel tap j + P_before - t·S.
    tap = cols + before - rows * stride
    inside = (tap >= 0) & (tap < taps)
    values = kernel_1d[tap.clamp(0, taps - 1)]
    return torch.where(inside, values, torch.zeros((), dtype=values.dtype, device=device))


def conv1d_toeplitz(
    x_1d: Tensor,
    kernel_1d: Tensor,
    padding: int | Sequence[int] = 0,
    stride: int = 1,
) -> Tensor:
    """1-D convolution as the matrix-vector product ``toeplitz_matrix(kernel) @ x``.

    Seed 001 §6.2 ("Multiplication of Polynomials and the Convolution Matrix"): the convolution "is
    a linear transformation given by the matrix-vector product T(f) g". Equals ``F.conv1d``
    (cross-correlation; see :func:`toeplitz_matrix`).

    Args:
        x_1d: input ``[W]``, or ``[..., W]`` for a batch of signals.
        kernel_1d: the kernel ``[K]``.
        padding: zeros on each side, or ``(before, after)``.
        stride: step between outputs.

    Returns:
        ``[W_out]`` (or ``[..., W_out]``).
    """
    if x_1d.dim() < 1:
        raise ValueError("x_1d must have at least one dimension (the signal)")
    matrix = toeplitz_matrix(kernel_1d, x_1d.shape[-1], padding=padding, stride=stride)
    # x @ M^T is M @ x for every signal along the last axis at once.
    return x_1d @ matrix.T
