"""Reference convolutions against PyTorch and the seeds' worked examples."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cvtasks.ops import conv1d_toeplitz, conv2d_reference, toeplitz_matrix

FAST = settings(max_examples=40, deadline=None)
f64 = torch.float64


@st.composite
def conv2d_cases(draw):
    groups = draw(st.integers(1, 3))
    in_chans = groups * draw(st.integers(1, 3))
    out_chans = groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = draw(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2))))
    dilation = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    pads = padding if isinstance(padding, tuple) else (padding, padding)
    dils = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    # Any input at least as large as the dilated window (less the padding) is valid.
    size = [
        max(d * (k - 1) + 1 - 2 * p, 1) + draw(st.integers(0, 6))
        for k, p, d in zip(kernel, pads, dils)
    ]
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(draw(st.integers(1, 2)), in_chans, *size, generator=gen, dtype=f64)
    weight = torch.randn(out_chans, in_chans // groups, *kernel, generator=gen, dtype=f64)
    bias = torch.randn(out_chans, generator=gen, dtype=f64) if draw(st.booleans()) else None
    options = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return x, weight, bias, options


@FAST
@given(conv2d_cases())
def test_conv2d_reference_matches_f_conv2d(case):
    x, weight, bias, kw = case
    torch.testing.assert_close(
        conv2d_reference(x, weight, bias, **kw), F.conv2d(x, weight, bias, **kw)
    )


def test_conv2d_reference_alexnet_im2col_shapes():
    # Seed 003, CS231n notes ("Implementation as Matrix Multiplication"): 227x227x3 input, 96
    # filters of 11x11x3 at stride 4: x_col is [363 x 3025], w_row [96 x 363], the product [96 x
    # 3025], reshaped to 55x55x96.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 227, 227, generator=gen, dtype=f64)
    weight = torch.randn(96, 3, 11, 11, generator=gen, dtype=f64)
    assert F.unfold(x, 11, stride=4).shape == (1, 363, 3025)
    out = conv2d_reference(x, weight, stride=4)
    assert out.shape == (1, 96, 55, 55)
    torch.testing.assert_close(out, F.conv2d(x, weight, stride=4))


def test_conv2d_reference_rejects_bad_groups():
    x = torch.zeros(1, 4, 5, 5)
    with pytest.raises(ValueError, match="groups=3"):
        conv2d_reference(x, torch.zeros(6, 4, 3, 3), groups=3)
    with pytest.raises(ValueError, match=r"weight.shape\[1\]"):
        conv2d_reference(x, torch.zeros(6, 4, 3, 3), groups=2)
    with pytest.raises(ValueError, match="int or a pair"):
        conv2d_reference(x, torch.zeros(6, 4, 3, 3), stride=(1, 2, 3))


@FAST
@given(
    taps=st.integers(1, 5),
    extra=st.integers(0, 8),
    padding=st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3))),
    stride=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_toeplitz_matches_f_conv1d(taps, extra, padding, stride, seed):
    before, after = padding if isinstance(padding, tuple) else (padding, padding)
    length = max(taps - before - after, 1) + extra
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, length, generator=gen, dtype=f64)
    kernel = torch.randn(taps, generator=gen, dtype=f64)
    expected = F.conv1d(
        F.pad(x.unsqueeze(1), (before, after)), kernel.view(1, 1, -1), stride=stride
    )
    torch.testing.assert_close(conv1d_toeplitz(x, kernel, padding, stride), expected.squeeze(1))
    torch.testing.assert_close(
        toeplitz_matrix(kernel, length, padding, stride) @ x[0], expected[0, 0]
    )


def test_toeplitz_is_constant_along_diagonals():
    # Seed 001 §6.2, footnote 4: a Toeplitz matrix has constant values on the diagonals.
    m = toeplitz_matrix(torch.arange(1.0, 4.0), 9, padding=1)
    assert m.shape == (9, 9)
    torch.testing.assert_close(m[1:, 1:], m[:-1, :-1])
    # With stride 2 each row is the previous one shifted right by two.
    m2 = toeplitz_matrix(torch.arange(1.0, 4.0), 9, padding=1, stride=2)
    assert m2.shape == (5, 9)
    torch.testing.assert_close(m2[1:, 2:], m2[:-1, :-2])


def test_seed_toeplitz_matrices_of_polynomial_product():
    # Seed 001 §6.2, eq. 6.3 and the convolution matrix after it: f(r) = f0 + f1 r + f2 r^2 times
    # g(r) = g0 + ... + g5 r^5 is z = T(f) g = T(g) f with the 8x6 and 8x3 matrices printed
    # there. Take f = 1 + 2r + 3r^2 and g = 1 + r + ... + r^5.
    f0, f1, f2 = 1.0, 2.0, 3.0
    g0, g1, g2, g3, g4, g5 = 1.0, 1.0, 1.0, 1.0, 1.0, 1.0
    f = torch.tensor([f0, f1, f2], dtype=f64)
    g = torch.tensor([g0, g1, g2, g3, g4, g5], dtype=f64)
    t_f = torch.tensor(
        [
            [f0, 0, 0, 0, 0, 0],
            [f1, f0, 0, 0, 0, 0],
            [f2, f1, f0, 0, 0, 0],
            [0, f2, f1, f0, 0, 0],
            [0, 0, f2, f1, f0, 0],
            [0, 0, 0, f2, f1, f0],
            [0, 0, 0, 0, f2, f1],
            [0, 0, 0, 0, 0, f2],
        ],
        dtype=f64,
    )
    t_g = torch.tensor(
        [
            [g0, 0, 0],
            [g1, g0, 0],
            [g2, g1, g0],
            [g3, g2, g1],
            [g4, g3, g2],
            [g5, g4, g3],
            [0, g5, g4],
            [0, 0, g5],
        ],
        dtype=f64,
    )
    # The seed's product flips the kernel and pads it fully (the classical convolution, of
    # length 3 + 6 - 1 = 8, eq. 6.5); our cross-correlation gets it from the flipped kernel.
    torch.testing.assert_close(toeplitz_matrix(f.flip(0), 6, padding=2), t_f)
    torch.testing.assert_close(toeplitz_matrix(g.flip(0), 3, padding=5), t_g)
    # (1 + 2r + 3r^2)(1 + r + ... + r^5) = 1 + 3r + 6r^2 + 6r^3 + 6r^4 + 6r^5 + 5r^6 + 3r^7
    z = torch.tensor([1, 3, 6, 6, 6, 6, 5, 3], dtype=f64)
    torch.testing.assert_close(conv1d_toeplitz(g, f.flip(0), padding=2), z)
    torch.testing.assert_close(conv1d_toeplitz(f, g.flip(0), padding=5), z)


def test_sas_convolution_example():
    # Seed 003, SAS notes ("Convolution, Stride, and Padding on CPU"): [2, -1, 0.1] slid over [2, 4,
    # 6, 1, 5, 3, 2] gives five outputs. The seed prints each window's element-wise products ([4,
    # -4, 0.6], ...) and calls them the dot product; the convolution output is their sum.
    x = torch.tensor([2, 4, 6, 1, 5, 3, 2], dtype=f64)
    kernel = torch.tensor([2, -1, 0.1], dtype=f64)
    expected = torch.tensor([4 - 4 + 0.6, 8 - 6 + 0.1, 12 - 1 + 0.5, 2 - 5 + 0.3, 10 - 3 + 0.2])
    torch.testing.assert_close(conv1d_toeplitz(x, kernel), expected.to(f64))
    # Seed 003, SAS notes: one zero on each side keeps 7 outputs.
    padded = conv1d_toeplitz(x, kernel, padding=1)
    torch.testing.assert_close(padded[[0, -1]], torch.tensor([-1.6, 4.0], dtype=f64))
    # Seed 003, SAS notes: the 1x4 filter with one zero on the left and two on the right.
    out = conv1d_toeplitz(x, torch.tensor([2, -1, 0.1, 5], dtype=f64), padding=(1, 2))
    torch.testing.assert_close(out, torch.tensor([28.4, 5.6, 27.1, 26.5, 7.3, 7.2, 4.0], dtype=f64))


def test_toeplitz_rejects_bad_arguments():
    with pytest.raises(ValueError, match="1-D"):
        toeplitz_matrix(torch.ones(2, 2), 5)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        toeplitz_matrix(torch.ones(3), 5, padding=(-1, 1))
    with pytest.raises(ValueError, match="does not fit"):
        toeplitz_matrix(torch.ones(6), 3)
