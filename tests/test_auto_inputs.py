"""``auto`` input settings: sizes, normalization, evaluation crops and channels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import timm
import torchvision
from omegaconf import OmegaConf
from PIL import Image

from cvtasks.auto_inputs import data_channels, pretrained_inputs
from cvtasks.data.transforms import build_pipeline
from cvtasks.schema import ConfigError, validate_config

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _folder(root, mode: str, count: int = 6, size: int = 25):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size, size) if mode == "L" else (size, size, 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(
                root / label / f"{i}.png"
            )
    return root


@pytest.mark.parametrize(
    ("backbone", "weights"),
    [
        ("resnet18", torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
        ("resnet50", torchvision.models.ResNet50_Weights.IMAGENET1K_V2),
        ("efficientnet_b1", torchvision.models.EfficientNet_B1_Weights.IMAGENET1K_V2),
    ],
)
def test_a_torchvision_entry_sets_size_normalization_and_eval_crop(
    compose_train, backbone, weights
):
    entry = weights.name
    cfg = compose_train(
        "data=image_folder",
        "data.root=/x",
        f"backbone={backbone}",
        f"backbone.pretrained=torchvision:{entry}",
    )
    transform = weights.transforms()  # the oracle: torchvision's own evaluation transform
    assert cfg.data.image_size == transform.crop_size[0]
    assert list(cfg.data.mean) == pytest.approx(list(transform.mean))
    assert list(cfg.data.std) == pytest.approx(list(transform.std))
    assert cfg.data.crop_pct == pytest.approx(transform.crop_size[0] / transform.resize_size[0])
    assert cfg.data.interpolation == "bilinear"
    # the evaluation pipeline resizes the shorter side to resize_size, then crops the centre
    pipeline = build_pipeline(
        None,
        cfg.data.image_size,
        cfg.data.mean,
        cfg.data.std,
        train=False,
        crop_pct=cfg.data.crop_pct,
    )
    resize = next(t for t in pipeline.transforms if type(t).__name__ == "SmallestMaxSize")
    assert resize.max_size == transform.resize_size[0]


def test_a_timm_pretrained_cfg_sets_size_normalization_and_eval_crop(compose_train):
    cfg = compose_train(
        "data=image_folder",
        "data.root=/x",
        "backbone=timm",
        "backbone.name=timm/inception_v3",
        "backbone.pretrained=true",
    )
    oracle = timm.get_pretrained_cfg("inception_v3")
    assert cfg.data.image_size == oracle.input_size[-1] == 299
    assert list(cfg.data.mean) == pytest.approx(list(oracle.mean)) == [0.5] * 3
    assert list(cfg.data.std) == pytest.approx(list(oracle.std))
    assert cfg.data.crop_pct == oracle.crop_pct
    assert cfg.data.interpolation == oracle.interpolation == "bicubic"


def test_without_weights_the_backbone_size_imagenet_normalization_and_a_plain_resize(
    compose_train,
):
    cfg = compose_train("data=image_folder", "data.root=/x", "backbone=efficientnet_b3")
    assert cfg.data.image_size == 300  # the seed's compound-scaled resolution
    assert list(cfg.data.mean) == IMAGENET_MEAN and list(cfg.data.std) == IMAGENET_STD
    assert cfg.data.crop_pct == 1.0 and cfg.data.interpolation == "bilinear"
    assert cfg.backbone.in_chans == 3  # /x holds no images: colour


def test_a_local_weights_file_says_nothing_about_inputs():
    assert pretrained_inputs({"name": "resnet18", "pretrained": "/w/resnet18.pth"}).size is None
    assert pretrained_inputs({"name": "resnet18", "pretrained": None}).mean is None
    # a name the build refuses (with its own message) is left to the build
    assert pretrained_inputs({"name": "lenet5", "pretrained": "torchvision"}).size is None


def test_a_dense_task_rounds_the_pretrained_crop_to_the_deepest_reduction(compose_train):
    cfg = compose_train(
        "task=segmentation",
        "data=image_masks",
        "data.root=/x",
        "backbone=efficientnet_b1",
        "backbone.pretrained=torchvision",
    )
    assert cfg.data.image_size == 256  # torchvision's 240 crop, up to a multiple of 32
    validate_config(cfg)


def test_explicit_values_win(compose_train):
    cfg = compose_train(
        "data=image_folder",
        "data.root=/x",
        "backbone=resnet18",
        "backbone.pretrained=torchvision",
        "data.image_size=160",
        "data.mean=[0.5,0.5,0.5]",
        "data.std=[0.5,0.5,0.5]",
        "data.crop_pct=1.0",
    )
    assert cfg.data.image_size == 160 and list(cfg.data.mean) == [0.5] * 3
    assert cfg.data.crop_pct == 1.0
    assert cfg.data.interpolation == "bilinear"  # still auto: the entry's


def test_the_data_decides_the_channels(tmp_path):
    assert data_channels(OmegaConf.create({"root": str(_folder(tmp_path / "g", "L"))})) == 1
    assert data_channels(OmegaConf.create({"root": str(_folder(tmp_path / "c", "RGB"))})) == 3
    mixed = _folder(_folder(tmp_path / "m", "L"), "RGB", count=1)
    Image.new("RGB", (4, 4)).save(mixed / "a" / "zz.png")
    assert data_channels(OmegaConf.create({"root": str(mixed)})) == 3
    assert data_channels(OmegaConf.create({"root": str(tmp_path / "missing")})) == 3
    assert data_channels(OmegaConf.create({"root": None})) == 3  # built-in data sets


def test_one_channel_asked_of_colour_data_converts_to_gray(compose_train, tmp_path):
    from cvtasks.cli.build import build_datamodule

    root = _folder(tmp_path / "rgb", "RGB")
    cfg = compose_train(
        "data=image_folder",
        f"data.root={root}",
        "backbone.in_chans=1",
        "data.num_workers=0",
        "data.batch_size=2",
        "data.augment=[]",
    )
    assert list(cfg.data.mean) == [pytest.approx(sum(IMAGENET_MEAN) / 3)]
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    image = np.asarray(Image.open(root / "a" / "0.png"))
    out = datamodule.eval_transform(image=image)["image"]
    gray = cv2.cvtColor(cv2.resize(image, (32, 32)), cv2.COLOR_RGB2GRAY) / 255.0
    expected = (gray - cfg.data.mean[0]) / cfg.data.std[0]
    assert out.shape == (1, 32, 32)
    assert np.abs(out[0].numpy() - expected).max() < 0.02  # 8-bit rounding of the gray value


def test_three_channels_asked_of_gray_data_replicate_it(compose_train, tmp_path):
    from cvtasks.cli.build import build_datamodule

    cfg = compose_train(
        "data=image_folder",
        f"data.root={_folder(tmp_path / 'g', 'L')}",
        "backbone.in_chans=3",
        "data.num_workers=0",
        "data.batch_size=2",
    )
    assert list(cfg.data.mean) == IMAGENET_MEAN
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    assert next(iter(datamodule.train_dataloader()))["image"].shape == (2, 3, 32, 32)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["backbone.in_chans=1", "data.mean=[0.5,0.5,0.5]"], r"has 3 value\(s\) but .*in_chans=1"),
        (["backbone.in_chans=4"], r"in_chans=4: images give 3 channels \(RGB\) or 1"),
    ],
)
def test_channels_the_images_cannot_give_are_refused(compose_train, overrides, message):
    cfg = compose_train("data=image_folder", "data.root=/x", *overrides)
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg, check_backbone=False)


def test_the_eval_crop_matches_a_resize_and_centre_crop():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    pipeline = build_pipeline(None, 224, [0.0] * 3, [1.0] * 3, train=False, crop_pct=0.875)
    out = pipeline(image=image)["image"].permute(1, 2, 0).numpy()
    resized = cv2.resize(image, (341, 256), interpolation=cv2.INTER_LINEAR)  # 400*256/300
    top, left = (256 - 224) // 2, (341 - 224) // 2
    expected = resized[top : top + 224, left : left + 224] / 255.0
    assert np.abs(out - expected).max() < 1e-5


@pytest.mark.parametrize(("key", "value"), [("crop_pct", 0.0), ("interpolation", "cubic")])
def test_bad_eval_resize_values_name_the_key(key, value):
    kwargs = {"crop_pct": 1.0, "interpolation": "bilinear", key: value}
    with pytest.raises(ValueError, match=f"data.{key}"):
        build_pipeline(None, 32, [0.5] * 3, [0.5] * 3, train=False, **kwargs)
