"""ImageMaskDataset: a sample's keys and values, the in-memory cache, bad pairs."""

import numpy as np
import pytest
import torch
from PIL import Image

from cvtasks.data.mask_dataset import ImageMaskDataset
from cvtasks.data.masks import BadMaskError, write_mask


def zeroing(image, mask):
    """A transform that writes into its inputs, as some albumentations ops may."""
    out = {"image": torch.from_numpy(image.copy()).permute(2, 0, 1).float(), "mask": mask.copy()}
    image[:] = 0
    mask[:] = 0
    return out


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, (6, 8), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    write_mask(tmp_path / "a_mask.png", mask)
    return (str(tmp_path / "a.png"), str(tmp_path / "a_mask.png")), image, mask


@pytest.mark.parametrize("cache_images", [False, True])
def test_a_sample_holds_the_files_values_however_often_it_is_read(pair, cache_images):
    paths, image, mask = pair
    data = ImageMaskDataset([paths], zeroing, num_classes=3, cache_images=cache_images)
    for _ in range(2):  # the transform zeroes what it gets: the cache must hand out copies
        sample = data[0]
        assert sample["image"].permute(1, 2, 0).numpy().astype(np.uint8).tolist() == image.tolist()
        assert sample["mask"].dtype == torch.int64 and sample["mask"].tolist() == mask.tolist()
        assert sample["orig_size"].tolist() == [6, 8] and sample["path"] == paths[0]


@pytest.mark.parametrize("cache_images", [False, True])
def test_original_mask_is_the_files_mask_untouched_by_the_transform(pair, cache_images):
    paths, _, mask = pair
    data = ImageMaskDataset(
        [paths], zeroing, num_classes=3, cache_images=cache_images, original_mask=True
    )
    for _ in range(2):  # the transform zeroes the arrays it gets, not the original mask
        original = data[0]["orig_mask"]
        assert original.dtype == torch.uint8 and original.numpy().tolist() == mask.tolist()
    assert "orig_mask" not in ImageMaskDataset([paths], zeroing, num_classes=3)[0]


def test_an_image_without_a_mask_is_an_error_or_skipped(pair):
    (image_path, _), _, _ = pair
    with pytest.raises(BadMaskError, match="no mask"):
        ImageMaskDataset([(image_path, None)], zeroing, num_classes=3)[0]
    skipping = ImageMaskDataset([(image_path, None)], zeroing, num_classes=3, on_bad_image="skip")
    with pytest.warns(UserWarning, match="no mask"):
        assert skipping[0] is None


def test_mask_values_past_the_classes_name_the_file(pair):
    paths, _, _ = pair
    with pytest.raises(BadMaskError, match=r"a_mask\.png"):
        ImageMaskDataset([paths], zeroing, num_classes=2)[0]
