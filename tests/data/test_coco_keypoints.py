"""The COCO keypoints reader, the keypoint transform's invariants and the DataModule."""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from cvtasks.data.coco_keypoints import CocoKeypointsDataModule, read_coco_keypoints
from cvtasks.data.images import BadImageError
from cvtasks.data.keypoint_dataset import (
    AnnotationError,
    KeypointTransform,
    keypoint_compose_kwargs,
)
from cvtasks.data.scan import DuplicateFileError
from cvtasks.data.transforms import build_pipeline
from cvtasks.registry import DATASETS
from tests.data.conftest import deadline, make_fifo

NAMES = ["left_eye", "right_eye", "nose"]


def write_coco(root, annotations=None, categories=None, size=(40, 30), images=3):
    """Images ``img/<i>.png`` (width, height = ``size``) and ``ann.json`` with one face each."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        Image.new("RGB", size, (10 * i, 0, 0)).save(root / "img" / f"{i}.png")
    if annotations is None:
        annotations = [
            {
                "id": 100 + i,
                "image_id": i,
                "category_id": 1,
                "keypoints": [24.0, 10.0, 2, 12.0, 10.0, 1, 18.0, 16.0, 0],
                "bbox": [8.0, 4.0, 20.0, 20.0],
            }
            for i in range(images)
        ]
    categories = categories or [{"id": 1, "name": "face", "keypoints": NAMES, "skeleton": [[1, 2]]}]
    data = {
        "images": [
            {"id": i, "file_name": f"{i}.png", "width": size[0], "height": size[1]}
            for i in range(images)
        ],
        "annotations": annotations,
        "categories": categories,
    }
    (root / "ann.json").write_text(json.dumps(data))
    return root / "ann.json"


def test_reader_names_skeleton_pairs_and_samples(tmp_path):
    found = read_coco_keypoints(write_coco(tmp_path), tmp_path / "img")
    assert found.category == "face" and found.keypoint_names == NAMES
    assert found.skeleton == [(0, 1)]  # COCO's 1-based pairs, 0-based here
    assert found.flip_pairs == [(0, 1)]  # inferred from left_/right_ names
    sample = found.samples[0]
    assert sample.path == str(tmp_path / "img" / "0.png") and sample.size == (40, 30)
    np.testing.assert_array_equal(sample.keypoints, [[24, 10], [12, 10], [18, 16]])
    assert sample.flags.tolist() == [2, 1, 0] and sample.box == (8.0, 4.0, 20.0, 20.0)


def test_a_file_name_not_under_the_images_folder_is_taken_beside_the_json(tmp_path):
    # a labelling tool's export: each split folder holds its images and its JSON
    split = tmp_path / "train"
    path = write_coco(split)
    for image in (split / "img").glob("*.png"):
        image.rename(split / image.name)
    module = DATASETS.build(
        "coco_keypoints",
        root=str(tmp_path),
        train={"annotations": "train/ann.json", "images": "."},
        val={"annotations": "train/ann.json", "images": "."},
        test={"annotations": "train/ann.json", "images": "."},
        image_size=16,
    )
    module.setup("fit")
    assert path.parent == split
    assert [s.path for s in module.splits["train"]] == [str(split / f"{i}.png") for i in range(3)]
    assert module.train_dataset[0]["image"].shape == (3, 16, 16)


def test_flip_pairs_from_the_file(tmp_path):
    cat = {"id": 1, "name": "f", "keypoints": ["a", "b", "c"], "flip_pairs": [["a", "c"]]}
    found = read_coco_keypoints(write_coco(tmp_path, categories=[cat]), tmp_path / "img")
    assert found.flip_pairs == [(0, 2)]


def bad_annotations():
    good = {"id": 1, "image_id": 0, "category_id": 1, "keypoints": [1, 1, 2] * 3}
    return [
        good,
        {**good, "id": 2, "keypoints": [1, 1, 2] * 2},  # 2 points for a 3-point category
        {**good, "id": 3, "image_id": 42},  # no such image
    ]


def test_bad_annotations_raise_naming_file_and_field(tmp_path):
    path = write_coco(tmp_path, annotations=bad_annotations()[:2])
    with pytest.raises(AnnotationError) as err:
        read_coco_keypoints(path, tmp_path / "img")
    assert str(path) in str(err.value) and "annotations[1].keypoints (id 2)" in str(err.value)
    assert "has 6 values (2 points)" in str(err.value) and "3 points" in str(err.value)
    path = write_coco(tmp_path, annotations=[bad_annotations()[2]])
    with pytest.raises(AnnotationError, match=r"annotations\[0\]\.image_id: 42 names no entry"):
        read_coco_keypoints(path, tmp_path / "img")


def test_bad_annotations_skipped_and_counted(tmp_path):
    path = write_coco(tmp_path, annotations=bad_annotations())
    with pytest.warns(UserWarning, match=r"skipped 2 bad annotation"):
        found = read_coco_keypoints(path, tmp_path / "img", on_bad_annotation="skip")
    assert len(found.samples) == 1
    assert found.skipped == {"keypoint_count": 1, "missing_image": 1}


def test_category_choice(tmp_path):
    cats = [
        {"id": 1, "name": "face", "keypoints": NAMES},
        {"id": 2, "name": "hand", "keypoints": ["x"]},
    ]
    path = write_coco(tmp_path, categories=cats)
    with pytest.raises(AnnotationError, match=r"set data\.category"):
        read_coco_keypoints(path, tmp_path / "img")
    assert read_coco_keypoints(path, tmp_path / "img", category="face").category == "face"
    with pytest.raises(AnnotationError, match="no category named 'foot'"):
        read_coco_keypoints(path, tmp_path / "img", category="foot")


def transform(augment, size=(30, 40), flips=((0, 1),)):
    pipeline = build_pipeline(
        augment, size, (0, 0, 0), (1, 1, 1), train=True, **keypoint_compose_kwargs()
    )
    return KeypointTransform(pipeline, flips)


IMAGE = np.zeros((30, 40, 3), np.uint8)
POINTS = np.array([[24.0, 10.0], [12.0, 10.0], [18.25, 16.5]])
BOX = (8.0, 4.0, 20.0, 20.0)


def test_identity_normalizes_points_and_box():
    out = transform([])(IMAGE, POINTS, np.array([True, True, True]), BOX)
    expected = POINTS / [40, 30]
    torch.testing.assert_close(out["keypoints"], torch.tensor(expected, dtype=torch.float32))
    torch.testing.assert_close(out["box"], torch.tensor([18 / 40, 14 / 30, 20 / 40, 20 / 30]))
    assert out["visible"].tolist() == [True, True, True]


def test_horizontal_flip_mirrors_and_swaps_left_and_right():
    out = transform([{"name": "HorizontalFlip", "p": 1.0}])(
        IMAGE, POINTS, np.array([True, False, True]), BOX
    )
    mirrored = np.stack([1 - POINTS[:, 0] / 40, POINTS[:, 1] / 30], axis=1)
    swapped = mirrored[[1, 0, 2]]  # left eye <-> right eye
    torch.testing.assert_close(out["keypoints"], torch.tensor(swapped, dtype=torch.float32))
    assert out["visible"].tolist() == [False, True, True]  # visibility travels with the point
    # two flips are no flip: the points come back unswapped
    twice = transform([{"name": "HorizontalFlip", "p": 1.0}, {"name": "VerticalFlip", "p": 1.0}])
    back = twice(IMAGE, POINTS, np.ones(3, bool), BOX)["keypoints"]
    expected = np.stack([1 - POINTS[:, 0] / 40, 1 - POINTS[:, 1] / 30], axis=1)
    torch.testing.assert_close(back, torch.tensor(expected, dtype=torch.float32))


def dots(points, size=(60, 80)):
    """One coloured 2x2 dot per point, centred on it (points on pixel corners)."""
    image = np.zeros((*size, 3), np.uint8)
    for k, (x, y) in enumerate(points):
        image[int(y) - 1 : int(y) + 1, int(x) - 1 : int(x) + 1, k] = 255
    return image


@pytest.mark.parametrize(
    "augment",
    [
        [{"name": "Affine", "rotate": [25, 25], "scale": [1.2, 1.2], "p": 1.0}],
        [{"name": "HorizontalFlip", "p": 1.0}, {"name": "Affine", "rotate": [-15, -15], "p": 1.0}],
        [{"name": "Transpose", "p": 1.0}],
    ],
    ids=["affine", "flip-affine", "transpose"],
)
def test_points_move_with_the_image(augment):
    points = np.array([[30.0, 20.0], [50.0, 24.0], [40.0, 40.0]])
    for size in [(60, 80), (45, 60)]:  # the second resizes by 3/4 at the end
        out = transform(augment, size=size, flips=())(dots(points), points, np.ones(3, bool), BOX)
        image = out["image"].numpy()
        for k in range(3):
            weights = image[k]
            ys, xs = np.mgrid[: weights.shape[0], : weights.shape[1]] + 0.5  # pixel centres
            centre = [(xs * weights).sum() / weights.sum(), (ys * weights).sum() / weights.sum()]
            moved = out["keypoints"][k].numpy() * [size[1], size[0]]
            assert np.abs(moved - centre).max() < 0.3, (k, moved, centre)


def test_points_leaving_the_frame_become_invisible_not_dropped():
    shift = [{"name": "Affine", "translate_px": {"x": [20, 20], "y": [0, 0]}, "p": 1.0}]
    out = transform(shift, flips=())(IMAGE, POINTS, np.ones(3, bool), BOX)
    assert out["keypoints"].shape == (3, 2)
    assert out["visible"].tolist() == [False, True, True]  # 24 + 20 > 40: outside
    assert out["keypoints"][0, 0].item() == pytest.approx(44 / 40)


def datamodule(tmp_path, **kwargs):
    write_coco(tmp_path)
    split = {"annotations": "ann.json", "images": "img"}
    defaults = dict(root=tmp_path, train=split, val=split, test=split, image_size=[15, 20])
    return DATASETS.build("coco_keypoints", batch_size=2, **{**defaults, **kwargs})


def test_datamodule_batches_follow_the_contract(tmp_path):
    data = datamodule(tmp_path)
    assert isinstance(data, CocoKeypointsDataModule)
    data.setup("fit")
    assert data.num_keypoints == 3 and data.keypoint_names == NAMES
    assert data.flip_pairs == [(0, 1)] and data.skeleton == [(0, 1)]
    batch = next(iter(data.val_dataloader()))
    assert batch["image"].shape == (2, 3, 15, 20)
    torch.testing.assert_close(
        batch["keypoints"][0], torch.tensor([[0.6, 1 / 3], [0.3, 1 / 3], [0.45, 16 / 30]])
    )
    assert batch["visible"][0].tolist() == [True, False, False]  # v = 2, 1, 0: only 2 counts
    assert batch["orig_size"][0].tolist() == [30, 40] and batch["offset"][0].tolist() == [0, 0]
    assert set(data.empty_batch()) == {
        "image",
        "keypoints",
        "visible",
        "box",
        "orig_size",
        "offset",
    }
    labelled = datamodule(tmp_path, min_visibility=1)
    labelled.setup("fit")
    assert next(iter(labelled.val_dataloader()))["visible"][0].tolist() == [True, True, False]


def test_missing_splits_are_carved_out_of_train(tmp_path):
    data = datamodule(tmp_path, val=None, test=None, val_fraction=0.34, test_fraction=0.34)
    sizes = {s: len(v) for s, v in data.splits.items()}
    assert sizes == {"train": 1, "val": 1, "test": 1}
    with pytest.raises(ValueError, match="leaves test empty"):
        _ = datamodule(tmp_path, test=None, test_fraction=0.1).splits


def test_config_flip_pairs_override_and_are_checked(tmp_path):
    assert datamodule(tmp_path, flip_pairs=[["nose", "left_eye"]]).flip_pairs == [(2, 0)]
    with pytest.raises(AnnotationError, match="no point named 'ear'"):
        _ = datamodule(tmp_path, flip_pairs=[["ear", "nose"]]).flip_pairs
    with pytest.raises(AnnotationError, match="more than one pair"):
        _ = datamodule(tmp_path, flip_pairs=[[0, 1], [1, 2]]).flip_pairs


def test_several_objects_per_image_need_crop_to_box(tmp_path):
    second = {
        "id": 7,
        "image_id": 0,
        "category_id": 1,
        "keypoints": [4.0, 4.0, 2, 2.0, 4.0, 2, 3.0, 6.0, 2],
        "bbox": [1.0, 2.0, 4.0, 5.0],
    }
    first = {**second, "id": 8, "keypoints": [24.0, 10.0, 2, 12.0, 10.0, 2, 18.0, 16.0, 2]}
    first["bbox"] = [10.0, 8.0, 16.0, 10.0]
    path = write_coco(tmp_path, annotations=[first, second], images=1)
    split = {"annotations": path.name, "images": "img"}
    kwargs = dict(root=tmp_path, train=split, val=split, test=split, image_size=16)
    with pytest.raises(AnnotationError, match="crop_to_box=true"):
        _ = DATASETS.build("coco_keypoints", **kwargs).splits
    data = DATASETS.build("coco_keypoints", crop_to_box=True, box_padding=1.5, **kwargs)
    data.setup("fit")
    sample = data.val_dataset[0]
    # box 16x10 at (10, 8) grown 1.5x about its centre (18, 13): x 6..30, y 5.5..20.5 -> 5..21
    assert sample["offset"].tolist() == [6.0, 5.0] and sample["orig_size"].tolist() == [16, 24]
    torch.testing.assert_close(sample["keypoints"][0], torch.tensor([18 / 24, 5 / 16]))


def test_root_must_be_set():
    with pytest.raises(ValueError, match=r"data\.root is not set"):
        DATASETS.build("coco_keypoints", train={"annotations": "a.json", "images": "."})


def test_shipped_config_builds(tmp_path, compose_train):
    composed = compose_train("task=landmarks", "data=coco_keypoints", "data.root=.")
    cfg = OmegaConf.to_container(composed.data, resolve=True)
    assert cfg.pop("name") == "coco_keypoints"
    write_coco(tmp_path, images=10)
    split = {"annotations": "ann.json", "images": "img"}
    cfg.update(root=tmp_path, train=split, val=split, num_workers=0)
    data = DATASETS.build("coco_keypoints", **cfg)
    data.setup("fit")
    assert len(data.test_dataset) == 1  # test: null carves 10 % of train's images out
    # the landmarks backbone's input size (timm/resnet18: 224)
    assert next(iter(data.train_dataloader()))["image"].shape[1:] == (3, 224, 224)


def test_a_fifo_named_by_an_image_entry_fails_instead_of_blocking(tmp_path):
    data = datamodule(tmp_path)
    (tmp_path / "img" / "1.png").unlink()
    make_fifo(tmp_path / "img" / "1.png")
    data.setup("fit")
    with deadline(), pytest.raises(BadImageError, match=r"1\.png: it is a FIFO"):
        data.val_dataset[1]


def test_two_image_entries_naming_one_file_are_an_error(tmp_path):
    write_coco(tmp_path)
    (tmp_path / "img" / "2.png").unlink()
    (tmp_path / "img" / "2.png").symlink_to(tmp_path / "img" / "0.png")
    split = {"annotations": "ann.json", "images": "img"}
    data = DATASETS.build("coco_keypoints", root=tmp_path, train=split, val=split, test=split)
    with pytest.raises(DuplicateFileError, match=r"0\.png \(.*ann\.json image_id 0\) and .*2\.png"):
        data.setup("fit")


def test_an_exif_turned_image_explains_its_size_mismatch(tmp_path):
    data = datamodule(tmp_path)  # images declared 40x30
    exif = Image.Exif()
    exif[274] = 6
    Image.new("RGB", (40, 30)).save(tmp_path / "img" / "0.png", exif=exif)  # reads as 30x40
    data.setup("fit")
    with pytest.raises(ValueError, match=r"0\.png: the image is 30x40 .* 40x30; its EXIF orien"):
        data.val_dataset[0]
