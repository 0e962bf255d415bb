import pytest
import torch
import torch.nn.functional as F

from cvtasks.layers import GlobalPool, PartialWindowPool2d

# seed 003 SAS notes (pooling padding): a 1x7 pooling input
SEED_INPUT = torch.tensor([2.0, 4.0, 6.0, 1.0, 5.0, 3.0, 2.0]).view(1, 1, 1, 7)


def test_seed_partial_windows_max():
    # seed 003 SAS notes: a 1x3 window at stride 1, cut at the right edge
    out = PartialWindowPool2d((1, 3), stride=1, mode="max")(SEED_INPUT)
    torch.testing.assert_close(out.flatten(), torch.tensor([6.0, 6, 6, 5, 5, 3, 2]))


def test_seed_partial_windows_mean_divides_by_real_elements():
    # seed 003 SAS notes: the sixth window averages two values, the seventh one
    out = PartialWindowPool2d((1, 3), stride=1, mode="avg")(SEED_INPUT)
    expected = [12 / 3, 11 / 3, 12 / 3, 9 / 3, 10 / 3, 5 / 2, 2 / 1]
    torch.testing.assert_close(out.flatten(), torch.tensor(expected))


def test_partial_window_pool_equals_max_pool_when_windows_tile():
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(PartialWindowPool2d(2)(x), F.max_pool2d(x, 2))
    odd = torch.randn(2, 3, 7, 7)  # the last row/column form 1x2, 2x1 and 1x1 windows
    torch.testing.assert_close(PartialWindowPool2d(2)(odd), F.max_pool2d(odd, 2, ceil_mode=True))
    with pytest.raises(ValueError, match="mode"):
        PartialWindowPool2d(2, mode="median")


@pytest.mark.parametrize(
    ("mode", "oracle"),
    [
        ("avg", lambda x: F.adaptive_avg_pool2d(x, 1)),
        ("max", lambda x: F.adaptive_max_pool2d(x, 1)),
        ("avgmax", lambda x: (F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, 1)) / 2),
        (
            "catavgmax",
            lambda x: torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], 1),
        ),
    ],
)
def test_global_pool_modes(mode, oracle):
    x = torch.randn(2, 5, 4, 3)
    expected = oracle(x)
    torch.testing.assert_close(GlobalPool(mode, flatten=False)(x), expected)
    pool = GlobalPool(mode)
    assert pool(x).shape == (2, 5 * pool.feat_mult())
    torch.testing.assert_close(pool(x), expected.flatten(1))
    assert pool.feat_mult() == (2 if mode == "catavgmax" else 1)


def test_global_pool_rejects_unknown_mode():
    with pytest.raises(ValueError, match="catavgmax"):
        GlobalPool("mean")


@pytest.mark.parametrize("layer", [GlobalPool("catavgmax"), PartialWindowPool2d(3, 2, mode="l2")])
def test_channels_last_forward_backward(layer):
    x = torch.rand(2, 4, 7, 7) + 0.1
    expected = layer(x)
    xc = x.to(memory_format=torch.channels_last).requires_grad_()
    out = layer(xc)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert xc.grad is not None and torch.isfinite(xc.grad).all()
