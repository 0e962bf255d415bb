"""Image + mask folders: pairing, classes, splits, augmentation, and bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

from cvtasks.data.image_masks import ImageMaskDataModule
from cvtasks.data.images import BadImageWarning
from cvtasks.data.masks import BadMaskError, LossyMaskWarning, read_mask, write_mask
from cvtasks.data.scan import DataScanWarning, DuplicateFileError
from cvtasks.registry import DATASETS
from tests.data.conftest import deadline, make_fifo


def write_pair(folder, name, mask, image=None, suffix=".png"):
    """Write ``folder/images/<name><suffix>`` and ``folder/masks/<name>.png``."""
    mask = np.asarray(mask, dtype=np.uint8)
    if image is None:
        image = np.stack([mask * 40, 255 - mask * 40, np.full_like(mask, 90)], axis=-1)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(folder / "images" / f"{name}{suffix}")
    write_mask(folder / "masks" / f"{name}.png", mask)


def left_right_mask(height=6, width=8, right=2):
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[:, width // 2 :] = right
    return mask


def build(root, **kw):
    kw = {"image_size": [6, 8], "batch_size": 4, **kw}
    data = DATASETS.build("image_masks", root=root, **kw)
    data.setup("fit")
    return data


def test_split_folders_classes_txt_and_samples(tmp_path):
    for split, count in (("train", 3), ("val", 2), ("test", 1)):
        for i in range(count):
            write_pair(tmp_path / split, f"{split}{i}", left_right_mask(right=1 + i % 2))
    (tmp_path / "classes.txt").write_text("background\nleft\nright\n")
    data = build(tmp_path)
    assert data.class_names == ["background", "left", "right"]
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [3, 2, 1]
    sample = data.train_dataset[1]
    assert sample["image"].shape == (3, 6, 8) and sample["mask"].dtype == torch.int64
    assert sample["mask"].unique().tolist() == [0, 2]
    assert sample["orig_size"].tolist() == [6, 8]
    batch = next(iter(data.val_dataloader()))
    assert batch["mask"].shape == (2, 6, 8) and batch["orig_size"].shape == (2, 2)
    assert batch["skipped"].item() == 0 and batch["path"][0].endswith("val0.png")


def test_the_test_split_carries_each_mask_as_read_for_scoring_at_its_size(tmp_path):
    sizes = [(6, 8), (9, 5), (12, 20)]  # (height, width): the loader resizes them all to 6x8
    for split in ("train", "val", "test"):
        for i, (height, width) in enumerate(sizes):
            write_pair(tmp_path / split, f"{i}", left_right_mask(height, width, right=1 + i % 2))
    data = build(tmp_path)
    batch = next(iter(data.test_dataloader()))
    assert batch["mask"].shape == (3, 6, 8)
    originals = batch["orig_mask"]  # a list: the sizes differ
    assert [tuple(m.shape) for m in originals] == sizes
    for i, mask in enumerate(originals):
        expected = left_right_mask(*sizes[i], right=1 + i % 2)
        assert mask.dtype == torch.uint8 and mask.numpy().tolist() == expected.tolist()
    # training and validation batches are scored at the training size: no original masks
    assert "orig_mask" not in next(iter(data.train_dataloader()))
    assert "orig_mask" not in next(iter(data.val_dataloader()))


def test_flat_layout_is_split_by_seed_and_classes_come_from_the_masks(tmp_path):
    for i in range(20):
        write_pair(tmp_path, f"{i:02d}", left_right_mask(right=1 + i % 3), suffix=".jpg")
    first = build(tmp_path, val_fraction=0.2, test_fraction=0.1, split_seed=3)
    again = build(tmp_path, val_fraction=0.2, test_fraction=0.1, split_seed=3)
    assert first.class_names == ["0", "1", "2", "3"]  # no classes.txt: 0 .. largest value
    assert [len(first.splits[s]) for s in ("train", "val", "test")] == [14, 4, 2]
    assert first.splits == again.splits
    assert all(img.endswith(".jpg") and mask.endswith(".png") for img, mask in first.splits["val"])


def test_flip_moves_the_mask_with_the_image_and_keeps_nearest_values(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.choice([0, 1, 3, 255], size=(6, 8)).astype(np.uint8)
    image = rng.integers(0, 255, size=(6, 8, 3), dtype=np.uint8)
    write_pair(tmp_path / "train", "a", mask, image)
    write_pair(tmp_path / "val", "a", mask, image)
    write_pair(tmp_path / "test", "a", mask, image)
    (tmp_path / "classes.txt").write_text("0\n1\n2\n3\n")
    data = build(tmp_path, augment=[{"name": "HorizontalFlip", "p": 1.0}])
    plain, flipped = data.val_dataset[0], data.train_dataset[0]
    torch.testing.assert_close(flipped["image"], plain["image"].flip(-1))
    torch.testing.assert_close(flipped["mask"], torch.as_tensor(mask[:, ::-1].copy()).long())
    # Resampling with a smooth augmentation still yields only values the mask had.
    data = build(
        tmp_path,
        image_size=[13, 17],
        augment=[{"name": "Affine", "rotate": [20, 20], "scale": 1.3, "p": 1.0}],
    )
    assert set(data.train_dataset[0]["mask"].unique().tolist()) <= {0, 1, 3, 255}


def make_bad(tmp_path, problem):
    """A dataset folder whose train split has one pair with ``problem``; returns the bad file."""
    for split in ("train", "val", "test"):
        for i in range(3):
            write_pair(tmp_path / split, f"{i}", left_right_mask(right=1))
    (tmp_path / "classes.txt").write_text("a\nb\n")
    train = tmp_path / "train"
    if problem == "size":
        write_mask(train / "masks" / "1.png", np.zeros((5, 8), dtype=np.uint8))
        return train / "masks" / "1.png"
    if problem == "values":
        write_mask(train / "masks" / "1.png", left_right_mask(right=7))
        return train / "masks" / "1.png"
    (train / "masks" / "1.png").unlink()
    return train / "images" / "1.png"


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("size", r"is 8x5 \(WxH\) but its image is 8x6"),
        ("values", r"values \[7\] outside the 2 classes 0-1"),
        ("missing", r"1 image\(s\) have no mask"),
    ],
)
def test_bad_pairs_raise_an_error_naming_the_file(tmp_path, problem, message):
    bad = make_bad(tmp_path, problem)
    with pytest.raises((BadMaskError, FileNotFoundError), match=message) as info:
        data = build(tmp_path)
        for _ in data.train_dataloader():
            pass
    assert str(bad) in str(info.value)


@pytest.mark.parametrize("problem", ["size", "values", "missing"])
def test_bad_pairs_are_skipped_and_counted_on_request(tmp_path, problem):
    make_bad(tmp_path, problem)
    data = build(tmp_path, on_bad_image="skip")
    with pytest.warns(BadImageWarning, match="bad mask"):
        batches = list(data.train_dataloader())
    assert sum(int(b["skipped"]) for b in batches) == 1
    assert sum(len(b["mask"]) for b in batches) == 2


def test_layout_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build(tmp_path / "nowhere")
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match=r"masks is missing"):
        build(tmp_path)
    write_pair(tmp_path, "x", left_right_mask(), suffix=".png")
    Image.new("RGB", (8, 6)).save(tmp_path / "images" / "x.jpg")
    with pytest.raises(ValueError, match="have the same name"):
        build(tmp_path)


def test_all_skipped_batch_is_empty_with_the_right_shapes(tmp_path):
    data = ImageMaskDataModule(tmp_path, image_size=[6, 8])
    out = next(iter(data._loader([None, None], "train", shuffle=False)))
    assert out["image"].shape == (0, 3, 6, 8) and out["mask"].shape == (0, 6, 8)
    assert out["orig_size"].shape == (0, 2) and out["skipped"].item() == 2


# -- lossy masks, EXIF, links and special files --------------------------------------------------
def edge_mask():
    """Class 1 left, class 3 right: JPEG invents 2s and 4s along the edge."""
    mask = np.ones((16, 16), dtype=np.uint8)
    mask[:, 5:] = 3
    return mask


def write_jpeg_masks(root, count=4):
    for i in range(count):
        write_pair(root, f"{i}", edge_mask())
        (root / "masks" / f"{i}.png").unlink()
        Image.fromarray(edge_mask()).save(root / "masks" / f"{i}.jpg", quality=75)
    (root / "classes.txt").write_text("a\nb\nc\nd\ne\n")


def test_jpeg_masks_are_refused_in_one_line_naming_the_file_and_the_fix(tmp_path):
    write_jpeg_masks(tmp_path)
    with pytest.raises(ValueError) as info:
        build(tmp_path)
    message = str(info.value)
    assert message.startswith("data.lossy_masks: 4 mask(s) are stored in a lossy format")
    assert str(tmp_path / "masks" / "0.jpg") in message and "(JPEG)" in message
    assert "save masks as PNG" in message and "data.lossy_masks=allow" in message
    assert "\n" not in message


def test_lossy_masks_allow_reads_them_with_a_warning(tmp_path):
    write_jpeg_masks(tmp_path)
    with pytest.warns(LossyMaskWarning, match=r"4 mask\(s\) .*lossy.*data\.lossy_masks=allow"):
        data = build(tmp_path, lossy_masks="allow", val_fraction=0.25, test_fraction=0.25)
    _, mask = data.train_dataset.load(0)
    assert set(np.unique(mask).tolist()) == {1, 2, 3, 4}  # 2 and 4: made by the JPEG codec


def test_lossy_masks_and_follow_links_are_checked_by_the_datamodule(tmp_path):
    with pytest.raises(ValueError, match=r"data\.lossy_masks must be one of 'error', 'allow'"):
        ImageMaskDataModule(tmp_path, lossy_masks="warn")
    with pytest.raises(ValueError, match=r"data\.follow_links must be one of False, True"):
        ImageMaskDataModule(tmp_path, follow_links="sometimes")


def test_a_mask_in_the_unrotated_frame_of_an_exif_rotated_image_is_explained(tmp_path):
    for i in range(3):
        write_pair(tmp_path, f"{i}", left_right_mask(height=6, width=8, right=1))
    exif = Image.Exif()
    exif[274] = 6  # "rotate 90° clockwise": the image reads as 6 wide, 8 high
    Image.new("RGB", (8, 6)).save(tmp_path / "images" / "1.png", exif=exif)
    data = build(tmp_path, val_fraction=0, test_fraction=0)
    with pytest.raises(BadMaskError) as info:
        for _ in data.train_dataloader():
            pass
    message = str(info.value)
    assert (
        str(tmp_path / "masks" / "1.png") in message
        and "is 8x6 (WxH) but its image is 6x8" in message
    )
    assert "EXIF orientation tag (6: rotated 90° clockwise)" in message and "displayed" in message


def test_an_image_in_two_splits_through_a_link_is_an_error(tmp_path):
    for split in ("train", "test"):
        for i in range(2):
            write_pair(tmp_path / split, f"{split}{i}", left_right_mask(right=1))
    leak = tmp_path / "test" / "images" / "leak.png"
    leak.symlink_to(tmp_path / "train" / "images" / "train0.png")
    write_mask(tmp_path / "test" / "masks" / "leak.png", left_right_mask(right=1))
    with pytest.raises(DuplicateFileError, match=r"train0\.png \(train\) and .*leak\.png \(test\)"):
        build(tmp_path)


def test_a_loop_and_a_fifo_under_images_are_skipped(tmp_path):
    for i in range(4):
        write_pair(tmp_path, f"{i}", left_right_mask(right=1))
    (tmp_path / "images" / "again").symlink_to(".")
    make_fifo(tmp_path / "images" / "pipe.png")
    write_mask(tmp_path / "masks" / "pipe.png", left_right_mask(right=1))
    with deadline(), pytest.warns(DataScanWarning, match=r"link loop.*special file"):
        data = build(tmp_path, val_fraction=0.25, test_fraction=0.25)
        assert sum(len(b["mask"]) for b in data.train_dataloader()) == 2
    assert sum(len(v) for v in data.splits.values()) == 4
    with deadline(), pytest.raises(BadMaskError, match=r"pipe\.png.*FIFO"):
        read_mask(tmp_path / "images" / "pipe.png")
