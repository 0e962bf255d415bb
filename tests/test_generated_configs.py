"""Configs generated from the registry: read from builder signatures, composed by name."""

import copy
import inspect
from typing import Any

import pytest
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from torch import nn

from cvtasks.config import (
    CONFIG_DIR,
    ConfigError,
    check_group_choices,
    generated_options,
    setup_hydra,
    store_generated_configs,
)
from cvtasks.generated_configs import builder_defaults, generated_config, plugin_specs
from cvtasks.registry import BACKBONES

GENERATED = generated_options("backbone", [CONFIG_DIR])


class Net(nn.Module):
    """A stand-in for a backbone class: the generator reads only its constructor."""

    variant_args = ("layers",)

    def __init__(
        self,
        layers: tuple[int, ...] = (2, 2),
        in_chans: int = 3,
        num_classes: int = 0,
        drop_rate: float = 0.1,
        act_layer: type[nn.Module] = nn.ReLU,
        norm: dict[str, Any] | None = None,
        channels: tuple[int, ...] = (8, 16),
    ) -> None:
        super().__init__()


def forwards(**kwargs: Any) -> Net:
    return Net(layers=(1, 1), **kwargs)


def forwards_with_own(drop_rate: float = 0.3, **kwargs: Any) -> Net:
    return Net(layers=(3, 3), drop_rate=drop_rate, **kwargs)


def explicit(width: int = 4, pretrained: str | None = None, scale=(1.0, 2.0), *, pool="max"):
    return None


def opaque(**kwargs: Any):
    return None


def test_a_class_gives_its_constructors_keywords_less_num_classes_and_non_config_values():
    # act_layer=nn.ReLU is no config value; tuples become lists
    assert builder_defaults(Net) == {
        "layers": [2, 2],
        "in_chans": 3,
        "drop_rate": 0.1,
        "norm": None,
        "channels": [8, 16],
    }


def test_a_forwarding_function_gives_its_classes_keywords_less_the_variants_own():
    assert builder_defaults(forwards) == {
        "in_chans": 3,
        "drop_rate": 0.1,
        "norm": None,
        "channels": [8, 16],
    }
    # the function's own default wins over the class's
    assert builder_defaults(forwards_with_own)["drop_rate"] == 0.3


def test_the_generated_config_leads_with_the_name_and_the_contract_keywords():
    # in_chans: auto, the data's channels (resolved when a run composes its config)
    assert generated_config(explicit, "explicit") == {
        "name": "explicit",
        "in_chans": "auto",
        "drop_rate": None,
        "pretrained": None,
        "width": 4,
        "scale": [1.0, 2.0],
        "pool": "max",
    }
    # nothing to read: the contract keywords, None standing for the builder's own default
    assert generated_config(opaque, "opaque") == {
        "name": "opaque",
        "in_chans": "auto",
        "drop_rate": None,
        "pretrained": None,
    }


def test_every_registered_backbone_without_a_yaml_gets_a_config():
    ours = {n for n in BACKBONES.names() if BACKBONES.origin(n).startswith("cvtasks.")}
    assert {n for n in GENERATED if n in ours} == ours - {"lenet5"}  # lenet5.yaml is a recipe
    # read now, from every config folder: plugins loaded by earlier tests have registered more
    # names since collection, and an installed plugin's own yaml is a recipe too
    generated = generated_options("backbone")
    assert ours - {"lenet5"} <= set(generated)
    stored = store_generated_configs()
    assert set(stored) == {f"backbone/{name}" for name in generated}
    assert "backbone/lenet5" not in stored


@pytest.mark.parametrize("name", GENERATED)
def test_a_generated_config_builds_what_the_builder_builds_by_default(compose_train, name):
    cfg = OmegaConf.to_container(compose_train(f"backbone={name}").backbone)
    assert cfg.pop("name") == name and cfg["in_chans"] == 3
    assert "num_classes" not in cfg
    with torch.device("meta"):
        torch.manual_seed(0)
        from_config = BACKBONES.build(name, num_classes=10, **cfg)
        by_default = BACKBONES.build(name, num_classes=10)
    # classifier dropout, norms, activations and every layer's shape show in the module tree
    assert repr(from_config) == repr(by_default)
    assert getattr(from_config, "drop_rate", None) == getattr(by_default, "drop_rate", None)


