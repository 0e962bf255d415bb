"""Localization heads: output contract, a hand-checked attention box, gradients, bad values."""

import pytest
import torch

from cvtasks.registry import HEADS

INFO = [
    {"num_chs": 8, "reduction": 2, "module": "s1"},
    {"num_chs": 16, "reduction": 4, "module": "s2"},
]


def features(batch=2):
    torch.manual_seed(0)
    return [torch.randn(batch, 8, 8, 8), torch.randn(batch, 16, 5, 7)]


@pytest.mark.parametrize("name", ["localization", "localization_fc"])
def test_scores_for_nothing_plus_classes_and_a_normalized_box(name):
    head = HEADS.build(name, feature_info=INFO, num_classes=3)
    out = head(features())
    assert out["logits"].shape == (2, 4) and out["box"].shape == (2, 4)
    assert torch.all(out["box"][:, 2:] > 0) and torch.all(out["box"][:, 2:] < 1)


@pytest.mark.parametrize("name", ["localization", "localization_fc"])
def test_every_parameter_gets_a_gradient(name):
    head = HEADS.build(name, feature_info=INFO, num_classes=2)
    out = head(features())
    (out["logits"].sum() + out["box"].sum()).backward()
    for pname, param in head.named_parameters():
        assert param.grad is not None and torch.any(param.grad != 0), pname


def test_attention_head_with_silent_proposals_predicts_the_centred_half_box():
    # Zero proposal weights: uniform attention over the cells, no offsets, sigmoid(0) sizes.
    head = HEADS.build("localization", feature_info=INFO, num_classes=2, channels=0).eval()
    torch.nn.init.zeros_(head.proposals.weight)
    torch.nn.init.zeros_(head.proposals.bias)
    box = head(features())["box"]
    torch.testing.assert_close(box, torch.full((2, 4), 0.5))


def test_attention_on_one_cell_puts_the_box_at_that_cell():
    head = HEADS.build("localization", feature_info=INFO, num_classes=2, channels=0).eval()
    torch.nn.init.zeros_(head.proposals.weight)
    torch.nn.init.zeros_(head.proposals.bias)
    feats = [torch.zeros(1, 8, 8, 8), torch.zeros(1, 16, 5, 7)]
    feats[1][0, 0, 3, 6] = 1.0  # one hot cell: row 3 of 5, column 6 of 7
    with torch.no_grad():
        head.proposals.weight[0, 0] = 100.0  # attention follows channel 0
    box = head(feats)["box"][0]
    torch.testing.assert_close(box, torch.tensor([6.5 / 7, 3.5 / 5, 0.5, 0.5]), atol=1e-4, rtol=0)


def test_feature_index_picks_the_stage():
    head = HEADS.build("localization_fc", feature_info=INFO, num_classes=2, feature_index=0)
    assert head.layers[3].in_features == 8 * 4 * 4  # pool, flatten, dropout, linear
    assert head(features())["logits"].shape == (2, 3)


def test_bad_values_are_rejected():
    with pytest.raises(ValueError, match="num_classes"):
        HEADS.build("localization", feature_info=INFO, num_classes=0)
    with pytest.raises(ValueError, match="feature_index"):
        HEADS.build("localization", feature_info=INFO, num_classes=2, feature_index=5)
    with pytest.raises(ValueError, match="dropout"):
        HEADS.build("localization_fc", feature_info=INFO, num_classes=2, dropout=1.0)
    with pytest.raises(ValueError, match="max_offset"):
        HEADS.build("localization", feature_info=INFO, num_classes=2, max_offset=0)
