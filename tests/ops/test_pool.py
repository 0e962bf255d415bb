"""Reference pooling against PyTorch, a loop-by-loop definition, and the seed's example."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cvtasks.ops import POOL_MODES, pool2d, pool_output_size

FAST = settings(max_examples=40, deadline=None)
f64 = torch.float64
SAS_INPUT = [2.0, 4.0, 6.0, 1.0, 5.0, 3.0, 2.0]


@st.composite
def pool_cases(draw, max_padding=True):
    """Random ``[B, C, H, W]`` input, window, stride and padding (at most half the window)."""
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = tuple(draw(st.integers(0, k // 2)) if max_padding else 0 for k in kernel)
    size = [max(k - 2 * p, 1) + draw(st.integers(0, 6)) for k, p in zip(kernel, padding)]
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(draw(st.integers(1, 2)), draw(st.integers(1, 3)), *size, generator=gen)
    return x.to(f64), kernel, stride, padding


@FAST
@given(pool_cases())
def test_matches_max_and_avg_pool2d(case):
    x, kernel, stride, padding = case
    torch.testing.assert_close(
        pool2d(x, kernel, stride, padding, mode="max"), F.max_pool2d(x, kernel, stride, padding)
    )
    torch.testing.assert_close(
        pool2d(x, kernel, stride, padding, mode="avg"),
        F.avg_pool2d(x, kernel, stride, padding, count_include_pad=True),
    )


@FAST
@given(pool_cases(max_padding=False))
def test_matches_lp_pool2d(case):
    # F.lp_pool2d has no padding argument.
    x, kernel, stride, _ = case
    torch.testing.assert_close(
        pool2d(x, kernel, stride, mode="l2"), F.lp_pool2d(x, 2, kernel, stride)
    )


def test_stride_defaults_to_the_window():
    x = torch.randn(1, 2, 8, 6)
    torch.testing.assert_close(pool2d(x, 2), F.max_pool2d(x, 2))
    torch.testing.assert_close(pool2d(x, (2, 3), mode="avg"), F.avg_pool2d(x, (2, 3)))


def _pool_1d(values, mode, kernel=3, stride=1):
    x = torch.tensor(values, dtype=f64).view(1, 1, 1, -1)
    return pool2d(x, (1, kernel), (1, stride), mode=mode, partial_windows=True).flatten()


def test_sas_partial_window_example():
    # Seed 003, SAS notes ("Differences between Pooling and Convolution Padding"): window 3, stride
    # 1 over [2, 4, 6, 1, 5, 3, 2]; the window starts at the left edge and shrinks over the right
    # edge: Max{[3, 2]} = 3, Max{[2]} = 2.
    assert _pool_1d(SAS_INPUT, "max").tolist() == [6, 6, 6, 5, 5, 3, 2]
    # The same notes give no numbers for the mean, only the rule: the first five windows divide by
    # three, the sixth by two, the seventh is the solitary element.
    mean = [12 / 3, 11 / 3, 12 / 3, 9 / 3, 10 / 3, 5 / 2, 2 / 1]
    torch.testing.assert_close(_pool_1d(SAS_INPUT, "avg"), torch.tensor(mean, dtype=f64))
    l2 = [56, 53, 62, 35, 38, 13, 4]
    torch.testing.assert_close(_pool_1d(SAS_INPUT, "l2"), torch.tensor(l2, dtype=f64).sqrt())
    # The same along the height (bottom edge) of a 7x1 column.
    column = torch.tensor(SAS_INPUT).view(1, 1, 7, 1)
    down = pool2d(column, (3, 1), 1, partial_windows=True)
    assert down.flatten().tolist() == [6, 6, 6, 5, 5, 3, 2]


def test_sas_stride_one_keeps_the_input_size():
    # Seed 003, SAS notes: "For pooling strides of 1, you always get an output matrix with the same
    # dimensions as the input matrix", whatever the window, even one wider than the input.
    for size in range(1, 9):
        for kernel in range(1, 11):
            assert pool_output_size(size, kernel, 1, partial_windows=True) == size
    x = torch.randn(1, 1, 3, 3)
    assert pool2d(x, 5, 1, partial_windows=True).shape == (1, 1, 3, 3)


def _brute_force_partial(x, kernel, stride, padding, mode):
    """The definition, window by window: starts at 0, S, 2S, ... (padded coordinates) while the
    start lies before the end of the real input; slices stop at the end of the padded input."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    height, width = x.shape[-2:]
    fill = float("-inf") if mode == "max" else 0.0
    padded = F.pad(x, (pw, pw, ph, ph), value=fill)
    rows = []
    for top in range(0, height + ph, sh):
        row = []
        for left in range(0, width + pw, sw):
            window = padded[..., top : top + kh, left : left + kw].flatten(-2)
            if mode == "max":
                row.append(window.amax(-1))
            elif mode == "avg":
                row.append(window.mean(-1))
            else:
                row.append(window.square().sum(-1).sqrt())
        rows.append(torch.stack(row, -1))
    return torch.stack(rows, -2)


