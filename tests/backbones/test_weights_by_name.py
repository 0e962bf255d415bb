"""Pretrained weights by name: torchvision's tables, the torch.hub cache, downloads, offline."""

from __future__ import annotations

import hashlib
import http.server
import logging
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
import torchvision

from cvtasks.backbones import named_weights
from cvtasks.backbones.named_weights import (
    MIRROR_ENV,
    TIMEOUT_ENV,
    WeightsChecksumError,
    WeightsDownloadError,
    cache_path,
    fetch,
)
from cvtasks.registry import BACKBONES
from tests.conftest import TINY

RESNET18 = torchvision.models.ResNet18_Weights.IMAGENET1K_V1


def _closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """Serves the files of a folder on 127.0.0.1 and counts the requests."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME, and any request to torchvision's host sent to a closed port."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{_closed_port()}/models")
    return home


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    (root / "models").mkdir(parents=True)
    srv = _Server(root)
    yield srv, root / "models"
    srv.close()


def _torchvision_resnet18_file(path: Path) -> torch.nn.Module:
    """Random torchvision ResNet-18 weights (non-trivial BN statistics) saved at ``path``."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference.state_dict(), path)
    return reference.eval()


def test_cache_is_torch_hubs_checkpoint_folder(torch_home):
    assert cache_path(RESNET18.url) == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"


