"""EfficientNet-B0..B7 against torchvision: sizes, scaling, checkpoints, folding, speed paths."""

import logging
import time
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from omegaconf import OmegaConf
from torchvision.ops import StochasticDepth

from cvtasks.backbones import efficientnet, validate_backbone
from cvtasks.backbones.efficientnet import VARIANTS, EfficientNet, efficientnet_b0
from cvtasks.layers import DropPath, fuse_batchnorm
from cvtasks.registry import BACKBONES

LOGGER = "cvtasks.backbones"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # On a shared 2-core machine two OpenMP threads spin against other processes: B7 forward
    # and backward at 64x64 took 27 s with 2 threads and 2.3 s with 1 under load.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name, **kwargs):
    return getattr(efficientnet, name)(**kwargs)


def on_meta(name):
    with torch.device("meta"):
        return build(name, num_classes=1000), getattr(tvm, name)()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_matches_torchvision_parameters_norms_and_stochastic_depth(name):
    ours, theirs = on_meta(name)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    norms = [(m.eps, m.momentum) for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    expected = [
        (m.eps, m.momentum) for m in theirs.modules() if isinstance(m, torch.nn.BatchNorm2d)
    ]
    assert norms == expected  # eps 1e-3, momentum 0.01 in B5-B7 only
    rates = [m.p for m in ours.modules() if isinstance(m, DropPath)]
    assert rates == pytest.approx([m.p for m in theirs.modules() if isinstance(m, StochasticDepth)])
    assert ours.default_input_size == VARIANTS[name][2]
    assert ours.drop_rate == VARIANTS[name][3]
    assert ours.num_features == ours.feature_info[-1]["num_chs"] == ours.head_chs // 4


def test_b0_is_the_papers_baseline():
    ours, _ = on_meta("efficientnet_b0")
    assert sum(p.numel() for p in ours.parameters()) == 5_288_548
    assert [len(stage) for stage in ours.blocks] == [1, 2, 2, 3, 3, 4, 1]
    assert (ours.stem.conv.out_channels, ours.conv_head.conv.out_channels) == (32, 1280)
    x = torch.empty(1, 3, 224, 224, device="meta")
    shapes = [tuple(f.shape[1:]) for f in ours.forward_features(x)]
    assert shapes == [(16, 112, 112), (24, 56, 56), (40, 28, 28), (112, 14, 14), (320, 7, 7)]
    assert [i["reduction"] for i in ours.feature_info] == [2, 4, 8, 16, 32]
    validate_backbone(ours, x)


def test_compound_scaling_rounds_depth_up_and_width_to_eights():
    b1, _ = on_meta("efficientnet_b1")  # depth 1.1: ceil(1.1), ceil(2.2), ... ceil(4.4)
    assert [len(stage) for stage in b1.blocks] == [2, 3, 3, 4, 4, 5, 2]
    b7, _ = on_meta("efficientnet_b7")  # width 2.0, depth 3.1
    assert [len(stage) for stage in b7.blocks] == [4, 7, 7, 10, 10, 13, 4]
    assert [i["num_chs"] for i in b7.feature_info] == [32, 48, 80, 224, 640]
    assert (b7.stem.conv.out_channels, b7.head_chs) == (64, 2560)


def test_classifier_parts_exist_only_with_classes():
    net = EfficientNet(num_classes=0)
    assert isinstance(net.conv_head, torch.nn.Identity) and isinstance(net.fc, torch.nn.Identity)
    x = torch.randn(2, 3, 64, 64)
    assert net(x).shape == (2, 320)
    classifier = EfficientNet(num_classes=7).eval()
    pooled = classifier.forward_head(classifier.forward_features(x)[-1], pre_logits=True)
    assert pooled.shape == (2, 320)
    with pytest.raises(ValueError, match="drop_path_rate"):
        EfficientNet(drop_path_rate=1.0)


def random_torchvision_b0(num_classes=1000):
    """torchvision's B0 with random weights and BatchNorm statistics (its init leaves them 0/1)."""
    torch.manual_seed(0)
    model = tvm.efficientnet_b0(num_classes=num_classes)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0.0, 0.1)
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def torchvision_b0(tmp_path_factory):
    model = random_torchvision_b0()
    path = Path(tmp_path_factory.mktemp("weights")) / "efficientnet_b0.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_torchvision_checkpoint_gives_torchvisions_outputs(torchvision_b0):
    theirs, path = torchvision_b0
    ours = BACKBONES.build("efficientnet_b0", num_classes=1000, pretrained=str(path)).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-4, rtol=1e-4)
        last_block = theirs.features[:8](x)  # stem + seven stages, before the head conv
        torch.testing.assert_close(ours.forward_features(x)[-1], last_block, atol=1e-4, rtol=1e-4)


def test_other_num_classes_restarts_only_the_linear_layer(torchvision_b0, caplog):
    theirs, path = torchvision_b0
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ours = efficientnet_b0(num_classes=5, pretrained=path)
    assert "classifier" in caplog.text and "fc.weight" in caplog.text
    torch.testing.assert_close(ours.conv_head.conv.weight, theirs.features[8][0].weight)
    assert ours.fc.weight.shape == (5, 1280)
    features_only = efficientnet_b0(num_classes=0, pretrained=path)  # head conv and fc skipped
    torch.testing.assert_close(features_only.stem.conv.weight, theirs.features[0][0].weight)


def test_other_in_chans_adapts_only_the_stem_conv(torchvision_b0, caplog):
    theirs, path = torchvision_b0
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ours = efficientnet_b0(in_chans=1, num_classes=1000, pretrained=path)
    assert "stem.conv.weight has 3 input channels, the model 1" in caplog.text
    expected = theirs.features[0][0].weight.sum(1, keepdim=True)
    torch.testing.assert_close(ours.stem.conv.weight, expected)
    torch.testing.assert_close(ours.stem.bn.running_var, theirs.features[0][1].running_var)
    torch.testing.assert_close(ours.fc.weight, theirs.classifier[1].weight)


def test_fused_batchnorm_keeps_eval_outputs(torchvision_b0):
    _, path = torchvision_b0
    net = efficientnet_b0(num_classes=1000, pretrained=path).eval()
    fused = fuse_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), net(x), atol=1e-4, rtol=1e-4)


def test_channels_last_forward_backward():
    torch.manual_seed(0)
    net = EfficientNet(num_classes=3, drop_path_rate=0.5).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64).to(memory_format=torch.channels_last)
    net(x).logsumexp(dim=1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.slow  # inductor compiles B0 in 40-190 s on a busy 2-core CPU
def test_compiled_fullgraph_equals_eager():
    torch.manual_seed(0)
    net = EfficientNet(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    start = time.perf_counter()
    compiled = torch.compile(net, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), atol=1e-4, rtol=1e-4)
    print(f"torch.compile of B0: {time.perf_counter() - start:.1f} s")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_hydra_config_builds_its_variant(compose_train, name):
    cfg = OmegaConf.to_container(compose_train(f"backbone={name}").backbone)
    assert cfg["name"] == name and cfg["drop_rate"] == VARIANTS[name][3]
    with torch.device("meta"):
        net = BACKBONES.build(cfg.pop("name"), **cfg)
    assert net.drop_rate == VARIANTS[name][3] and net.in_chans == 3
