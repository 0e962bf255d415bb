"""Every option of every config group composes, and bad group choices fail helpfully."""

import json
import logging

import pytest
from omegaconf import OmegaConf

from cvtasks.config import CONFIG_DIR, ConfigError, check_group_choices, group_options

GROUPS = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir())
OPTIONS = [(group, option) for group in GROUPS for option in group_options(group, [CONFIG_DIR])]
#: the values an option leaves required (``???``); every other option composes as it is
REQUIRED = {
    "backbone=custom": ["backbone.name=my_net"],
    "data=coco_boxes": ["data.root=/x", "data.annotations=a.json"],
    "data=coco_multilabel": ["data.root=/x", "data.annotations=a.json"],
    "data=multilabel_csv": ["data.root=/x", "data.csv=a.csv"],
    **{
        f"data={name}": ["data.root=/x"]
        for name in (
            "coco_detection",
            "coco_keypoints",
            "identity_folders",
            "image_folder",
            "image_masks",
            "voc_boxes",
            "voc_detection",
            "voc_segmentation",
            "yolo_detection",
        )
    },
}


def test_train_yaml_lists_every_group_and_top_level_key(compose_train):
    cfg = compose_train()
    for key in ("task", "backbone", "data", "trainer", "logger", "callbacks", "paths"):
        assert key in cfg
    for key in ("seed", "plugins", "compile", "channels_last", "ckpt_path"):
        assert key in cfg
    assert {"experiment", "hparams_search", "debug"} <= set(GROUPS)
    assert cfg.task.name == "classification" and cfg.backbone.name == "lenet5"
    assert cfg.data.name == "digits"


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes(compose_train, group, option, tmp_path):
    overrides = [f"{group}={option}", *REQUIRED.get(f"{group}={option}", ())]
    if f"{group}={option}" == "data=shards":  # `source` values come from the shards' index
        index = {"version": 1, "codec": "label", "splits": {"train": 1}, "class_names": ["a"]}
        source = {"image_size": 32, "batch_size": 8, "mean": [0.5] * 3, "std": [0.5] * 3}
        (tmp_path / "cvtasks_shards.json").write_text(json.dumps({**index, "source": source}))
        overrides.append(f"data.root={tmp_path}")
    if group == "hparams_search" and option == "optuna":  # the `sweep` extra
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = compose_train(*overrides)
    cfg.paths.output_dir = "/tmp/run"  # Hydra sets it inside a run; everything else resolves
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


@pytest.mark.parametrize("trainer", ["gpu", "ddp", "ddp_multinode", "fsdp"])
def test_gpu_trainers_autotune_cudnn(compose_train, trainer):
    assert compose_train(f"trainer={trainer}").trainer.benchmark is True


@pytest.mark.parametrize("trainer", ["default", "cpu", "ddp_cpu"])
def test_cpu_trainers_leave_cudnn_autotuning_to_lightning(compose_train, trainer):
    assert "benchmark" not in compose_train(f"trainer={trainer}").trainer


def test_trainer_options(compose_train):
    assert compose_train("trainer=gpu").trainer.precision == "bf16-mixed"
    ddp = compose_train("trainer=ddp").trainer
    assert ddp.strategy == "ddp" and ddp.devices == -1 and "sync_batchnorm" in ddp
    ddp_cpu = compose_train("trainer=ddp_cpu").trainer
    assert ddp_cpu.devices == 2 and ddp_cpu.strategy.process_group_backend == "gloo"
    assert compose_train("trainer=default").trainer.accelerator == "auto"


def test_monitor_resolvers_read_the_task_class(compose_train):
    ckpt = compose_train().callbacks.model_checkpoint
    assert ckpt.monitor == "val/acc" and ckpt.mode == "max"


def test_bad_group_choice_lists_options_and_closest_match():
    with pytest.raises(ConfigError) as err:
        check_group_choices(["trainer=ddp_cpux"], [CONFIG_DIR])
    msg = str(err.value)
    assert "trainer=ddp_cpux" in msg and "Did you mean: ddp_cpu" in msg
    assert "cpu, ddp, ddp_cpu, ddp_multinode, default, fsdp, gpu" in msg


@pytest.mark.parametrize("arg", ["task=segmentaton", "backbone=lenet", "data=digit"])
def test_bad_task_backbone_data_choices(arg):
    with pytest.raises(ConfigError, match="Available"):
        check_group_choices([arg], [CONFIG_DIR])


def test_good_and_non_group_arguments_pass():
    check_group_choices(
        [
            "trainer=cpu",
            "trainer.max_epochs=3",
            "seed=1",
            "debug=null",
            "+experiment=digits_mlp_head",
            "task.optimizer.lr=0.1",
            "trainer=cpu,ddp_cpu",
        ],
        [CONFIG_DIR],
    )


