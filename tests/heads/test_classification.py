import pytest
import torch
import torch.nn.functional as F

from cvtasks.registry import HEADS

INFO = [
    {"num_chs": 8, "reduction": 2, "module": "s1"},
    {"num_chs": 16, "reduction": 4, "module": "s2"},
]


def features():
    torch.manual_seed(0)
    return [torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)]


def test_linear_head_is_pooled_features_times_weights():
    head = HEADS.build("linear", feature_info=INFO, num_classes=5).eval()
    feats = features()
    linear = head.layers[-1]
    expected = F.linear(feats[-1].mean(dim=(2, 3)), linear.weight, linear.bias)
    torch.testing.assert_close(head(feats), expected)


def test_mlp_head_hidden_layers_and_activation():
    head = HEADS.build("mlp", feature_info=INFO, num_classes=3, hidden_dims=[84], act_layer="tanh")
    head.eval()
    feats = features()
    hidden, out = head.layers[3], head.layers[-1]
    assert hidden.out_features == 84 and isinstance(head.layers[4], torch.nn.Tanh)
    expected = F.linear(
        torch.tanh(F.linear(feats[-1].mean(dim=(2, 3)), hidden.weight, hidden.bias)),
        out.weight,
        out.bias,
    )
    torch.testing.assert_close(head(feats), expected)


def test_dropout_is_active_in_training_only():
    head = HEADS.build("linear", feature_info=INFO, num_classes=4, dropout=0.5)
    feats = features()
    head.train()
    assert not torch.equal(head(feats), head(feats))
    head.eval()
    assert torch.equal(head(feats), head(feats))


def test_bad_values_are_rejected():
    with pytest.raises(ValueError, match="dropout"):
        HEADS.build("linear", feature_info=INFO, num_classes=4, dropout=1.5)
    with pytest.raises(ValueError, match="num_classes"):
        HEADS.build("linear", feature_info=INFO, num_classes=0)
    with pytest.raises(ValueError, match="Did you mean tanh"):
        HEADS.build("mlp", feature_info=INFO, num_classes=4, act_layer="tahn")
