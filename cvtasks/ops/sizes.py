"""Output-size and padding arithmetic of convolution and pooling layers."""

from __future__ import annotations


def conv_output_size(
    size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    floor: bool = False,
) -> int:
    """Spatial output size of a convolution or pooling window along one axis.

    Seed 003, CS231n notes ("Spatial arrangement"): ``(W - F + 2P) / S + 1``; with dilation ``d``
    the window spans ``F' = d·(F - 1) + 1`` input elements, so the size is
    ``(W - F' + 2P) / S + 1``.

    Args:
        size: input size ``W`` along the axis.
        kernel_size: window size ``F``.
        stride: step ``S``.
        padding: zeros added on each side, ``P``.
        dilation: spacing between window taps.
        floor: round down when the windows do not tile the input (what ``nn.Conv2d`` does);
            without it such a configuration is an error, as the notes recommend
            ("Constraints on strides").

    Returns:
        The output size.

    Raises:
        ValueError: a non-positive argument, a window larger than the padded input, or (unless
            ``floor``) windows that do not fit neatly across the input.
    """
    for name, value in (
        ("size", size),
        ("kernel_size", kernel_size),
        ("stride", stride),
        ("dilation", dilation),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    span = dilation * (kernel_size - 1) + 1
    room = size + 2 * padding - span
    if room < 0:
        raise ValueError(
            f"a window spanning {span} does not fit an input of {size} padded by {padding} "
            "on each side"
        )
    if room % stride and not floor:
        raise ValueError(
            f"(W - F + 2P) / S + 1 = ({size} - {span} + 2·{padding}) / {stride} + 1 is not an "
            f"integer: the windows do not tile the input (CS231n notes, constraints on strides). "
            f"Change the padding or stride, or ask for floor=True to drop the last partial window."
        )
    return room // stride + 1


def same_padding(
    size: int, kernel_size: int, stride: int = 1, dilation: int = 1
) -> tuple[int, int]:
    """Padding ``(before, after)`` that makes the output ``ceil(size / stride)`` long.

    When the total is odd the extra element goes after (right/bottom): seed 003's SAS notes
    ("Convolution, Stride, and Padding on CPU") pad a 1x7 input for a 1x4 filter with one zero on
    the left and two on the right.

    Args:
        size: input size along the axis.
        kernel_size: window size.
        stride: step.
        dilation: spacing between window taps.

    Returns:
        ``(before, after)`` zero-padding amounts.
    """
    span = dilation * (kernel_size - 1) + 1
    out = -(-size // stride)  # ceil
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2
