"""Feature maps (seed 001 Fig 6.12): layer capture, receptive fields, top patches, the pictures."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from cvtasks.registry import BACKBONES
from cvtasks.viz.feature_maps import (
    activation_grid,
    find_layer,
    layer_output,
    patch_grid,
    receptive_box,
    top_patches,
)


class TwoConvs(nn.Module):
    """conv 3x3/1 then conv 3x3/2 (padding 1), all weights 1: a known receptive field."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 2, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(2, 2, 3, stride=2, padding=1, bias=False)
        self.after = nn.Conv2d(2, 2, 1)
        for conv in (self.conv1, self.conv2):
            nn.init.ones_(conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(self.conv2(self.conv1(x)))


def test_receptive_box_follows_padding_and_stride():
    net, image = TwoConvs().eval(), torch.rand(3, 16, 16)
    # conv2 output (2, 2) sees conv1 rows 3..5, which see input rows 2..6
    assert receptive_box(net, "conv2", image, 0, 2, 2) == (2, 2, 7, 7)
    assert receptive_box(net, "conv2", image, 1, 0, 0) == (0, 0, 3, 3)  # clipped by padding
    assert receptive_box(net, "conv1", image, 0, 5, 9) == (8, 4, 11, 7)


def test_layer_output_stops_at_the_layer_and_names_bad_layers():
    net = TwoConvs()
    net.after.register_forward_hook(lambda *a: pytest.fail("the network ran past the layer"))
    assert layer_output(net, "conv2", torch.rand(2, 3, 16, 16)).shape == (2, 2, 8, 8)
    with pytest.raises(KeyError, match="Did you mean: conv2"):
        find_layer(net, "conv3")


def test_single_image_patches_rank_its_positions():
    net = TwoConvs().eval()
    image = torch.zeros(1, 3, 16, 16)
    image[0, :, 10, 4] = 1.0  # one bright pixel: conv2's strongest neurons surround it
    ranked = top_patches(net, "conv2", image, channels=[0], k=3)[0]
    assert len(ranked) == 3 and all(p.image == 0 for p in ranked)
    assert ranked[0].value >= ranked[1].value >= ranked[2].value
    x0, y0, x1, y1 = ranked[0].box
    assert x0 <= 4 < x1 and y0 <= 10 < y1


def test_folder_patches_take_each_images_maximum():
    net = TwoConvs().eval()
    images = torch.zeros(3, 3, 16, 16)
    for i, level in enumerate([0.2, 0.9, 0.5]):
        images[i, :, 3 + i, 3 + i] = level
    ranked = top_patches(net, "conv2", images, channels=[1], k=2, batch_size=2)[1]
    assert [p.image for p in ranked] == [1, 2]  # the brightest images, once each
    # all 9 taps of 2 conv1 channels, each 3 input channels x the pixel: 54 x 0.9
    assert ranked[0].value == pytest.approx(0.9 * 3 * 9 * 2)


def test_real_backbone_and_pictures():
    torch.manual_seed(0)
    net = BACKBONES.build("resnet18", num_classes=0).eval()
    images = torch.randn(2, 3, 64, 64)
    ranked = top_patches(net, "layer1.0.conv1", images, channels=[3, 7], k=2)
    for patch in ranked[3] + ranked[7]:
        x0, y0, x1, y1 = patch.box
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        assert (x1 - x0) <= 19  # stem 7x7/2, max-pool 3x3/2, 3x3: at most 19 pixels wide
    with torch.no_grad():
        fmap = layer_output(net, "layer1", images[:1])[0]
    grid = activation_grid(fmap, cell=32)
    assert grid.size == (8 * 34, 8 * 34)  # 64 channels of 16x16 enlarged 2x, in an 8x8 grid
    assert activation_grid(fmap, [3, 7], cell=32).size == (2 * 34, 1 * 34)
    pictures = [Image.new("RGB", (64, 64), "gray")] * 2
    assert patch_grid(pictures, ranked, size=40).size == (56 + 2 * 42, 2 * 42)
