"""Segmentation pictures: coloured masks over images."""

import numpy as np
import pytest
import torch

from cvtasks.data.masks import mask_palette
from cvtasks.viz.masks import colorize_mask, draw_segmentation, overlay_mask


def test_colorize_uses_the_voc_palette():
    mask = np.array([[0, 1], [2, 255]])
    picture = np.asarray(colorize_mask(mask))
    np.testing.assert_array_equal(picture, mask_palette()[mask])


def test_overlay_blends_classes_and_leaves_background_and_ignore_alone():
    image = np.full((2, 3, 3), 100, dtype=np.uint8)
    mask = torch.tensor([[0, 1, 255], [2, 2, 0]])
    out = np.asarray(overlay_mask(image, mask, alpha=0.5)).astype(int)
    palette = mask_palette().astype(int)
    assert (out[0, 0] == 100).all() and (out[0, 2] == 100).all() and (out[1, 2] == 100).all()
    np.testing.assert_array_equal(out[0, 1], np.round((100 + palette[1]) / 2))
    np.testing.assert_array_equal(out[1, 0], np.round((100 + palette[2]) / 2))
    opaque = np.asarray(overlay_mask(image, mask, alpha=1.0, transparent=()))
    np.testing.assert_array_equal(opaque, mask_palette()[mask.numpy()])


def test_bad_input_is_refused():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="mask is"):
        overlay_mask(image, np.zeros((4, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="class indices"):
        overlay_mask(image, np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="alpha"):
        overlay_mask(image, np.zeros((4, 4), dtype=np.int64), alpha=2)


def test_draw_segmentation_puts_prediction_and_truth_side_by_side():
    image = np.random.default_rng(0).integers(0, 255, size=(16, 20, 3), dtype=np.uint8)
    pred = np.zeros((16, 20), dtype=np.int64)
    pred[4:10, 5:12] = 1
    truth = pred.copy()
    truth[0:3, 0:3] = 3
    picture = draw_segmentation(image, pred, truth, class_names=["bg", "a", "b", "c"], scale=2)
    assert picture.width == 3 * 40 and picture.height > 32  # three panels, a legend below
    panels = np.asarray(picture)[:32]
    np.testing.assert_array_equal(panels[:, :40:2][::2], image)  # the first panel is the image
    assert not np.array_equal(panels[:, 40:80], panels[:, :40])  # the prediction is drawn