def test_multinode_and_fsdp_trainers(compose_train):
    from hydra.utils import instantiate
    from pytorch_lightning.strategies import FSDPStrategy

    multi = compose_train("trainer=ddp_multinode", "trainer.num_nodes=4").trainer
    assert multi.strategy == "ddp" and multi.num_nodes == 4 and multi.devices == -1
    fsdp = compose_train("trainer=fsdp").trainer
    strategy = instantiate(fsdp.strategy)
    assert isinstance(strategy, FSDPStrategy) and fsdp.precision == "bf16-mixed"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["task.optimizer.lr=-0.01"], "task.optimizer.lr=-0.01: must be a number > 0"),
        (["trainer.precision=bf17"], "trainer.precision='bf17': must be one of"),
        (["data.batch_size=0"], "data.batch_size=0: must be an integer >= 1"),
        (["callbacks.nonfinite_loss.action=ignore"], "must be stop (end the run"),
        (
            ["task=segmentation", "data.image_size=50"],
            "data.image_size=50: task segmentation needs a size divisible by 32",
        ),
        (
            ["data=image_folder"],
            "data.root is not set and has no default: add data.root=... to the command line",
        ),
        (
            ["task=segmentation", "data.image_size=[64,50]"],
            "data.image_size=[64, 50]: task segmentation needs a size divisible by 32",
        ),
        (["seed=-1"], "seed=-1: must be an integer from 0 to 4294967295"),
        (["seed=4294967296"], "seed=4294967296: must be an integer from 0 to 4294967295"),
    ],
)
def test_invalid_values_name_key_value_and_what_is_allowed(compose_train, overrides, expected):
    from cvtasks.schema import validate_config

    cfg = compose_train(*overrides)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert expected in str(err.value)
    if "precision" in expected:
        assert "bf16-mixed" in str(err.value)


def test_valid_configs_pass(compose_train):
    from cvtasks.schema import validate_config

    for overrides in ([], ["task=segmentation"], ["trainer=ddp_cpu"], ["trainer=fsdp"]):
        validate_config(compose_train(*overrides))


def test_an_image_smaller_than_the_deepest_reduction_warns(compose_train, caplog):
    from cvtasks.schema import validate_config

    with caplog.at_level(logging.WARNING, logger="cvtasks.schema"):
        validate_config(compose_train("backbone=resnet18", "data.image_size=32"))
        assert caplog.text == ""
        validate_config(compose_train("backbone=resnet18", "data.image_size=[64,8]"))
    assert "data.image_size=[64, 8] is smaller than backbone resnet18 can use" in caplog.text
    assert "its deepest features are 32x smaller than the input" in caplog.text
    assert "use data.image_size=32 or more" in caplog.text


# -- data read at the backbone's own input size ------------------------------------------------
# The architectures' input sizes (LeNet-5 32, the seed's AlexNet 227, ResNet 224, EfficientNet-B3
# 300 and B7 600 from the EfficientNet paper), not read from the code under test.
NATIVE_SIZES = [
    ("lenet5", 32),
    ("alexnet_seed", 227),
    ("resnet50", 224),
    ("efficientnet_b3", 300),
    ("efficientnet_b7", 600),
]


def _train_crop_size(cfg) -> tuple[int, int]:
    import albumentations as A

    from cvtasks.data.transforms import build_pipeline

    data = cfg.data
    pipeline = build_pipeline(data.augment, data.image_size, data.mean, data.std, train=True)
    crop = next(t for t in pipeline.transforms if isinstance(t, A.RandomResizedCrop))
    return tuple(crop.size)


@pytest.mark.parametrize(("backbone", "size"), NATIVE_SIZES)
def test_image_folder_reads_images_at_the_backbones_input_size(compose_train, backbone, size):
    cfg = compose_train("data=image_folder", "data.root=/some/images", f"backbone={backbone}")
    assert cfg.data.image_size == size
    assert _train_crop_size(cfg) == (size, size)


def test_image_folder_with_a_timm_backbone_reads_timms_input_size(compose_train):
    import timm

    cfg = compose_train(
        "data=image_folder", "data.root=/x", "backbone=timm", "backbone.name=timm/resnet10t"
    )
    assert cfg.data.image_size == timm.get_pretrained_cfg("resnet10t").input_size[-1] == 176
    assert _train_crop_size(cfg) == (176, 176)


@pytest.mark.parametrize(("size", "expected"), [("64", (64, 64)), ("[48,80]", (48, 80))])
def test_an_explicit_image_size_wins_and_the_crop_follows_it(compose_train, size, expected):
    from cvtasks.data.transforms import parse_image_size

    cfg = compose_train("data=image_folder", "data.root=/x", f"data.image_size={size}")
    image_size = OmegaConf.to_container(cfg.data, resolve=True)["image_size"]
    assert parse_image_size(image_size) == expected
    assert _train_crop_size(cfg) == expected


