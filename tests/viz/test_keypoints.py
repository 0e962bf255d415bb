"""Keypoints and skeletons drawn with Pillow."""

import numpy as np
import pytest
from PIL import Image

from cvtasks.viz.keypoints import PALETTE, draw_keypoints, draw_landmarks_prediction

POINTS = [[10.5, 10.5], [50.5, 10.5], [30.5, 40.5]]


def test_points_are_drawn_in_their_colours_without_touching_the_input():
    image = np.zeros((60, 64, 3), np.uint8)
    out = np.asarray(draw_keypoints(image, POINTS, radius=3))
    assert out.shape == (60, 64, 3) and image.max() == 0  # a copy is drawn on
    for k, (x, y) in enumerate(POINTS):
        assert tuple(out[int(y), int(x)]) == PALETTE[k]
    assert out[55, 5].max() == 0  # far from everything: untouched


def test_skeleton_edges_join_confident_points_only():
    image = Image.new("RGB", (64, 60))
    both = np.asarray(draw_keypoints(image, POINTS, skeleton=[(0, 1)], radius=2))
    assert both[10, 30].min() == 255  # the middle of edge 0-1 is white
    unsure = draw_keypoints(image, POINTS, [0.9, 0.2, 0.9], skeleton=[(0, 1)], radius=2)
    unsure = np.asarray(unsure)
    assert unsure[10, 30].max() == 0  # no edge to a point below the threshold
    assert unsure[10, 50].max() == 0  # and that point is a hollow ring
    assert unsure[10, 48].max() > 0


def test_prediction_dict_and_names():
    prediction = {
        "keypoints": POINTS,
        "confidence": [1.0, 1.0, 1.0],
        "keypoint_names": ["left_eye", "right_eye", "nose"],
    }
    plain = np.asarray(draw_landmarks_prediction(Image.new("L", (64, 60)), prediction))
    named = np.asarray(
        draw_landmarks_prediction(Image.new("L", (64, 60)), prediction, with_names=True)
    )
    assert plain.shape == (60, 64, 3) and (named != plain).any()
    with pytest.raises(ValueError, match="2 confidences for 3 points"):
        draw_keypoints(Image.new("RGB", (8, 8)), POINTS, [1.0, 1.0])
