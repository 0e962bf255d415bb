"""Boxes and labels drawn with Pillow."""

import numpy as np
import pytest
from PIL import Image

from cvtasks.viz.boxes import (
    CLASS_COLOURS,
    PREDICTION_COLOUR,
    TRUTH_COLOUR,
    class_colour,
    draw_box,
    draw_detections,
    draw_prediction,
)


def grey(size=(40, 30)):
    return np.full((size[1], size[0], 3), 100, dtype=np.uint8)


def test_box_outline_is_drawn_where_the_box_is_and_the_input_is_untouched():
    image = grey()
    picture = draw_box(image, [10, 12, 20, 22], None, colour=(255, 0, 0), width=1)
    pixels = np.asarray(picture)
    assert picture.size == (40, 30) and picture.mode == "RGB"
    assert tuple(pixels[12, 15]) == (255, 0, 0)  # top edge
    assert tuple(pixels[21, 15]) == (255, 0, 0)  # bottom edge (x_max, y_max exclusive)
    assert tuple(pixels[17, 10]) == (255, 0, 0) and tuple(pixels[17, 19]) == (255, 0, 0)
    assert tuple(pixels[17, 15]) == (100, 100, 100)  # inside stays
    assert tuple(pixels[5, 5]) == (100, 100, 100)  # outside stays
    assert np.all(image == 100)


def test_label_tag_and_scale():
    picture = draw_box(Image.fromarray(grey()), [10, 12, 20, 22], "7 0.98", scale=4)
    assert picture.size == (160, 120)
    pixels = np.asarray(picture)
    colour = np.all(pixels == PREDICTION_COLOUR, axis=-1)
    assert colour[48, 40:80].all()  # the outline at 4x
    assert colour[:48, 40:60].any()  # the tag sits above the box
    assert (pixels.min(axis=-1) > 200).any()  # light label text


def test_nothing_draws_the_label_only():
    picture = draw_box(grey(), None, "nothing 0.91", scale=2)
    pixels = np.asarray(picture)
    colour = np.all(pixels == PREDICTION_COLOUR, axis=-1)
    assert colour[:10, :10].any() and not colour[40:, :].any()


def test_prediction_with_truth_draws_both():
    prediction = {"class_name": "3", "probability": 0.9, "box": [5, 5, 15, 15]}
    truth = {"class_name": "3", "box": [20, 10, 30, 25]}
    pixels = np.asarray(draw_prediction(grey(), prediction, truth, scale=2))
    assert np.all(pixels == TRUTH_COLOUR, axis=-1)[20:50, 40:60].any()
    assert np.all(pixels == PREDICTION_COLOUR, axis=-1)[10:30, 10:30].any()


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="scale"):
        draw_box(grey(), [0, 0, 1, 1], scale=0)
    with pytest.raises(ValueError, match="uint8"):
        draw_box(np.zeros((4, 4), dtype=np.float32), [0, 0, 1, 1])


def test_dashed_outline_alternates_colour_and_image():
    picture = draw_box(
        grey((60, 30)), [5, 10, 55, 25], None, colour=(255, 0, 0), width=1, dashed=True
    )
    top = np.all(np.asarray(picture)[10, 5:54] == (255, 0, 0), axis=-1)
    assert 0.3 < top.mean() < 0.7  # dashes (5 pixels at width 1) and gaps of equal length
    assert top[:5].all() and not top[7:10].any()


def test_class_colours_are_distinct_and_cycle():
    colours = [class_colour(k) for k in range(len(CLASS_COLOURS))]
    assert len(set(colours)) == len(CLASS_COLOURS)
    assert class_colour(len(CLASS_COLOURS) + 3) == class_colour(3)


def test_detections_drawn_in_class_colours_with_truth_dashed():
    detections = [
        {"label": 0, "class_name": "cat", "score": 0.5, "box": [2, 2, 12, 12]},
        {"label": 1, "class_name": "dog", "score": 0.9, "box": [20, 10, 36, 26]},
    ]
    truth = [{"label": 1, "box": [18, 8, 38, 28]}]
    picture = draw_detections(grey(), detections, truth, scale=2)
    pixels = np.asarray(picture)
    assert picture.size == (80, 60)
    cat, dog = (np.all(pixels == class_colour(k), axis=-1) for k in (0, 1))
    assert cat[23, 6:22].all()  # the cat box's bottom edge, solid
    assert dog[51, 42:70].all()  # the dog box's bottom edge, solid
    true_bottom = dog[55, 36:76]  # the true dog box's bottom edge, dashed
    assert 0.3 < true_bottom.mean() < 0.7
    assert tuple(pixels[36, 56]) == (100, 100, 100)  # inside the boxes: the image
    assert (pixels.min(axis=-1) > 200).any()  # the tags' light text
    assert np.all(pixels[23, 6:22] != PREDICTION_COLOUR)  # class colours, not the fixed one
