"""GoogLeNet against seed 001 and its own layer arithmetic: shapes, parameters, auxiliary losses."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cvtasks.backbones import validate_backbone
from cvtasks.backbones.googlenet import GoogLeNet, InceptionAux, googlenet
from cvtasks.layers import fuse_batchnorm
from cvtasks.registry import BACKBONES
from cvtasks.tasks.base import WithAux
from cvtasks.tasks.classification import ClassificationTask

ROOT = Path(__file__).parents[2]

# Szegedy et al. 2014 Table 1 (3a is seed 001 Fig 6.13): in, 1x1, 3x3 red, 3x3, 5x5 red, 5x5, pool
TABLE = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}
SIDE_AT_224 = {"3": 28, "4": 14, "5": 7}  # spatial size of each inception group's maps


# Two cores shared by several jobs: two spinning OpenMP threads run GoogLeNet ~50x slower than
# one here, so these tests use one and give the setting back afterwards.
pytestmark = pytest.mark.usefixtures("one_thread")


def conv_params(cin: int, cout: int, k: int, bn: bool) -> int:
    # BN replaces the conv bias by a scale and a shift per channel
    return cin * cout * k * k + (2 * cout if bn else cout)


def expected_params(num_classes: int, bn: bool = True, aux: bool = False, in_chans=3) -> int:
    count = conv_params(in_chans, 64, 7, bn) + conv_params(64, 64, 1, bn)
    count += conv_params(64, 192, 3, bn)
    for cin, c1, r3, c3, r5, c5, pp in TABLE.values():
        count += conv_params(cin, c1, 1, bn) + conv_params(cin, r3, 1, bn)
        count += conv_params(r3, c3, 3, bn) + conv_params(cin, r5, 1, bn)
        count += conv_params(r5, c5, 5, bn) + conv_params(cin, pp, 1, bn)  # real 5x5 (seed)
    if num_classes:
        count += 1024 * num_classes + num_classes
    if aux:
        for cin in (512, 528):  # 1x1 conv 128, FC 128·4·4 → 1024, FC 1024 → classes
            count += conv_params(cin, 128, 1, bn) + 2048 * 1024 + 1024
            count += 1024 * num_classes + num_classes
    return count


def meta_net(**kw) -> GoogLeNet:
    with torch.device("meta"):
        return GoogLeNet(**kw)


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_every_inception_module_shape_at_224():
    net = meta_net().eval()
    seen = {}
    for name in TABLE:
        module = getattr(net, name)
        module.register_forward_hook(
            lambda m, inp, out, name=name: seen.update({name: (inp[0].shape, out.shape)})
        )
    features = net.forward_features(torch.empty(2, 3, 224, 224, device="meta"))
    for name, (cin, c1, _, c3, _, c5, pp) in TABLE.items():
        side = SIDE_AT_224[name[9]]
        assert seen[name] == ((2, cin, side, side), (2, c1 + c3 + c5 + pp, side, side)), name
    assert seen["inception3a"][1] == (2, 256, 28, 28)  # Fig 6.13: 192x28x28 → 256x28x28
    shapes = [tuple(f.shape[1:]) for f in features]
    assert shapes == [(64, 112, 112), (192, 56, 56), (480, 28, 28), (832, 14, 14), (1024, 7, 7)]
    assert [i["reduction"] for i in net.feature_info] == [2, 4, 8, 16, 32]
    assert [i["module"] for i in net.feature_info] == [
        "conv1", "conv3", "inception3b", "inception4e", "inception5b"
    ]  # fmt: skip
    assert net.num_features == 1024
    assert net.inception3a.branch3[1].conv.kernel_size == (5, 5)  # the seed's, not torchvision's


@pytest.mark.parametrize(
    ("kw", "aux"),
    [
        (dict(num_classes=1000), False),
        (dict(num_classes=0), False),
        (dict(num_classes=10, in_chans=1), False),
        (dict(num_classes=1000, norm_layer=None), False),
        (dict(num_classes=1000, aux_logits=True), True),
    ],
)
def test_parameter_count_matches_the_layer_arithmetic(kw, aux):
    net = meta_net(**kw)
    bn = kw.get("norm_layer", "batchnorm") is not None
    expected = expected_params(kw["num_classes"], bn, aux, kw.get("in_chans", 3))
    assert num_params(net) == expected
    if kw == dict(num_classes=1000):
        assert expected == 7_005_832
    if kw.get("norm_layer", "") is None:  # the 2014 layers: the seed's "about 6.8 million"
        assert expected == 6_998_552


def test_registry_builds_googlenet_and_validates_at_64():
    net = BACKBONES.build("googlenet", num_classes=3)
    assert isinstance(net, GoogLeNet) and not net.aux_enabled and net.aux1 is None
    assert net.drop_rate == 0.4
    validate_backbone(net, torch.randn(1, 3, 64, 64))


def test_aux_heads_pool_5x5_stride_3_at_14_and_adaptively_elsewhere():
    torch.manual_seed(0)
    head = InceptionAux(512, 10).eval()
    x = torch.randn(2, 512, 14, 14)
    assert head(x).shape == (2, 10)
    pooled = F.avg_pool2d(x, 5, 3)  # Szegedy et al. 2014 §5: 4x4 out of 14x14
    expected = head.fc2(F.relu(head.fc1(head.conv(pooled).flatten(1))))
    torch.testing.assert_close(head(x), expected)
    small = torch.randn(2, 512, 4, 4)  # a 64x64 input's 4a map: already 4x4
    expected = head.fc2(F.relu(head.fc1(head.conv(small).flatten(1))))
    torch.testing.assert_close(head(small), expected)
    assert head(torch.randn(1, 512, 9, 7)).shape == (1, 10)
    assert head.dropout.p == 0.7


def test_aux_heads_are_built_on_request_and_never_run_in_forward_features():
    net = GoogLeNet(num_classes=5)
    with pytest.raises(RuntimeError, match="init_aux"):
        net.forward_features_aux(torch.randn(1, 3, 64, 64))
    net.init_aux(7)
    assert net.aux_enabled and net.aux1.fc1.in_features == 2048
    assert (net.aux1.conv.conv.in_channels, net.aux2.conv.conv.in_channels) == (512, 528)
    calls = []
    for head in (net.aux1, net.aux2):
        head.register_forward_hook(lambda *args: calls.append(1))
    x = torch.randn(2, 3, 64, 64)
    _, aux = net.forward_features_aux(x)
    assert [a.shape for a in aux] == [(2, 7), (2, 7)] and len(calls) == 2
    net.eval()
    torch.testing.assert_close(net.forward_features(x), net.forward_features_aux(x)[0])
    calls.clear()
    net.forward_features(x)
    net(x)
    assert not calls
    same = net.aux1
    net.init_aux(7)  # already there with 7 classes: kept
    assert net.aux1 is same
    with pytest.raises(ValueError, match="aux_weight"):
        GoogLeNet(aux_logits=True)  # no classes to predict


def test_aux_logits_at_224_on_meta():
    net = meta_net(num_classes=1000, aux_logits=True)
    features, aux = net.forward_features_aux(torch.empty(1, 3, 224, 224, device="meta"))
    assert [tuple(a.shape) for a in aux] == [(1, 1000), (1, 1000)]
    assert features[-1].shape == (1, 1024, 7, 7)


def test_task_trains_with_intermediate_losses_and_infers_without_them():
    import cvtasks.backbones.googlenet  # noqa: F401  (registers "googlenet")

    torch.manual_seed(0)
    task = ClassificationTask(backbone={"name": "googlenet"}, num_classes=10, aux_weight=0.3)
    images, labels = torch.randn(4, 3, 64, 64), torch.tensor([0, 3, 9, 3])
    task.train()
    torch.manual_seed(1)  # the same dropout masks in both passes
    outputs = task(images)
    assert isinstance(outputs, WithAux) and len(outputs.aux) == 2
    assert [a.shape for a in outputs.aux] == [(4, 10), (4, 10)]
    # seed 001 §6.5 (inception networks): the optimization uses the sum of all loss functions
    aux1, aux2 = outputs.aux
    expected = F.cross_entropy(outputs.main, labels) + 0.3 * (
        F.cross_entropy(aux1, labels) + F.cross_entropy(aux2, labels)
    )
    torch.manual_seed(1)
    loss = task._step({"image": images, "label": labels}, "train")
    torch.testing.assert_close(loss, expected)
    task.eval()
    logits = task(images)
    assert isinstance(logits, torch.Tensor) and logits.shape == (4, 10)


def randomize_batchnorm(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def test_fuse_batchnorm_keeps_eval_outputs():
    torch.manual_seed(0)
    net = GoogLeNet(num_classes=10, aux_logits=True).eval()
    randomize_batchnorm(net)
    fused = fuse_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), net(x), atol=1e-4, rtol=1e-4)
        for a, b in zip(fused.forward_features(x), net.forward_features(x)):
            # float32 rounding grows with the maps (hundreds deep in the net): compare to scale
            assert (a - b).abs().max() <= 1e-5 * b.abs().max().clamp(min=1.0)


def test_channels_last_forward_backward():
    torch.manual_seed(0)
    net = GoogLeNet(num_classes=5, aux_logits=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = net(x)
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    xcl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(cl(xcl), expected, atol=1e-4, rtol=1e-4)
    cl.train()
    features, aux = cl.forward_features_aux(xcl)
    loss = cl.forward_head(features[-1]).logsumexp(1).sum() + sum(a.logsumexp(1).sum() for a in aux)
    loss.backward()
    no_grad = [n for n, p in cl.named_parameters() if p.grad is None]
    assert not no_grad, no_grad[:5]


def test_pretrained_own_checkpoint_loads_unchanged(tmp_path):
    torch.manual_seed(0)
    src = GoogLeNet(num_classes=10, aux_logits=True)
    torch.save(src.state_dict(), tmp_path / "own.pth")
    same = googlenet(num_classes=10, aux_logits=True, pretrained=tmp_path / "own.pth")
    for (name, a), b in zip(src.state_dict().items(), same.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    plain = googlenet(num_classes=3, pretrained=tmp_path / "own.pth")  # aux heads and fc skipped
    torch.testing.assert_close(
        plain.inception5b.branch3[1].conv.weight, src.inception5b.branch3[1].conv.weight
    )
    assert plain.aux1 is None
    gray = googlenet(in_chans=1, pretrained=tmp_path / "own.pth")  # the stem conv adapted
    torch.testing.assert_close(gray.conv1.conv.weight, src.conv1.conv.weight.sum(1, keepdim=True))
    torch.testing.assert_close(gray.conv3.conv.weight, src.conv3.conv.weight)


def test_a_torchvision_file_loads_with_padded_kernels_and_shifted_variances(tmp_path):
    from torchvision.models import googlenet as tv_googlenet

    torch.manual_seed(0)
    theirs = tv_googlenet(weights=None, aux_logits=True, init_weights=True)
    torch.save(theirs.state_dict(), tmp_path / "torchvision.pth")
    ours = googlenet(num_classes=1000, aux_logits=True, pretrained=tmp_path / "torchvision.pth")
    expected = F.pad(theirs.inception3a.branch3[1].conv.weight, (1, 1, 1, 1))
    assert torch.equal(ours.inception3a.branch3[1].conv.weight, expected)
    bn, their_bn = ours.aux2.conv.bn, theirs.aux2.conv.bn
    assert (their_bn.eps, bn.eps) == (1e-3, 1e-5)
    torch.testing.assert_close(bn.running_var + bn.eps, their_bn.running_var + their_bn.eps)
    torch.testing.assert_close(ours.aux1.fc2.weight, theirs.aux1.fc2.weight)


def test_forward_features_and_aux_capture_as_one_graph():
    # fullgraph=True fails on any graph break; the eager backend checks that without codegen.
    torch.manual_seed(0)
    net = GoogLeNet(num_classes=5, aux_logits=True, aux_drop_rate=0.0)
    eager = copy.deepcopy(net)
    x = torch.randn(2, 3, 64, 64)
    captured = torch.compile(net.forward_features_aux, fullgraph=True, backend="eager")
    features, aux = captured(x)
    ref_features, ref_aux = eager.forward_features_aux(x)
    assert len(features) == 5 and len(aux) == 2
    for a, b in zip([*features, *aux], [*ref_features, *ref_aux]):
        torch.testing.assert_close(a, b)
    net.eval()
    captured = torch.compile(net.forward_features, fullgraph=True, backend="eager")
    with torch.no_grad():
        for a, b in zip(captured(x), net.forward_features(x)):
            torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_inductor_forward_features_aux_equals_eager_in_training():
    # float64: train-mode BatchNorm over 2x2 maps of a batch of 2 magnifies float32 rounding
    # differences between inductor's and eager's reductions far beyond any fixed tolerance.
    torch.manual_seed(0)
    net = GoogLeNet(num_classes=5, aux_logits=True, aux_drop_rate=0.0).double().train()
    eager = copy.deepcopy(net)  # each updates its own BatchNorm statistics once
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    features, aux = torch.compile(net.forward_features_aux, fullgraph=True)(x)
    ref_features, ref_aux = eager.forward_features_aux(x)
    assert [a.shape for a in aux] == [(2, 5), (2, 5)]
    for a, b in zip([*features, *aux], [*ref_features, *ref_aux]):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(net.conv1.bn.running_var, eager.conv1.bn.running_var)


@pytest.mark.slow
def test_train_py_trains_googlenet_on_the_digits(tmp_path):
    cmd = [
        sys.executable,
        "train.py",
        "backbone=googlenet",
        "data.image_size=64",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "callbacks.progress_bar=null",
        "logger=none",
        f"hydra.run.dir={tmp_path}/run",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see one_thread: 34 s instead of 117 s
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert (tmp_path / "run" / "metrics.json").exists()
