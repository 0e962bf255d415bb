"""Window grid, weight maps, blending and box merging of tiled prediction."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from cvtasks.tiling import (
    Tiling,
    blend_windows,
    drop_cut_boxes,
    make_tiling,
    merge_detections,
    pad_to,
    tiled_detections,
    tiled_log_probabilities,
    weight_map,
    window_grid,
    window_starts,
)

SHAPES = [(64, 64), (100, 173), (64, 65), (30, 200), (17, 9), (257, 128)]


@pytest.mark.parametrize("height,width", SHAPES)
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.9])
def test_the_grid_covers_every_pixel_with_windows_inside_the_padded_image(height, width, overlap):
    tiling = Tiling((64, 48), overlap)
    image = pad_to(torch.zeros(1, 3, height, width), tiling.size)
    padded_h, padded_w = image.shape[-2:]
    assert (padded_h, padded_w) == (max(height, 64), max(width, 48))
    covered = torch.zeros(padded_h, padded_w, dtype=torch.int64)
    origins = window_grid(padded_h, padded_w, tiling)
    for top, left in origins:
        assert top >= 0 and left >= 0
        assert top + 64 <= padded_h and left + 48 <= padded_w
        covered[top : top + 64, left : left + 48] += 1
    assert covered.min() >= 1
    for starts, stride in (
        (sorted({t for t, _ in origins}), tiling.stride[0]),
        (sorted({x for _, x in origins}), tiling.stride[1]),
    ):
        assert starts[0] == 0
        assert all(0 < b - a <= stride for a, b in itertools.pairwise(starts))  # stride apart


def test_window_starts_step_by_the_stride_and_end_at_the_edge():
    assert window_starts(256, 64, 48) == [0, 48, 96, 144, 192]
    assert window_starts(250, 64, 48) == [0, 48, 96, 144, 186]  # the last one moved back inside
    assert window_starts(40, 64, 48) == [0]
    assert Tiling((64, 64), 0.25).stride == (48, 48)
    assert Tiling((64, 30), 0.99).stride == (1, 1)


@pytest.mark.parametrize("blend", ["gaussian", "linear"])
def test_weight_maps_are_positive_and_largest_at_the_centre(blend):
    weights = weight_map((64, 48), blend)
    assert weights.shape == (64, 48) and weights.min() > 0
    assert weights.max() == pytest.approx(1.0, abs=1e-3)
    assert weights[32, 24] > weights[5, 24] > weights[0, 24]  # falls off towards the edge
    assert torch.allclose(weights, weights.flip(0)) and torch.allclose(weights, weights.flip(1))
    with pytest.raises(ValueError, match="tile_blend='box': choose one of gaussian, linear"):
        weight_map((8, 8), "box")


@pytest.mark.parametrize("blend", ["gaussian", "linear"])
@pytest.mark.parametrize("height,width", SHAPES)
def test_blending_constant_maps_gives_the_constant(blend, height, width):
    constant = torch.tensor([0.2, -1.5, 3.0])

    def forward(windows: torch.Tensor) -> torch.Tensor:
        return constant.view(1, 3, 1, 1).expand(len(windows), 3, *windows.shape[-2:])

    tiling = Tiling((32, 32), 0.3, blend, batch=3)
    blended = blend_windows(forward, torch.randn(1, 3, height, width), tiling)
    assert blended.shape == (1, 3, height, width)
    assert torch.allclose(blended, constant.view(1, 3, 1, 1).expand_as(blended), atol=1e-6)


def test_identity_windows_blend_back_into_the_image():
    image = torch.randn(1, 2, 90, 131)
    for blend in ("gaussian", "linear"):
        out = blend_windows(lambda w: w, image, Tiling((32, 40), 0.5, blend, batch=5))
        assert torch.allclose(out, image, atol=1e-5)


@pytest.mark.parametrize("blend", ["gaussian", "linear"])
def test_a_per_pixel_network_gives_the_whole_image_output(blend):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    image = torch.randn(1, 3, 150, 97)
    with torch.no_grad():
        whole = net(image).softmax(dim=1)
        tiled = tiled_log_probabilities(net, image, Tiling((64, 64), 0.25, blend)).exp()
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_make_tiling_checks_every_value_in_one_line():
    assert make_tiling(64, 0.25, "gaussian", 4) == Tiling((64, 64), 0.25, "gaussian", 4)
    assert make_tiling([64, 32], 0, "linear", 1).size == (64, 32)
    cases = {
        (0, 0.25, "gaussian", 4): "tile=0: give the window size in pixels",
        ("64", 0.25, "gaussian", 4): "tile='64': give the window size",
        (64, 1.0, "gaussian", 4): r"overlap=1.0: give a fraction in \[0, 1\)",
        (64, 0.2, "box", 4): "tile_blend='box': choose one of gaussian, linear",
        (64, 0.2, "linear", 0): "tile_batch=0: give a positive int",
    }
    for args, message in cases.items():
        with pytest.raises(ValueError, match=message):
            make_tiling(*args)


def test_a_small_image_is_padded_by_reflection_or_zeros():
    image = torch.arange(12.0).view(1, 1, 3, 4)
    reflected = pad_to(image, (5, 6))
    assert reflected.shape == (1, 1, 5, 6)
    assert torch.equal(reflected[..., :3, :4], image)
    assert torch.equal(reflected[0, 0, 3, :4], image[0, 0, 1])  # row 3 mirrors row 1
    zeros = pad_to(image, (16, 6))  # too small to mirror 13 rows
    assert zeros.shape == (1, 1, 16, 6) and zeros[..., 3:, :].abs().sum() == 0


def test_a_box_cut_by_an_inner_window_edge_goes_when_another_window_holds_it_whole():
    windows = torch.tensor([[0.0, 0.0, 64.0, 64.0], [48.0, 0.0, 112.0, 64.0]])
    boxes = torch.tensor(
        [
            [50.0, 10.0, 64.0, 30.0],  # cut by window 0's right edge, whole in window 1: dropped
            [50.0, 10.0, 70.0, 30.0],  # the same object as window 1 sees it: kept
            [0.0, 40.0, 20.0, 60.0],  # touches the image's left edge only: kept
            [30.0, 5.0, 64.0, 20.0],  # cut at 64, but starts before window 1: nobody sees it whole
            [90.0, 5.0, 112.0, 20.0],  # at the image's right edge (112): kept
        ]
    )
    window = torch.tensor([0, 1, 0, 0, 1])
    keep = drop_cut_boxes(boxes, window, windows, image_size=(64, 112))
    assert keep.tolist() == [False, True, True, True, True]


def test_merged_detections_are_in_the_image_frame_and_deduplicated():
    tiling = Tiling((64, 64), 0.25)
    origins = [(0, 0), (0, 48)]
    found = [  # one object at x 52..60 (image) seen by both windows, one only by the second
        {
            "boxes": torch.tensor([[52.0, 10.0, 60.0, 20.0]]),
            "scores": torch.tensor([0.8]),
            "labels": torch.tensor([2]),
        },
        {
            "boxes": torch.tensor([[4.0, 10.0, 12.0, 20.0], [40.0, 30.0, 70.0, 50.0]]),
            "scores": torch.tensor([0.9, 0.6]),
            "labels": torch.tensor([2, 1]),
        },
    ]
    merged = merge_detections(found, origins, tiling, (64, 112), nms_iou=0.5, max_detections=10)
    assert merged["boxes"].tolist() == [[52.0, 10.0, 60.0, 20.0], [88.0, 30.0, 112.0, 50.0]]
    assert merged["scores"].tolist() == pytest.approx([0.9, 0.6])
    assert merged["labels"].tolist() == [2, 1]
    fewer = merge_detections(found, origins, tiling, (64, 112), nms_iou=0.5, max_detections=1)
    assert fewer["labels"].tolist() == [2]


def test_tiled_detections_of_a_window_detector_land_on_the_objects():
    """A detector that boxes the bright pixels of each window, over an image with three
    bright squares: every square found once, in image pixels, whatever window saw it."""
    image = torch.zeros(1, 3, 150, 230)
    squares = [(10, 20, 30, 40), (100, 60, 124, 90), (40, 190, 60, 225)]  # y1, x1, y2, x2
    for y1, x1, y2, x2 in squares:
        image[..., y1:y2, x1:x2] = 1.0

    def detect(windows: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        found = []
        for window in windows:
            bright = window[0] > 0.5
            rows, cols = bright.any(1).nonzero()[:, 0], bright.any(0).nonzero()[:, 0]
            boxes = torch.zeros(0, 4)
            if len(rows):  # one box per connected run is enough for squares far apart
                blocks = _runs(rows), _runs(cols)
                boxes = torch.tensor(
                    [
                        [c0, r0, c1 + 1, r1 + 1]
                        for r0, r1 in blocks[0]
                        for c0, c1 in blocks[1]
                        if bright[r0 : r1 + 1, c0 : c1 + 1].all()
                    ],
                    dtype=torch.float32,
                ).reshape(-1, 4)
            found.append(
                {
                    "boxes": boxes,
                    "scores": torch.full((len(boxes),), 0.9),
                    "labels": torch.zeros(len(boxes), dtype=torch.int64),
                }
            )
        return found

    merged = tiled_detections(detect, image, Tiling((64, 64), 0.5, batch=4), 0.5, 100)
    expected = sorted([float(x1), float(y1), float(x2), float(y2)] for y1, x1, y2, x2 in squares)
    assert sorted(merged["boxes"].tolist()) == expected


def _runs(index: torch.Tensor) -> list[tuple[int, int]]:
    """Consecutive runs ``(first, last)`` of sorted indices."""
    runs: list[tuple[int, int]] = []
    for value in index.tolist():
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs
