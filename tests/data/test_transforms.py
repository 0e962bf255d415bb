import albumentations as A
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cvtasks.data.transforms import build_pipeline, parse_image_size, transform_names

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _oracle(image: np.ndarray, mean=MEAN, std=STD) -> np.ndarray:
    """(x / 255 - mean) / std, channels first."""
    scaled = (image.astype(np.float64) / 255.0 - np.array(mean)) / np.array(std)
    return scaled.transpose(2, 0, 1)


@pytest.mark.parametrize("train", [True, False])
def test_output_matches_numpy_oracle(train: bool) -> None:
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    pipeline = build_pipeline(None, 16, MEAN, STD, train=train)
    out = pipeline(image=image)["image"]
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32
    assert out.shape == (3, 16, 16)
    np.testing.assert_allclose(out.numpy(), _oracle(image), rtol=1e-5, atol=1e-5)


def test_resize_to_height_width() -> None:
    image = np.full((8, 8, 3), 255, dtype=np.uint8)
    out = build_pipeline(None, (12, 20), (0.5,) * 3, (0.5,) * 3, train=False)(image=image)["image"]
    assert out.shape == (3, 12, 20)
    assert torch.allclose(out, torch.ones_like(out))  # (1 - 0.5) / 0.5


def test_train_has_augmentations_eval_does_not() -> None:
    augment = [{"name": "HorizontalFlip", "p": 1.0}]
    train = build_pipeline(augment, 8, MEAN, STD, train=True)
    evaluate = build_pipeline(augment, 8, MEAN, STD, train=False)
    assert [type(t).__name__ for t in train.transforms] == [
        "HorizontalFlip",
        "Resize",
        "Normalize",
        "ToTensorV2",
    ]
    assert [type(t).__name__ for t in evaluate.transforms] == ["Resize", "Normalize", "ToTensorV2"]
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[:, 0] = 255
    flipped = train(image=image)["image"]
    np.testing.assert_allclose(flipped.numpy(), _oracle(image[:, ::-1]), rtol=1e-5, atol=1e-5)


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(ValueError) as info:
        build_pipeline([{"name": "HorizontalFlip"}, {"name": "HorizontalFlp"}], 8, MEAN, STD, True)
    message = str(info.value)
    assert "data.augment[1].name" in message
    assert "'HorizontalFlp'" in message
    assert "HorizontalFlip" in message.split("Did you mean:")[1]


def test_unknown_name_is_checked_for_eval_too() -> None:
    with pytest.raises(ValueError, match="NotATransform"):
        build_pipeline([{"name": "NotATransform"}], 8, MEAN, STD, train=False)


@pytest.mark.parametrize("name", ["BasicTransform", "Compose_", "np", 3])
def test_non_transforms_are_rejected(name) -> None:
    with pytest.raises(ValueError, match="not an albumentations transform"):
        build_pipeline([{"name": name}], 8, MEAN, STD, train=True)


def test_to_tensor_is_not_an_augmentation() -> None:
    with pytest.raises(ValueError, match=r"data\.augment\[0\]\.name: ToTensorV2"):
        build_pipeline([{"name": "ToTensorV2"}], 8, MEAN, STD, train=True)


def test_unknown_keyword_names_the_transform() -> None:
    with pytest.raises(TypeError) as info:
        build_pipeline([{"name": "Affine", "scalez": [0.9, 1.1]}], 8, MEAN, STD, train=True)
    message = str(info.value)
    assert "data.augment[0]" in message
    assert "Affine" in message
    assert "'scalez'" in message
    assert "scale" in message.split("Did you mean:")[1]


def test_bad_value_raises_instead_of_silent_defaults() -> None:
    # albumentations alone would only warn and fall back to every default
    with pytest.raises(ValueError, match=r"data\.augment\[0\] \(Affine\)"):
        build_pipeline([{"name": "Affine", "scale": "big"}], 8, MEAN, STD, train=True)


@pytest.mark.parametrize(
    "augment", [{"name": "HorizontalFlip"}, ["HorizontalFlip"], [{"p": 0.5}], "HorizontalFlip"]
)
def test_malformed_specs(augment) -> None:
    with pytest.raises(ValueError, match=r"data\.augment"):
        build_pipeline(augment, 8, MEAN, STD, train=True)


