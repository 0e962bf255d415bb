"""Mask files: palette and grayscale masks read as class indices, checked, lossy ones refused."""

import numpy as np
import pytest
from PIL import Image

from cvtasks.data.masks import BadMaskError, check_mask, mask_palette, read_mask, write_mask
from tests.data.test_image_masks import edge_mask


def test_palette_png_and_grayscale_masks_read_as_class_indices(tmp_path):
    mask = np.array([[0, 1, 2], [3, 255, 0]], dtype=np.uint8)
    write_mask(tmp_path / "p.png", mask)
    assert Image.open(tmp_path / "p.png").mode == "P"
    Image.fromarray(mask, mode="L").save(tmp_path / "l.png")
    for name in ("p.png", "l.png"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), mask)
    assert tuple(mask_palette()[1]) == (128, 0, 0) and tuple(mask_palette()[255]) == (224, 224, 192)


def test_rgb_mask_is_refused_with_its_name(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    with pytest.raises(BadMaskError, match=r"rgb.png.*single-channel or palette"):
        read_mask(tmp_path / "rgb.png")


def test_check_mask_accepts_the_ignore_index():
    check_mask(np.array([[0, 255], [1, 1]]), (2, 2, 3), 2, "m.png")
    with pytest.raises(BadMaskError, match=r"m.png.*\[2, 254\]"):
        check_mask(np.array([[2, 254], [1, 1]]), (2, 2, 3), 2, "m.png")


def test_a_jpeg_named_png_is_caught_when_read(tmp_path):
    Image.fromarray(edge_mask()).save(tmp_path / "m.png", format="JPEG")
    with pytest.raises(BadMaskError, match=r"m\.png: it is stored as JPEG.*save masks as PNG"):
        read_mask(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png", allow_lossy=True).shape == (16, 16)