@pytest.mark.parametrize(
    ("overrides", "size"),
    [
        (["task=siamese", "data=identity_folders"], 32),  # the task's LeNet-5
        (["task=localization", "data=coco_boxes", "data.annotations=a.json"], 32),
        (["task=localization", "data=voc_boxes", "backbone=efficientnet_b2"], 260),
        (["task=landmarks", "data=coco_keypoints"], 224),  # resnet18
        # segmentation: rounded to a multiple of 32 so that the deepest map divides the input
        (["task=segmentation", "data=image_masks"], 224),  # resnet10_tiny: a ResNet's 224
        (["task=detection", "data=coco_detection", "data.annotations=a.json"], 224),
        (["task=detection", "data=yolo_detection", "backbone=efficientnet_b1"], 256),  # 240
        (["task=segmentation", "data=image_masks", "backbone=efficientnet_b1"], 256),  # 240
        (["task=segmentation", "data=image_masks", "backbone=lenet5"], 32),
    ],
)
def test_folder_readers_follow_the_backbone(compose_train, overrides, size):
    from cvtasks.schema import validate_config

    cfg = compose_train(*overrides, "data.root=/x")
    assert cfg.data.image_size == size
    validate_config(cfg)  # a segmentation size divides by the deepest feature reduction


def test_voc_segmentation_keeps_its_size_and_the_crop_follows_it(compose_train):
    cfg = compose_train("task=segmentation", "data=voc_segmentation", "data.root=/x")
    assert cfg.data.image_size == 320 and _train_crop_size(cfg) == (320, 320)
    cfg = compose_train("task=segmentation", "data=voc_segmentation", "data.image_size=256")
    assert _train_crop_size(cfg) == (256, 256)


def test_a_plugin_backbone_declares_its_input_size(compose_train, tmp_path):
    from cvtasks import plugins

    plugin = tmp_path / "wide_lenet.py"
    plugin.write_text(
        "from cvtasks.backbones.input_size import input_size\n"
        "from cvtasks.backbones.lenet import LeNet5\n"
        "from cvtasks.registry import BACKBONES\n\n\n"
        "@BACKBONES.register('wide_lenet_48', override=True)\n"
        "@input_size(48)\n"
        "def wide_lenet_48(**kwargs):\n"
        "    return LeNet5(**kwargs)\n"
    )
    cfg = compose_train(
        f"plugins=[{plugin}]",
        "backbone=custom",
        "backbone.name=wide_lenet_48",
        "data=image_folder",
        "data.root=/x",
    )
    plugins.load(list(cfg.plugins)).raise_if_failed()
    assert cfg.data.image_size == 48


def test_small_grayscale_images_train_a_one_channel_lenet_at_32x32(compose_train, tmp_path):
    import numpy as np
    from PIL import Image

    from cvtasks.cli.build import build_datamodule

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(10):
            pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(tmp_path / label / f"{i}.png")
    cfg = compose_train(
        "data=image_folder", f"data.root={tmp_path}", "data.num_workers=0", "data.batch_size=4"
    )
    # in_chans follows the data; ImageNet's normalization averaged for the one channel
    assert cfg.backbone.in_chans == 1
    assert list(cfg.data.mean) == [pytest.approx(0.449)]
    assert list(cfg.data.std) == [pytest.approx(0.226)]
    datamodule = build_datamodule(cfg)
    batch = next(iter(datamodule.train_dataloader()))["image"]
    assert batch.shape == (4, 1, 32, 32)
    assert next(iter(datamodule.val_dataloader()))["image"].shape[1:] == (1, 32, 32)


def test_a_data_config_without_a_backbone_composes(compose_train):
    # `evaluate` composes data alone; its auto size is then replaced by the checkpoint's
    from hydra import compose, initialize_config_dir

    from cvtasks.config import setup_hydra

    setup_hydra()
    overrides = ["ckpt=model.ckpt", "data=image_folder", "data.root=/x"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=overrides)
    assert "backbone" not in cfg and cfg.data.image_size == "auto"


def test_an_unknown_backbone_is_reported_when_built_not_by_the_data_size(compose_train):
    from cvtasks.schema import validate_config

    cfg = compose_train("data=image_folder", "data.root=/x", "backbone.name=lenet")
    assert cfg.data.image_size == 224  # no interpolation error wrapped around the name
    with pytest.raises(KeyError, match=r"Unknown backbone .lenet.*Did you mean: lenet5"):
        validate_config(cfg)
