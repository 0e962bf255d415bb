"""Stochastic depth across the registry: every family with residual blocks takes
``drop_path_rate``, drops branches in training only, and the families without residual blocks
refuse the keyword instead of ignoring it."""

import pytest
import torch
from timm.layers import DropPath as TimmDropPath
from torch import nn

from cvtasks.layers import DropPath
from cvtasks.registry import BACKBONES
from tests.backbones.conftest import randomize_bn

#: families whose blocks add a shortcut; the others have no branch to drop.
RESIDUAL = ("resnet", "efficientnet")
PLAIN = ("lenet", "alexnet", "vgg", "googlenet")


def family(name: str) -> str:
    return next(f for f in (*RESIDUAL, *PLAIN) if name.startswith(f))


NAMES = [n for n in BACKBONES.names() if not n.startswith(("mobilenet", "tinynet"))]
RESIDUAL_NAMES = [n for n in NAMES if family(n) in RESIDUAL]
PLAIN_NAMES = [n for n in NAMES if family(n) in PLAIN]


@pytest.mark.parametrize("name", RESIDUAL_NAMES)
def test_residual_families_take_drop_path_rate(name):
    with torch.device("meta"):
        net = BACKBONES.build(name, drop_path_rate=0.3)
    rates = [m.p for m in net.modules() if isinstance(m, DropPath)]
    assert rates and 0.0 < max(rates) <= 0.3
    assert rates == sorted(rates)  # deeper blocks drop more


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_families_without_residual_blocks_refuse_drop_path_rate(name):
    with torch.device("meta"), pytest.raises(TypeError, match="drop_path_rate"):
        BACKBONES.build(name, drop_path_rate=0.1)


def test_every_registered_name_is_classified():
    assert set(RESIDUAL_NAMES) | set(PLAIN_NAMES) == set(NAMES)


def test_timm_backbones_pass_drop_path_rate_to_timm():
    with torch.device("meta"):
        net = BACKBONES.build("timm/resnet10t", drop_path_rate=0.2)
    assert any(isinstance(m, TimmDropPath) and m.drop_prob > 0 for m in net.modules())


def batch_norm_eval(net: nn.Module) -> nn.Module:
    """Training mode with BatchNorm on its running statistics, so only drop path is random."""
    net.train()
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    return net


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_drop_path_is_random_in_training_and_identity_in_eval(name):
    torch.manual_seed(0)
    # no classifier (its dropout is random too): the last stage's features
    dropping = BACKBONES.build(name, drop_path_rate=0.5)
    plain = BACKBONES.build(name, drop_path_rate=0.0)
    randomize_bn(dropping)  # zero-initialized last norms would make every branch 0
    plain.load_state_dict(dropping.state_dict())  # drop path holds no parameters
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(dropping.eval()(x), plain.eval()(x))
        batch_norm_eval(dropping), batch_norm_eval(plain)
        reference = plain(x)
        assert torch.equal(plain(x), reference)  # nothing else is random in training
        torch.manual_seed(1)
        first = dropping(x)
        torch.manual_seed(2)
        second = dropping(x)
    assert not torch.allclose(first, reference) and not torch.allclose(first, second)