def test_a_cached_file_loads_with_torchvisions_logits_and_no_request(torch_home):
    reference = _torchvision_resnet18_file(cache_path(RESNET18.url))
    # the mirror points at a closed port: any request would fail the build
    model = BACKBONES.build("resnet18", num_classes=1000, pretrained="torchvision").eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-4)
    cfg = model.pretrained_cfg
    assert cfg["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert cfg["categories"] == RESNET18.meta["categories"]
    assert (cfg["crop_size"], cfg["resize_size"], cfg["interpolation"]) == (
        [224],
        [256],
        "bilinear",
    )
    assert cfg["mean"] == [0.485, 0.456, 0.406] and cfg["std"] == [0.229, 0.224, 0.225]


def test_an_entry_by_name_and_a_features_only_model(torch_home):
    _torchvision_resnet18_file(cache_path(RESNET18.url))
    model = BACKBONES.build("resnet18", num_classes=0, pretrained="torchvision:IMAGENET1K_V1")
    assert model.pretrained_cfg["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    full = BACKBONES.build("resnet18", pretrained="torchvision:ResNet18_Weights.IMAGENET1K_V1")
    assert torch.equal(model.conv1.weight, full.conv1.weight)


def test_a_grayscale_model_adapts_the_stem_and_loads_the_rest(torch_home):
    reference = _torchvision_resnet18_file(cache_path(RESNET18.url))
    model = BACKBONES.build("resnet18", in_chans=1, pretrained="torchvision")
    torch.testing.assert_close(model.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_classifier_weights_without_values_keep_the_fresh_classifier(torch_home):
    # what torchvision's vgg16 IMAGENET1K_FEATURES entry holds in its classifier
    path = cache_path(RESNET18.url)
    reference = _torchvision_resnet18_file(path)
    state = torch.load(path, weights_only=True)
    state["fc.weight"] = torch.full_like(state["fc.weight"], float("nan"))
    torch.save(state, path)
    model = BACKBONES.build("resnet18", num_classes=1000, pretrained="torchvision")
    assert torch.isfinite(model.fc.weight).all()
    assert torch.equal(model.fc.bias, reference.fc.bias)  # the values it had are loaded
    assert torch.equal(model.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)


def test_download_checks_the_hash_and_reuses_the_cache(torch_home, server):
    srv, folder = server
    weights = torch.randn(3, 4)
    tmp = folder / "tmp.pth"
    torch.save({"w": weights}, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    name = f"tiny-{digest[:8]}.pth"
    tmp.rename(folder / name)
    dst = torch_home / "hub" / "checkpoints" / name

    fetch(f"{srv.url}/{name}", dst)
    assert dst.read_bytes() == (folder / name).read_bytes()
    assert torch.equal(torch.load(dst, weights_only=True)["w"], weights)
    fetch(f"{srv.url}/{name}", dst)
    assert srv.requests == [f"/models/{name}"]  # the second call made no request


def test_a_tampered_download_is_refused_and_not_kept(torch_home, server, monkeypatch):
    srv, folder = server
    monkeypatch.setenv(MIRROR_ENV, srv.url)
    torch.save({"fc.weight": torch.zeros(1)}, folder / "resnet18-f37072fd.pth")
    with pytest.raises(WeightsChecksumError) as info:
        BACKBONES.build("resnet18", pretrained="torchvision")
    message = str(info.value)
    assert f"{srv.url}/resnet18-f37072fd.pth" in message
    assert 'expected "f37072fd"' in message and "not kept" in message
    assert srv.requests == ["/models/resnet18-f37072fd.pth"]
    checkpoints = torch_home / "hub" / "checkpoints"
    assert list(checkpoints.iterdir()) == []  # no file, no partial download


def test_offline_names_the_url_and_the_path_in_one_line_quickly(torch_home, monkeypatch):
    start = time.monotonic()
    with pytest.raises(WeightsDownloadError) as info:
        BACKBONES.build("resnet18", pretrained="torchvision")
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert "\n" not in message
    url = named_weights.download_url(RESNET18.url)
    assert f"from {url} (" in message
    assert f"put the file at {cache_path(RESNET18.url)}" in message


def test_a_host_that_never_answers_times_out(torch_home, monkeypatch):
    with socket.socket() as listener:  # accepts connections (kernel backlog), never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{listener.getsockname()[1]}/m")
        monkeypatch.setenv(TIMEOUT_ENV, "1")
        start = time.monotonic()
        with pytest.raises(WeightsDownloadError, match=r"timed out; time-out 1 s"):
            BACKBONES.build("resnet18", pretrained="torchvision")
        assert time.monotonic() - start < 10
    assert socket.getdefaulttimeout() is None  # restored


@pytest.mark.parametrize(
    ("name", "pretrained", "expected"),
    [
        ("resnet10", "torchvision", "torchvision has no weights for 'resnet10'"),
        ("resnet18", "torchvision:IMAGENET1K_V2", "torchvision:IMAGENET1K_V1"),
        ("resnet18", "torchvision:ResNet50_Weights.IMAGENET1K_V1", "has no entry"),
        ("resnet18", True, "timm/ backbones only; for resnet18 use backbone.pretrained=torch"),
    ],
)
def test_bad_names_say_what_exists(torch_home, name, pretrained, expected):
    with pytest.raises(ValueError) as info:
        BACKBONES.build(name, pretrained=pretrained)
    assert expected in str(info.value)
    if name == "resnet10":
        assert "resnet18" in str(info.value) and "vgg16_bn" in str(info.value)


@pytest.mark.parametrize(
    ("name", "tv_name"),
    [("alexnet", "alexnet"), ("efficientnet_b0", "efficientnet_b0")],
)
def test_other_families_load_torchvision_files_by_name(torch_home, name, tv_name):
    torch.manual_seed(0)
    reference = torchvision.models.get_model(tv_name).eval()
    url = torchvision.models.get_model_weights(tv_name).DEFAULT.url
    cache_path(url).parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cache_path(url))
    model = BACKBONES.build(name, num_classes=1000, pretrained="torchvision").eval()
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-4)


def _torchvision_googlenet_file(path: Path) -> torch.nn.Module:
    """Random weights of torchvision's pretrained GoogLeNet form, saved at ``path``.

    ``transform_input=True`` as torchvision builds it for its weights; BN eps 1e-3 as its layers
    have. Small running variances make the eps matter (1e-3 against 1e-5 moves the logits by
    ~1e-2), and a larger classifier makes the logits of order 1.
    """
    torch.manual_seed(0)
    reference = torchvision.models.googlenet(
        weights=None, aux_logits=False, init_weights=True, transform_input=True
    )
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.01, 0.1)
                module.weight.uniform_(0.1, 0.3)
                module.bias.normal_(0, 0.1)
        reference.fc.weight.normal_(0, 0.1)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference.state_dict(), path)
    return reference.eval()