def test_nested_compositions() -> None:
    augment = [
        {
            "name": "OneOf",
            "p": 1.0,
            "transforms": [{"name": "HorizontalFlip", "p": 1.0}, {"name": "VerticalFlip"}],
        }
    ]
    pipeline = build_pipeline(augment, 8, MEAN, STD, train=True)
    one_of = pipeline.transforms[0]
    assert isinstance(one_of, A.OneOf)
    assert [type(t).__name__ for t in one_of.transforms] == ["HorizontalFlip", "VerticalFlip"]
    with pytest.raises(ValueError, match=r"data\.augment\[0\]\.transforms\[1\]\.name"):
        build_pipeline(
            [{"name": "OneOf", "transforms": [{"name": "HorizontalFlip"}, {"name": "Flipp"}]}],
            8,
            MEAN,
            STD,
            True,
        )


@pytest.mark.parametrize(("image_size", "expected"), [(32, (32, 32)), ((24, 40), (24, 40))])
def test_a_resizing_crop_without_size_crops_to_the_image_size(image_size, expected) -> None:
    augment = [
        {"name": "RandomResizedCrop", "scale": [0.5, 1.0], "p": 1.0},
        {"name": "OneOf", "transforms": [{"name": "RandomSizedCrop", "min_max_height": [50, 90]}]},
    ]
    pipeline = build_pipeline(augment, image_size, MEAN, STD, train=True)
    crop, one_of = pipeline.transforms[:2]
    assert tuple(crop.size) == expected
    assert tuple(one_of.transforms[0].size) == expected
    assert crop(image=np.zeros((100, 100, 3), dtype=np.uint8))["image"].shape[:2] == expected


def test_a_crop_with_its_own_size_keeps_it() -> None:
    augment = [{"name": "RandomResizedCrop", "size": [16, 20], "p": 1.0}]
    pipeline = build_pipeline(augment, 32, MEAN, STD, train=True)
    assert tuple(pipeline.transforms[0].size) == (16, 20)
    out = pipeline(image=np.zeros((100, 100, 3), dtype=np.uint8))["image"]
    assert out.shape == (3, 32, 32)  # the final Resize still gives data.image_size


def test_omegaconf_containers_are_accepted() -> None:
    cfg = OmegaConf.create(
        {
            "augment": [{"name": "Affine", "scale": [0.9, 1.1], "p": 1.0}],
            "mean": [0.5, 0.5, 0.5],
            "size": [8, 10],
        }
    )
    pipeline = build_pipeline(cfg.augment, cfg.size, cfg.mean, cfg.mean, train=True)
    out = pipeline(image=np.zeros((8, 8, 3), dtype=np.uint8))["image"]
    assert out.shape == (3, 8, 10)


def test_compose_kwargs_carry_boxes() -> None:
    pipeline = build_pipeline(
        [{"name": "HorizontalFlip", "p": 1.0}],
        10,
        MEAN,
        STD,
        train=True,
        bbox_params=A.BboxParams(format="albumentations", label_fields=["labels"]),
    )
    out = pipeline(
        image=np.zeros((20, 20, 3), dtype=np.uint8), bboxes=[[0.1, 0.2, 0.3, 0.4]], labels=[1]
    )
    np.testing.assert_allclose(out["bboxes"][0], [0.7, 0.2, 0.9, 0.4], atol=1e-6)


@pytest.mark.parametrize("size", [0, -3, 2.5, "32", [32], [32, 32, 3], True])
def test_bad_image_size(size) -> None:
    with pytest.raises(ValueError, match=r"data\.image_size"):
        parse_image_size(size)


def test_bad_mean_std() -> None:
    with pytest.raises(ValueError, match=r"data\.mean"):
        build_pipeline(None, 8, (0.5, 0.5), STD, train=False)
    with pytest.raises(ValueError, match=r"data\.std"):
        build_pipeline(None, 8, MEAN, (0.5, 0.0, 0.5), train=False)


def test_transform_names() -> None:
    names = transform_names()
    assert {"HorizontalFlip", "Affine", "OneOf", "Normalize"} <= set(names)
    assert "BasicTransform" not in names
