"""Named augmentation strengths: each builds for each kind of target, in the real DataModules
too, and moves masks, boxes and keypoints (with their flip pairs) along with the image."""

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from cvtasks.data.augment_presets import STRENGTHS, TARGETS, named_augment
from cvtasks.data.keypoint_dataset import KeypointTransform, keypoint_compose_kwargs
from cvtasks.data.transforms import build_pipeline, pipeline_targets
from cvtasks.registry import DATASETS

SIZE = 64
DRAWS = 24
COMPOSE = {
    "image": {},
    "boxes": {"bbox_params": A.BboxParams(format="pascal_voc", label_fields=["labels"])},
    "keypoints": keypoint_compose_kwargs(),
    "masks": {"mask_interpolation": cv2.INTER_NEAREST},
}


def pipeline(strength: str, targets: str, seed: int = 0) -> A.Compose:
    # mean 0, std 1: the output image is the pixels / 255, easy to threshold
    return build_pipeline(
        strength, SIZE, (0, 0, 0), (1, 1, 1), train=True, seed=seed, **COMPOSE[targets]
    )


def picture() -> tuple[np.ndarray, np.ndarray]:
    """A white square off the centre (so flips move it) on black, and its mask."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    image[8:32, 12:30] = 255
    mask[8:32, 12:30] = 1
    return image, mask


def bright(out_image: torch.Tensor) -> np.ndarray:
    """Pixels brighter than half the brightest: colour jitter scales white and black alike."""
    gray = out_image.mean(0).numpy()
    return gray > 0.5 * gray.max()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("strength", STRENGTHS)
@pytest.mark.parametrize("targets", TARGETS)
def test_each_strength_builds_and_runs_for_each_kind_of_target(strength, targets):
    specs = named_augment(strength, targets)
    assert specs and all("name" in spec for spec in specs)
    assert named_augment(strength, targets) is not specs  # a fresh copy each time
    train = pipeline(strength, targets)
    names = [type(t).__name__ for t in train.transforms]
    assert names[-3:] == ["Resize", "Normalize", "ToTensorV2"]
    assert names[:-3] == [spec["name"] for spec in specs]
    eval_names = [
        type(t).__name__
        for t in build_pipeline(strength, SIZE, (0, 0, 0), (1, 1, 1), False).transforms
    ]
    assert eval_names == ["Resize", "Normalize", "ToTensorV2"]
    image, mask = picture()
    extra = {
        "image": {},
        "boxes": {"bboxes": [[12, 8, 30, 32]], "labels": [1]},
        "keypoints": {"keypoints": [[20.0, 20.0]]},
        "masks": {"mask": mask},
    }[targets]
    out = train(image=image, **extra)
    assert out["image"].shape == (3, SIZE, SIZE) and out["image"].dtype == torch.float32


def test_stronger_means_more_transforms_and_wider_ranges():
    for targets in TARGETS:
        counts = [len(named_augment(s, targets)) for s in STRENGTHS]
        assert counts == sorted(counts), targets
    # what each kind of target holds back
    for strength in STRENGTHS:
        boxes = named_augment(strength, "boxes")
        assert all(s["name"] != "RandomResizedCrop" for s in boxes)
        assert all(s.get("rotate", [0, 0]) == [0, 0] for s in boxes)
        assert all(s["name"] != "RandomResizedCrop" for s in named_augment(strength, "keypoints"))
        affine = [s for s in named_augment(strength, "masks") if s["name"] == "Affine"]
        assert affine and all(s["fill_mask"] == 255 for s in affine)


@pytest.mark.parametrize("strength", STRENGTHS)
def test_masks_move_with_the_image(strength):
    train = pipeline(strength, "masks", seed=1)
    image, mask = picture()
    moved = 0
    for _ in range(DRAWS):
        out = train(image=image, mask=mask)
        labels = out["mask"].numpy()
        fg = labels == 1
        assert iou(bright(out["image"]) & (labels != 255), fg) > 0.8
        padding = labels == 255
        if padding.any():  # black and ignored (blur may smear a few pixels over the edge)
            assert bright(out["image"])[padding].mean() < 0.05
        moved += not np.array_equal(labels, mask)
    assert moved > DRAWS // 3  # the mask did move, and with the image every time


@pytest.mark.parametrize("strength", STRENGTHS)
def test_boxes_move_with_the_image(strength):
    train = pipeline(strength, "boxes", seed=2)
    image, _ = picture()
    centres = set()
    for _ in range(DRAWS):
        out = train(image=image, bboxes=[[12, 8, 30, 32]], labels=[1])
        if not out["bboxes"]:
            continue  # pushed out of the frame
        x0, y0, x1, y1 = np.rint(np.asarray(out["bboxes"][0])).astype(int)
        box = np.zeros((SIZE, SIZE), bool)
        box[y0:y1, x0:x1] = True
        assert iou(bright(out["image"]), box) > 0.75
        centres.add(x0 + x1 > SIZE)  # right half after a flip
    assert centres == {True, False}


@pytest.mark.parametrize("strength", STRENGTHS)
def test_keypoints_move_with_the_image_and_flips_swap_their_pairs(strength):
    transform = KeypointTransform(pipeline(strength, "keypoints", seed=3), flip_pairs=[(0, 1)])
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[10:22, 12:24] = 255  # point 0, "left", on the bright square
    image[36:48, 40:52] = 120  # point 1, "right", on the dimmer one
    points = np.array([[18.0, 16.0], [46.0, 42.0]])
    swapped = set()
    for _ in range(DRAWS):
        out = transform(image, points, np.array([True, True]), (0.0, 0.0, SIZE, SIZE))
        if not out["visible"].all():
            continue
        gray = out["image"].mean(0).numpy()
        values = []
        for x, y in out["keypoints"].numpy() * SIZE:
            col, row = int(x), int(y)
            values.append(gray[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2].mean())
        background = np.median(gray)
        assert min(values) > background + 0.1 * gray.max()  # both points sit on their squares
        swapped.add(bool(values[1] > values[0]))  # a mirror: "left" is now the dim one
    assert swapped == {True, False}


def test_pipeline_targets_follow_the_compose_keywords():
    assert {k: pipeline_targets(kw) for k, kw in COMPOSE.items()} == {k: k for k in COMPOSE}


@pytest.mark.parametrize(
    ("name", "targets"),
    [
        ("digits", "image"),
        ("digits_identities", "image"),
        ("digits_localization", "boxes"),
        ("digits_detection", "boxes"),
        ("synthetic_faces", "keypoints"),
        ("shapes", "masks"),
    ],
)
def test_datamodules_take_a_named_strength_for_their_targets(name, targets):
    data = DATASETS.build(name, augment="medium", image_size=SIZE)
    names = [type(t).__name__ for t in data.train_transform.transforms][:-3]
    assert names == [spec["name"] for spec in named_augment("medium", targets)]


def test_unknown_strength_lists_the_allowed_ones():
    with pytest.raises(ValueError) as err:
        build_pipeline("strong", SIZE, (0, 0, 0), (1, 1, 1), train=True)
    message = str(err.value)
    assert "data.augment: 'strong' is not a named strength" in message
    assert "light, medium, heavy" in message and "[{name: HorizontalFlip}]" in message
