"""Every option of every config group composes, and bad group choices fail helpfully."""

import pytest
from omegaconf import OmegaConf

from cvtasks.config import CONFIG_DIR, ConfigError, check_group_choices, group_options

GROUPS = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir())
OPTIONS = [(group, option) for group in GROUPS for option in group_options(group, [CONFIG_DIR])]


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
def test_every_group_option_composes(compose_train, group, option):
    overrides = [f"{group}={option}"]
    if group == "data" and option == "image_folder":
        overrides.append("data.root=/some/images")
    if group == "backbone" and option == "custom":
        overrides.append("backbone.name=my_net")
    if group == "hparams_search" and option == "optuna":  # the `sweep` extra
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = compose_train(*overrides)
    cfg.paths.output_dir = "/tmp/run"  # Hydra sets it inside a run; everything else resolves
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


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