def test_a_generated_option_takes_overrides_without_plus(compose_train):
    cfg = compose_train("backbone=efficientnet_b3", "backbone.drop_rate=0.1")
    assert cfg.backbone.drop_rate == 0.1 and cfg.backbone.drop_path_rate == 0.2
    resnet = compose_train("backbone=resnet50", "backbone.act_layer=gelu").backbone
    assert resnet.act_layer == "gelu" and resnet.norm_layer == "batchnorm"


def test_the_data_config_follows_a_generated_backbones_input_size(compose_train):
    cfg = compose_train("data=image_folder", "data.root=/x", "backbone=efficientnet_b3")
    assert cfg.data.image_size == 300


def test_a_recipe_yaml_replaces_the_generated_config(compose_train):
    # the builder defaults to the tutorial's tanh; the digits recipe trains with ReLU
    assert inspect.signature(BACKBONES.get("lenet5")).parameters  # a **kwargs builder
    assert compose_train("backbone=lenet5").backbone.act_layer == "relu"


def test_group_choices_know_the_generated_options():
    check_group_choices(["backbone=vgg19_bn", "backbone=resnet18,lenet5"], [CONFIG_DIR])
    with pytest.raises(ConfigError) as err:
        check_group_choices(["backbone=vgg19bn"], [CONFIG_DIR])
    message = str(err.value)
    assert "Did you mean: vgg19_bn" in message and "efficientnet_b7" in message
    assert "or registering a backbone" in message and "\n" not in message


def test_a_plugin_on_the_command_line_gets_its_config_before_composing(
    compose_train, tmp_path, monkeypatch
):
    monkeypatch.setattr(BACKBONES, "_entries", dict(BACKBONES._entries))
    store = ConfigStore.instance()
    monkeypatch.setattr(store, "repo", copy.deepcopy(store.repo))
    plugin = tmp_path / "gen_net.py"
    plugin.write_text(
        "from cvtasks.backbones.lenet import LeNet5\n"
        "from cvtasks.registry import BACKBONES\n\n\n"
        "@BACKBONES.register('gen_net', override=True)\n"
        "def gen_net(in_chans=1, drop_rate=0.0, pool='avg', pretrained=None):\n"
        "    return LeNet5(in_chans=in_chans, drop_rate=drop_rate, pool=pool)\n"
    )
    overrides = [f"plugins=[{plugin}]", "backbone=gen_net", "backbone.pool=max"]
    setup_hydra(overrides)
    check_group_choices(overrides, [CONFIG_DIR])
    backbone = compose_train(*overrides).backbone
    assert OmegaConf.to_container(backbone) == {
        "name": "gen_net",
        "in_chans": 3,  # auto, whatever the builder's default: the built-in digits are RGB
        "drop_rate": 0.0,
        "pretrained": None,
        "pool": "max",
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["backbone=x", "trainer=cpu"], []),
        (["plugins=[./a.py,pkg.nets]", "backbone=a"], ["./a.py", "pkg.nets"]),
        (["+plugins=./b.py"], ["./b.py"]),
        (["plugins=[./a.py]", "++plugins=[]"], []),
        (["plugins=null"], []),
    ],
)
def test_plugin_specs_read_the_command_lines_plugins(args, expected):
    assert plugin_specs(args) == expected


def test_a_plugin_list_hydra_cannot_parse_is_one_line_naming_it():
    with pytest.raises(ValueError, match=r"plugins=\[./a.py: not a plugin list, e.g. plugins="):
        plugin_specs(["plugins=[./a.py"])
    with pytest.raises(ConfigError, match="not a plugin list"):
        setup_hydra(["plugins=[./a.py"])
