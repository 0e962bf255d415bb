"""``timm/<name>`` backbones against timm itself: features, head, checkpoints, unknown names."""

import subprocess
import sys

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from cvtasks.backbones import validate_backbone
from cvtasks.registry import BACKBONES

# resnet10t keeps timm's module names; mobilenetv3 uses timm's own features class
MODELS = ["resnet10t", "mobilenetv3_small_050"]


@pytest.mark.parametrize("name", MODELS)
def test_features_match_timm_features_only(name):
    torch.manual_seed(0)
    net = BACKBONES.build(f"timm/{name}", in_chans=3).eval()
    ref = timm.create_model(name, features_only=True, pretrained=False).eval()
    ref.load_state_dict(net.model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = net.forward_features(x), ref(x)
    assert [f.shape for f in ours] == [f.shape for f in theirs]
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    expected = [
        {k: d[k] for k in ("num_chs", "reduction", "module")} for d in ref.feature_info.get_dicts()
    ]
    assert net.feature_info == expected
    assert net.num_features == expected[-1]["num_chs"]
    validate_backbone(net, x)


def test_forward_gives_logits_or_pooled_features():
    x = torch.randn(2, 3, 64, 64)
    assert BACKBONES.build("timm/resnet10t", num_classes=5, drop_rate=0.2)(x).shape == (2, 5)
    assert BACKBONES.build("timm/resnet10t")(x).shape == (2, 512)
    net = BACKBONES.build("timm/resnet10t", in_chans=1, out_indices=(2, 3))  # kwargs reach timm
    assert [i["reduction"] for i in net.feature_info] == [8, 16]
    assert net(torch.randn(2, 1, 64, 64)).shape == (2, 256)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("name", MODELS)
def test_pretrained_full_model_checkpoint_round_trip(tmp_path, name, suffix):
    full = timm.create_model(name, pretrained=False)  # a full model, classifier included
    with torch.no_grad():
        for buf in full.buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5)  # non-trivial BN statistics must load too
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".safetensors":
        save_file(full.state_dict(), str(path))
    else:
        torch.save(full.state_dict(), path)
    net = BACKBONES.build(f"timm/{name}", num_classes=7, pretrained=str(path)).eval()
    # oracle: timm loading the same file into its own features-only model
    ref = timm.create_model(
        name, features_only=True, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))
    ).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(net.forward_features(x), ref(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_pretrained_torchvision_resnet_checkpoint(tmp_path):
    tv = torchvision.models.resnet18(weights=None).eval()  # random init: nothing is downloaded
    torch.save(tv.state_dict(), tmp_path / "tv_resnet18.pth")
    net = BACKBONES.build("timm/resnet18", pretrained=str(tmp_path / "tv_resnet18.pth")).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        stem = tv.relu(tv.bn1(tv.conv1(x)))
        layer4 = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(stem)))))
        features = net.forward_features(x)
    torch.testing.assert_close(features[0], stem, rtol=0, atol=1e-6)
    torch.testing.assert_close(features[-1], layer4, rtol=0, atol=1e-6)


def test_pretrained_own_checkpoint_round_trip(tmp_path):
    src = BACKBONES.build("timm/resnet10t", num_classes=5)
    torch.save(src.state_dict(), tmp_path / "own.pth")
    dst = BACKBONES.build("timm/resnet10t", num_classes=5, pretrained=str(tmp_path / "own.pth"))
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k


def test_pretrained_missing_or_stray_stage_keys_are_errors(tmp_path):
    state = timm.create_model("resnet10t").state_dict()
    del state["layer2.0.conv1.weight"]
    state["layer1.0.bn1.gamma"] = torch.ones(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(
        ValueError,
        match=r"model\.layer2\.0\.conv1\.weight.*"
        r"model\.layer1\.0\.bn1\.gamma",
    ):
        BACKBONES.build("timm/resnet10t", pretrained=str(tmp_path / "bad.pth"))


def test_unknown_timm_model_suggests_close_names():
    with pytest.raises(KeyError, match=r"Did you mean: .*timm/resnet10t"):
        BACKBONES.build("timm/resnet10")


def test_importing_backbones_does_not_import_timm():
    code = "import sys, cvtasks.backbones; assert 'timm' not in sys.modules, 'timm imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_timm_keywords_pass_through():
    from cvtasks.backbones.timm_adapter import TimmBackbone

    net = TimmBackbone("resnet10t", out_indices=(2, 4))
    assert [i["reduction"] for i in net.feature_info] == [8, 32]
    assert net.num_features == net.feature_info[-1]["num_chs"] == 512
