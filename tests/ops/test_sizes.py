"""Output-size and same-padding arithmetic against real PyTorch layers and the seeds' numbers."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from cvtasks.ops import conv_output_size, same_padding

FAST = settings(max_examples=60, deadline=None)


@FAST
@given(
    size=st.integers(1, 24),
    kernel=st.integers(1, 6),
    stride=st.integers(1, 4),
    padding=st.integers(0, 3),
    dilation=st.integers(1, 3),
)
def test_conv_output_size_matches_nn_conv2d(size, kernel, stride, padding, dilation):
    span = dilation * (kernel - 1) + 1
    assume(span <= size + 2 * padding)
    conv = nn.Conv2d(1, 1, (kernel, 1), stride=(stride, 1), padding=(padding, 0), dilation=dilation)
    real = conv(torch.zeros(1, 1, size, 1)).shape[2]
    assert conv_output_size(size, kernel, stride, padding, dilation, floor=True) == real
    # Without floor it is an error exactly when the windows do not tile the input (seed 003, CS231n
    # notes, "Constraints on strides").
    if (size - span + 2 * padding) % stride:
        with pytest.raises(ValueError, match="not an integer"):
            conv_output_size(size, kernel, stride, padding, dilation)
    else:
        assert conv_output_size(size, kernel, stride, padding, dilation) == real


@FAST
@given(
    size=st.integers(1, 24),
    kernel=st.integers(1, 6),
    stride=st.integers(1, 4),
    padding=st.integers(0, 3),
    dilation=st.integers(1, 3),
)
def test_conv_output_size_matches_nn_maxpool2d(size, kernel, stride, padding, dilation):
    span = dilation * (kernel - 1) + 1
    # PyTorch pads max-pooling by at most half the (undilated) window.
    assume(padding <= kernel // 2 and span <= size + 2 * padding)
    pool = nn.MaxPool2d((kernel, 1), stride=(stride, 1), padding=(padding, 0), dilation=dilation)
    real = pool(torch.zeros(1, 1, size, 1)).shape[2]
    assert conv_output_size(size, kernel, stride, padding, dilation, floor=True) == real


def test_cs231n_examples():
    # Seed 003, CS231n notes ("Spatial arrangement"): 7x7 input, 3x3 filter, stride 1 → 5x5, stride
    # 2 → 3x3.
    assert conv_output_size(7, 3, 1) == 5
    assert conv_output_size(7, 3, 2) == 3
    # Seed 003, CS231n notes (the spatial arrangement figure): W=5, F=3, P=1 gives 5 (S=1) and 3
    # (S=2); S=3 does not fit.
    assert conv_output_size(5, 3, 1, 1) == 5
    assert conv_output_size(5, 3, 2, 1) == 3
    with pytest.raises(ValueError, match="not an integer"):
        conv_output_size(5, 3, 3, 1)
    # Seed 003, CS231n notes ("Constraints on strides"): W=10, F=3, P=0, S=2 gives 4.5, an invalid
    # setting.
    with pytest.raises(ValueError, match="not an integer"):
        conv_output_size(10, 3, 2)


def test_alexnet_first_layer():
    # Seed 003, CS231n notes ("Real-world example", AlexNet): 227 input, F=11, S=4, P=0 → 55; the
    # paper's 224 does not fit.
    assert conv_output_size(227, 11, 4) == 55
    with pytest.raises(ValueError, match="not an integer"):
        conv_output_size(224, 11, 4)
    # The seed guesses "zero-padding of 3 extra pixels": that works as 3 pixels in total
    # (224 + 3 = 227), not as P = 3 on each side, which the formula's 2P would mean.
    with pytest.raises(ValueError, match="not an integer"):
        conv_output_size(224, 11, 4, padding=3)
    assert conv_output_size(224 + 3, 11, 4) == 55
    assert conv_output_size(224, 11, 4, floor=True) == 54


@FAST
@given(
    size=st.integers(1, 30),
    kernel=st.integers(1, 7),
    stride=st.integers(1, 4),
    dilation=st.integers(1, 3),
)
def test_same_padding_gives_ceil_size_over_stride(size, kernel, stride, dilation):
    before, after = same_padding(size, kernel, stride, dilation)
    # The extra element of an odd total goes after (right/bottom), as in seed 003's SAS
    # notes ("Convolution, Stride, and Padding on CPU").
    assert 0 <= after - before <= 1
    x = F.pad(torch.zeros(1, 1, size), (before, after))
    assume(x.shape[-1] >= dilation * (kernel - 1) + 1)
    out = F.conv1d(x, torch.zeros(1, 1, kernel), stride=stride, dilation=dilation)
    assert out.shape[-1] == math.ceil(size / stride)


def _sas_conv(signal, kernel, pad):
    x = F.pad(torch.tensor(signal, dtype=torch.float64).view(1, 1, -1), pad)
    return F.conv1d(x, torch.tensor(kernel, dtype=torch.float64).view(1, 1, -1)).flatten()


def test_sas_same_padding_examples():
    signal = [2, 4, 6, 1, 5, 3, 2]
    # Seed 003, SAS notes ("Convolution, Stride, and Padding on CPU"): a 1x3 filter over 7 pixels,
    # one zero each side, 7 outputs. The seed lists each window's element-wise products; the outputs
    # are their sums.
    assert same_padding(7, 3) == (1, 1)
    torch.testing.assert_close(
        _sas_conv(signal, [2, -1, 0.1], same_padding(7, 3)),
        torch.tensor([-1.6, 0.6, 2.1, 11.5, -2.7, 7.2, 4.0], dtype=torch.float64),
    )
    # Seed 003, SAS notes (same section): a 1x4 filter needs 3 zeros, one on the left and two on the
    # right.
    assert same_padding(7, 4) == (1, 2)
    torch.testing.assert_close(
        _sas_conv(signal, [2, -1, 0.1, 5], same_padding(7, 4)),
        torch.tensor([28.4, 5.6, 27.1, 26.5, 7.3, 7.2, 4.0], dtype=torch.float64),
    )
    # Seed 003, SAS notes ("Convolution, Stride, and Padding on GPU"): a 1x2 filter over 5 and over
    # 4 pixels, padLeft=0 and padRight=1.
    assert same_padding(5, 2) == (0, 1)
    assert same_padding(4, 2) == (0, 1)
    torch.testing.assert_close(
        _sas_conv([1, 2, 3, 4, 5], [1, 2], same_padding(5, 2)),
        torch.tensor([5.0, 8.0, 11.0, 14.0, 5.0], dtype=torch.float64),
    )
    torch.testing.assert_close(
        _sas_conv([1, 2, 3, 4], [1, 2], same_padding(4, 2)),
        torch.tensor([5.0, 8.0, 11.0, 4.0], dtype=torch.float64),
    )
