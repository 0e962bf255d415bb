"""The contract checks, the default classifier path and pretrained loading, on a toy backbone."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from cvtasks.backbones import Backbone, check_feature_info, load_pretrained, validate_backbone


class Toy(Backbone):
    """Two conv stages (8 and 16 channels, reductions 2 and 4) on the default head."""

    def __init__(self, num_classes: int = 0, drop_rate: float = 0.0, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.body = nn.Conv2d(8, width, 3, stride=2, padding=1)
        self.feature_info = [
            dict(num_chs=8, reduction=2, module="stem"),
            dict(num_chs=width, reduction=4, module="body"),
        ]
        self.num_features = width
        self.init_head(num_classes, drop_rate)

    def forward_features(self, x):
        a = self.stem(x)
        return [a, self.body(a)]


GOOD = [dict(num_chs=8, reduction=2, module="a"), dict(num_chs=16, reduction=2, module="b")]


def test_check_feature_info_accepts_the_contract_and_extra_keys():
    check_feature_info(GOOD)
    check_feature_info([{**GOOD[0], "index": 0, "stage": 1}])


@pytest.mark.parametrize(
    ("info", "words"),
    [
        ([], "empty"),
        ({"num_chs": 8}, "list of dicts"),
        ([dict(reduction=2, module="a")], "lacks num_chs"),
        ([dict(num_chs=0, reduction=2, module="a")], "num_chs must be an int > 0"),
        ([dict(num_chs=8.0, reduction=2, module="a")], "num_chs must be an int > 0"),
        ([dict(num_chs=True, reduction=2, module="a")], "num_chs must be an int > 0"),
        ([dict(num_chs=8, reduction=0, module="a")], "reduction must be an int >= 1"),
        (
            [dict(num_chs=8, reduction=4, module="a"), dict(num_chs=8, reduction=2, module="b")],
            "non-decreasing",
        ),
        ([dict(num_chs=8, reduction=2, module=3)], "module must be a string"),
    ],
)
def test_check_feature_info_names_the_violation(info, words):
    with pytest.raises(ValueError, match=words):
        check_feature_info(info)


def test_validate_backbone_checks_num_features_and_probed_maps():
    net = Toy()
    validate_backbone(net, torch.randn(1, 3, 16, 16))
    net.num_features = 8
    with pytest.raises(ValueError, match="num_features=8"):
        validate_backbone(net)
    net = Toy()
    net.feature_info[1]["num_chs"] = net.num_features = 32  # declared 32, the map has 16
    validate_backbone(net)
    with pytest.raises(ValueError, match=r"stage 1 \(body\)"):
        validate_backbone(net, torch.randn(1, 3, 16, 16))
    with pytest.raises(TypeError, match="feature_info"):
        validate_backbone(nn.Conv2d(3, 3, 1))


def test_default_head_pools_then_classifies():
    x = torch.randn(2, 3, 16, 16)
    features = Toy()
    pooled = features(x)
    assert pooled.shape == (2, 16)
    torch.testing.assert_close(pooled, features.forward_features(x)[-1].mean(dim=(2, 3)))
    assert not any(isinstance(m, nn.Linear) for m in features.modules())

    classifier = Toy(num_classes=5, drop_rate=0.5).eval()
    logits = classifier(x)
    assert logits.shape == (2, 5)
    pooled = classifier.forward_head(classifier.forward_features(x)[-1], pre_logits=True)
    torch.testing.assert_close(
        logits, nn.functional.linear(pooled, classifier.fc.weight, classifier.fc.bias)
    )
    with pytest.raises(ValueError, match="drop_rate"):
        Toy(drop_rate=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        Toy(num_classes=-1)


def _same_weights(a: nn.Module, b: nn.Module, skip: str = "fc.") -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items() if not k.startswith(skip))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_pretrained_round_trip(tmp_path, suffix):
    src = Toy(num_classes=5)
    path = tmp_path / f"toy{suffix}"
    if suffix == ".safetensors":
        save_file(src.state_dict(), str(path))
    else:
        torch.save(src.state_dict(), path)
    dst = Toy(num_classes=5)
    assert load_pretrained(dst, path) == ([], [], [])
    assert _same_weights(src, dst, skip="-")


def test_load_pretrained_skips_a_classifier_of_another_size(tmp_path):
    src = Toy(num_classes=10)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "ckpt.pth")  # nested, like Lightning
    for num_classes in (5, 0):
        dst = Toy(num_classes=num_classes)
        fresh_fc = {k: v.clone() for k, v in dst.state_dict().items() if k.startswith("fc.")}
        report = load_pretrained(dst, tmp_path / "ckpt.pth")
        assert sorted(report.skipped_classifier) == ["fc.bias", "fc.weight"]
        assert _same_weights(src, dst)
        assert all(torch.equal(dst.state_dict()[k], v) for k, v in fresh_fc.items())


def test_load_pretrained_lists_missing_and_unexpected_keys(tmp_path):
    state = Toy().state_dict()
    del state["body.bias"]
    state["neck.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    words = r"missing keys, e\.g\. body\.bias.*unexpected keys, e\.g\. neck\.weight"
    with pytest.raises(ValueError, match=words):
        load_pretrained(Toy(), tmp_path / "bad.pth")
    report = load_pretrained(Toy(), tmp_path / "bad.pth", strict=False)
    assert report.missing == ["body.bias"] and report.unexpected == ["neck.weight"]


def test_load_pretrained_reports_shape_mismatch_outside_the_classifier(tmp_path):
    torch.save(Toy(width=32).state_dict(), tmp_path / "wide.pth")
    with pytest.raises(ValueError, match=r"body\.weight \(file \(32, 8, 3, 3\), model \(16, 8"):
        load_pretrained(Toy(), tmp_path / "wide.pth")


def test_load_pretrained_key_maps(tmp_path):
    src = Toy()
    wrapped = {"module.backbone." + k: v for k, v in src.state_dict().items()}
    wrapped["module.head.weight"] = torch.zeros(3)
    torch.save(wrapped, tmp_path / "task.pth")
    dst = Toy()
    load_pretrained(dst, tmp_path / "task.pth", key_map={"backbone.": "", "head.": None})
    assert _same_weights(src, dst, skip="-")

    def swap(state, model):
        assert isinstance(model, Toy)
        return {k.replace("trunk", "body"): v for k, v in state.items()}

    torch.save(
        {k.replace("body", "trunk"): v for k, v in src.state_dict().items()},
        tmp_path / "renamed.pth",
    )
    dst = Toy()
    load_pretrained(dst, tmp_path / "renamed.pth", key_map=swap)
    assert _same_weights(src, dst, skip="-")


def test_load_pretrained_refuses_non_tensors(tmp_path):
    torch.save({"stem.weight": [1, 2]}, tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"not tensors: stem\.weight"):
        load_pretrained(Toy(), tmp_path / "list.pth")