@FAST
@given(pool_cases(), st.sampled_from(POOL_MODES))
def test_partial_windows_match_the_definition(case, mode):
    x, kernel, stride, padding = case
    out = pool2d(x, kernel, stride, padding, mode=mode, partial_windows=True)
    torch.testing.assert_close(out, _brute_force_partial(x, kernel, stride, padding, mode))
    height, width = x.shape[-2:]
    assert out.shape[-2:] == (
        math.ceil((height + padding[0]) / stride[0]),
        math.ceil((width + padding[1]) / stride[1]),
    )


@FAST
@given(pool_cases())
def test_partial_windows_against_ceil_mode(case):
    """PyTorch's ceil_mode keeps a prefix of our windows, all of them when F <= S."""
    x, kernel, stride, padding = case
    ours_max = pool2d(x, kernel, stride, padding, mode="max", partial_windows=True)
    ours_avg = pool2d(x, kernel, stride, padding, mode="avg", partial_windows=True)
    torch_max = F.max_pool2d(x, kernel, stride, padding, ceil_mode=True)
    torch_avg = F.avg_pool2d(x, kernel, stride, padding, ceil_mode=True, count_include_pad=True)
    out_h, out_w = torch_max.shape[-2:]
    # The windows PyTorch keeps are ours, with the same values.
    torch.testing.assert_close(ours_max[..., :out_h, :out_w], torch_max)
    torch.testing.assert_close(ours_avg[..., :out_h, :out_w], torch_avg)
    for axis, (k, s, p) in enumerate(zip(kernel, stride, padding)):
        size = x.shape[2 + axis]
        ours = pool_output_size(size, k, s, p, partial_windows=True)
        ceil_count = min(math.ceil((size + 2 * p - k) / s) + 1, ours)
        assert torch_max.shape[2 + axis] == ceil_count
        if k <= s:
            # Non-overlapping windows: the counts agree.
            assert ours == ceil_count


def test_ceil_mode_drops_the_seeds_overlapping_tail():
    # Seed example: ceil mode keeps ceil((7 - 3) / 1) + 1 = 5 windows, the seed 7.
    x = torch.tensor(SAS_INPUT).view(1, 1, 1, 7)
    assert F.max_pool2d(x, (1, 3), 1, ceil_mode=True).flatten().tolist() == [6, 6, 6, 5, 5]
    assert pool_output_size(7, 3, 1, partial_windows=True) == 7


def test_lp_pool2d_ceil_mode_is_not_l2_over_partial_windows():
    # F.lp_pool2d rescales the cut window's mean by the full window area: over the last window
    # [2] of width 2 it returns sqrt(2 · 2^2) where the root of the sum of squares is 2.
    x = torch.tensor(SAS_INPUT).view(1, 1, 1, 7)
    ours = pool2d(x, (1, 2), mode="l2", partial_windows=True).flatten()
    theirs = F.lp_pool2d(x, 2, (1, 2), ceil_mode=True).flatten()
    torch.testing.assert_close(ours[:3], theirs[:3])
    assert ours[3].item() == 2.0
    assert theirs[3].item() == pytest.approx(math.sqrt(8))


def test_invalid_mode_lists_the_allowed_modes():
    with pytest.raises(ValueError, match="'max', 'avg', 'l2'; got 'mean'"):
        pool2d(torch.zeros(1, 1, 4, 4), 2, mode="mean")


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="kernel_size // 2"):
        pool2d(torch.zeros(1, 1, 4, 4), 2, padding=2)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        pool2d(torch.zeros(4, 4), 2)
    with pytest.raises(TypeError, match="floating-point"):
        pool2d(torch.zeros(1, 1, 4, 4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="does not fit"):
        pool_output_size(3, 5, 1)


def test_pool_output_size_without_partial_windows_floors():
    # Seed 001 §6.4, Fig 6.11: non-overlapping windows, stride = window; 7 // 2 = 3 whole windows.
    assert pool_output_size(7, 2) == 3
    assert pool_output_size(7, 2, partial_windows=True) == 4
    assert pool_output_size(224, 2, 2) == 112
