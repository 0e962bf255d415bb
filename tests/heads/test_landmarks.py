"""Landmark heads: shapes, decoding, soft-argmax sub-pixel accuracy, argument checks."""

import pytest
import torch

from cvtasks.heads.landmarks import soft_argmax
from cvtasks.losses.landmarks import gaussian_heatmaps
from cvtasks.registry import HEADS

# A ResNet-like backbone on a 64x64 input: stages at 1/2 ... 1/32.
INFO = [
    {"num_chs": 8, "reduction": 2, "module": "stem"},
    {"num_chs": 8, "reduction": 4, "module": "s1"},
    {"num_chs": 16, "reduction": 8, "module": "s2"},
    {"num_chs": 32, "reduction": 16, "module": "s3"},
]


def features(batch=2, size=64, info=INFO):
    torch.manual_seed(0)
    return [
        torch.randn(batch, i["num_chs"], size // i["reduction"], size // i["reduction"])
        for i in info
    ]


def test_regression_head_outputs_and_decode():
    head = HEADS.build("keypoint_regression", feature_info=INFO, num_keypoints=5, hidden_dims=[32])
    out = head(features())
    assert out["keypoints"].shape == (2, 5, 2) and out["visibility"].shape == (2, 5)
    points, confidence = head.decode(out)
    torch.testing.assert_close(points, out["keypoints"])
    torch.testing.assert_close(confidence, out["visibility"].sigmoid())
    zero = HEADS.build("keypoint_regression", feature_info=INFO, num_keypoints=3, hidden_dims=[])
    for p in zero.parameters():
        torch.nn.init.zeros_(p)
    assert torch.equal(zero(features())["keypoints"], torch.full((2, 3, 2), 0.5))  # the centre


def test_regression_head_pool_size_keeps_a_grid():
    head = HEADS.build("keypoint_regression", feature_info=INFO, num_keypoints=2, pool_size=2)
    assert head.layers[3].in_features == 32 * 4
    assert head(features())["keypoints"].shape == (2, 2, 2)


@pytest.mark.parametrize(("stride", "cells"), [(4, 16), (8, 8), (2, 32)])
def test_heatmap_head_shapes_and_gradients(stride, cells):
    head = HEADS.build("keypoint_heatmap", feature_info=INFO, num_keypoints=5, stride=stride)
    feats = [f.requires_grad_() for f in features()]
    out = head(feats)
    assert out["heatmaps"].shape == (2, 5, cells, cells)
    points, confidence = head.decode(out)
    assert points.shape == (2, 5, 2) and confidence.shape == (2, 5)
    assert ((confidence >= 0) & (confidence <= 1)).all()
    points.sum().backward()  # soft-argmax is differentiable down to the backbone features
    used = [f for f, i in zip(feats, INFO) if i["reduction"] >= stride]
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in used)


def test_heatmap_head_follows_valid_convolution_sizes():
    # LeNet-5 on 32x32: S2 6@14x14 (1/2), S4 16@5x5 (1/4), C5 120@1x1 (1/4, a valid conv)
    info = [
        {"num_chs": 6, "reduction": 2, "module": "s2"},
        {"num_chs": 16, "reduction": 4, "module": "s4"},
        {"num_chs": 120, "reduction": 4, "module": "c5"},
    ]
    feats = [torch.randn(2, 6, 14, 14), torch.randn(2, 16, 5, 5), torch.randn(2, 120, 1, 1)]
    head = HEADS.build("keypoint_heatmap", feature_info=info, num_keypoints=3, stride=2)
    assert head(feats)["heatmaps"].shape == (2, 3, 14, 14)


def test_heatmap_head_rejects_bad_strides():
    with pytest.raises(ValueError, match="coarser than every backbone stage"):
        HEADS.build("keypoint_heatmap", feature_info=INFO, num_keypoints=5, stride=32)
    with pytest.raises(ValueError, match="power of two"):
        HEADS.build("keypoint_heatmap", feature_info=INFO, num_keypoints=5, stride=3)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        HEADS.build("keypoint_heatmap", feature_info=INFO, num_keypoints=5, stride=0)
    with pytest.raises(ValueError, match="num_keypoints"):
        HEADS.build("keypoint_heatmap", feature_info=INFO, num_keypoints=0)


def test_soft_argmax_is_sub_pixel_on_gaussian_heatmaps():
    torch.manual_seed(0)
    points = torch.rand(1, 200, 2) * 0.7 + 0.15  # keep the Gaussians off the border
    maps = gaussian_heatmaps(points, (16, 16), sigma=2.0)
    error_cells = ((soft_argmax(maps, beta=15.0) - points) * 16).norm(dim=-1)
    assert error_cells.max() < 0.05  # a twentieth of a cell; a plain argmax is off up to 0.7
    argmax = maps.flatten(2).argmax(-1)
    grid = torch.stack([argmax % 16, argmax // 16], dim=-1).float() + 0.5
    assert (grid / 16 - points).mul(16).norm(dim=-1).max() > 0.4


def test_soft_argmax_of_a_single_peak_is_the_cell_centre():
    maps = torch.zeros(1, 1, 4, 8)
    maps[0, 0, 1, 6] = 100.0
    torch.testing.assert_close(soft_argmax(maps, beta=1.0), torch.tensor([[[6.5 / 8, 1.5 / 4]]]))
