"""Pair and gallery pictures."""

import numpy as np
import pytest
import torch
from PIL import Image

from cvtasks.viz.pairs import RIGHT, UNKNOWN, WRONG, draw_gallery, draw_pair, to_picture, verdict


def test_to_picture_undoes_normalization_of_tensors():
    pixels = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)
    tensor = torch.from_numpy(pixels).permute(2, 0, 1) / 255 - torch.tensor(mean)[:, None, None]
    tensor = tensor / torch.tensor(std)[:, None, None]
    assert np.array_equal(np.asarray(to_picture(tensor, mean, std)), pixels)
    assert np.array_equal(np.asarray(to_picture(pixels)), pixels)
    assert to_picture(Image.fromarray(pixels[..., 0])).mode == "RGB"
    with pytest.raises(ValueError, match="uint8"):
        to_picture(pixels.astype(np.float32))


def test_verdict_compares_with_the_threshold():
    assert verdict(0.3, 0.3) is True and verdict(0.31, 0.3) is False and verdict(0.1, None) is None


def frame_colour(picture):
    return picture.getpixel((0, 0))


def test_draw_pair_frames_right_wrong_and_unknown_verdicts():
    a = np.zeros((8, 8, 3), np.uint8)
    b = np.full((8, 8, 3), 255, np.uint8)
    right = draw_pair(a, b, 0.2, threshold=0.5, same=True, scale=4)
    assert right.width >= 2 * 8 * 4 + 4 and right.height > 8 * 4
    assert frame_colour(right) == RIGHT
    assert frame_colour(draw_pair(a, b, 0.7, threshold=0.5, same=True)) == WRONG
    assert frame_colour(draw_pair(a, b, 0.7)) == UNKNOWN
    # the images sit inside the frame, enlarged
    assert right.getpixel((2 + 5, 2 + 5)) == (0, 0, 0)
    assert right.getpixel((2 + 8 * 4 + 5, 2 + 5)) == (255, 255, 255)


def test_draw_gallery_puts_the_query_first_and_frames_hits_by_identity():
    query = np.zeros((6, 6, 3), np.uint8)
    gallery = [np.full((6, 6, 3), v, np.uint8) for v in (50, 100, 150)]
    hits = [
        {"identity": "ann", "distance": 0.1, "index": 2},
        {"identity": "bob", "distance": 0.6, "index": 0},
    ]
    strip = draw_gallery(query, hits, gallery, query_identity="ann", threshold=0.5, scale=2)
    query_tile = draw_gallery(query, [], gallery, query_identity="ann", scale=2)
    first = query_tile.width + 4  # where hit 1's tile starts
    assert strip.getpixel((first, 0)) == RIGHT
    assert strip.getpixel((first + 3, 3)) == (150, 150, 150)  # hit 1 shows gallery image 2
    assert strip.getpixel((strip.width - 1, 0)) == WRONG
