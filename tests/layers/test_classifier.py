"""Classifier heads a backbone composes, and the argument check every head shares."""

import pytest
import torch
import torchvision
from torch import nn

from cvtasks.layers import FCHead, LinearHead, check_head_args


def test_check_head_args_names_the_key_and_the_bound():
    check_head_args(3, 0.5)
    check_head_args(0, 0.0, minimum=0)  # a backbone without classifier
    with pytest.raises(ValueError, match=r"^num_classes must be an int >= 1, got 0$"):
        check_head_args(0)
    with pytest.raises(ValueError, match=r"num_keypoints must be an int >= 1, got 2\.0"):
        check_head_args(2.0, what="num_keypoints")
    with pytest.raises(ValueError, match=r"num_classes must be an int >= 0 \(0: no classifier\)"):
        check_head_args(-1, minimum=0)
    with pytest.raises(ValueError, match=r"got True"):
        check_head_args(True)
    with pytest.raises(ValueError, match=r"^task\.head\.dropout must be in \[0, 1\), got 1\.0$"):
        check_head_args(3, 1.0)
    with pytest.raises(ValueError, match=r"^drop_rate must be in \[0, 1\), got -0\.1$"):
        check_head_args(3, -0.1, dropout_name="drop_rate")


def test_linear_head_pools_then_classifies_with_linear_keys():
    torch.manual_seed(0)
    head = LinearHead(8, 5, drop_rate=0.5).eval()
    assert list(head.state_dict()) == ["weight", "bias"]  # fc.weight, fc.bias in a backbone
    x = torch.randn(2, 8, 3, 4)
    expected = nn.functional.linear(x.mean((2, 3)), head.weight, head.bias)
    torch.testing.assert_close(head(x), expected)
    head.train()
    torch.manual_seed(1)
    assert not torch.allclose(head(x), expected)  # dropout acts in training
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        LinearHead(8, 0)


def test_fc_head_is_torchvisions_alexnet_classifier():
    torch.manual_seed(0)
    ours = FCHead(256, 10, 0.5, pool_size=6, hidden=4096, dropout_first=True).eval()
    theirs = torchvision.models.alexnet(num_classes=10).eval()
    names = {"fc1": "1", "fc2": "4", "fc": "6"}  # torchvision's classifier indices
    state = {f"{names[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in ours.state_dict().items()}
    theirs.classifier.load_state_dict(state)
    x = torch.randn(2, 256, 5, 5)  # smaller than 6x6: the pool repeats, as torchvision's
    with torch.no_grad():
        expected = theirs.classifier(torch.flatten(theirs.avgpool(x), 1))
        torch.testing.assert_close(ours(x), expected)


def test_fc_head_drops_after_the_relus_for_vgg():
    head = FCHead(512, 3, 0.5, pool_size=7, hidden=64, dropout_first=False)
    names = [name for name, _ in head.named_children()]
    assert names == ["pool", "flatten", "fc1", "act1", "drop1", "fc2", "act2", "drop2", "fc"]
