import pytest
import torch
from torch import nn

from cvtasks.layers.activations import ACTIVATIONS, make_activation


@pytest.mark.parametrize(
    ("name", "fn"),
    [
        ("relu", torch.relu),
        ("tanh", torch.tanh),
        ("silu", torch.nn.functional.silu),
        ("GELU", torch.nn.functional.gelu),
    ],
)
def test_names_build_the_matching_function(name, fn):
    x = torch.linspace(-3, 3, 13)
    torch.testing.assert_close(make_activation(name)(x), fn(x))


def test_classes_and_modules_pass_through():
    assert isinstance(make_activation(nn.ReLU6), nn.ReLU6)
    act = nn.LeakyReLU(0.3)
    assert make_activation(act) is act


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match="Did you mean relu"):
        make_activation("rellu")


def test_every_listed_name_builds_its_class():
    for name, cls in ACTIVATIONS.items():
        assert type(make_activation(name)) is cls