def test_googlenet_computes_torchvisions_function_from_its_weights(torch_home, caplog):
    weights = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1
    reference = _torchvision_googlenet_file(cache_path(weights.url))
    with caplog.at_level(logging.INFO, logger="cvtasks.backbones.googlenet"):
        model = BACKBONES.build("googlenet", num_classes=1000, pretrained="torchvision").eval()
    assert "3x3 kernels padded with zeros, and are trained as 5x5" in caplog.text
    padded = model.inception4e.branch3[1].conv.weight
    assert torch.equal(padded[..., 1:4, 1:4], reference.inception4e.branch3[1].conv.weight)
    assert padded[..., 1:4, 1:4].abs().sum() == padded.abs().sum()  # a ring of zeros
    cfg = model.pretrained_cfg
    assert cfg["weights"] == "GoogLeNet_Weights.IMAGENET1K_V1"
    assert cfg["mean"] == [0.5, 0.5, 0.5] and cfg["std"] == [0.5, 0.5, 0.5]

    pixels = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    imagenet = weights.transforms()  # torchvision's own statement of its inputs
    mean = torch.tensor(imagenet.mean).view(1, 3, 1, 1)
    std = torch.tensor(imagenet.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference((pixels - mean) / std)
        got = model((pixels - 0.5) / 0.5)
    assert expected.abs().max() > 0.5  # not a comparison between near-zeros
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


# -- timm's own weights ------------------------------------------------------------------------
TIMM_MODEL = "test_resnet.r160_in1k"  # timm's tiny test network, with a pretrained tag


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face hub cache, and the hub's endpoint at a closed port."""
    from huggingface_hub import constants

    cache = tmp_path / "hf_hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    return cache


def test_timm_pretrained_reads_the_hub_cache_without_a_request(hf_cache):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = timm.create_model(TIMM_MODEL).state_dict()
    repo = hf_cache / f"models--timm--{TIMM_MODEL}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    save_file(state, repo / "snapshots" / "0123abcd" / "model.safetensors")
    # the endpoint is a closed port: a request would fail the build
    model = BACKBONES.build(f"timm/{TIMM_MODEL}", pretrained=True, num_classes=0)
    features = model.model.state_dict()
    assert features and all(torch.equal(v, state[k]) for k, v in features.items())


def test_timm_pretrained_offline_names_the_url_quickly(hf_cache):
    start = time.monotonic()
    with pytest.raises(WeightsDownloadError) as info:
        BACKBONES.build(f"timm/{TIMM_MODEL}", pretrained=True)
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert f"/timm/{TIMM_MODEL}/resolve/main/model.safetensors" in message
    assert "backbone.pretrained=<that file>" in message and str(hf_cache) in message


# -- through train.py --------------------------------------------------------------------------
@pytest.mark.slow
def test_train_offline_without_the_file_stops_with_one_line(run_train, torch_home):
    start = time.monotonic()
    run = run_train(*TINY, "backbone=resnet18", "backbone.pretrained=torchvision")
    assert time.monotonic() - start < 30
    assert run.proc.returncode != 0
    errors = [line for line in run.proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.proc.stderr[-3000:]
    path = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert "/models/resnet18-f37072fd.pth" in errors[0] and f"put the file at {path}" in errors[0]
    assert "Traceback" not in run.proc.stderr


@pytest.mark.slow
def test_train_with_cached_torchvision_weights(run_train, torch_home):
    _torchvision_resnet18_file(cache_path(RESNET18.url))
    run = run_train(
        *TINY,
        "backbone=resnet18",
        "backbone.pretrained=torchvision",
        "data.image_size=32",
        "data.batch_size=8",
    ).check()
    assert run.metrics["global_step"] == 3
