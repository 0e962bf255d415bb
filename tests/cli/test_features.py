"""``python -m cvtasks features``: from a backbone config or a checkpoint, pictures and records."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from cvtasks.cli.features import features
from cvtasks.config import CONFIG_DIR, setup_hydra
from tests.conftest import cvtasks_in_process


@pytest.fixture
def images(tmp_path):
    """Three small RGB images with a white bar at different places."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = (rng.random((40, 48, 3)) * 120).astype(np.uint8)
        pixels[5 + 10 * i : 10 + 10 * i, 4:30] = 255
        Image.fromarray(pixels).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def compose_features(*overrides: str):
    setup_hydra()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("features", overrides=list(overrides))


def test_backbone_config_over_a_folder(images, tmp_path):
    out = tmp_path / "out"
    cfg = compose_features(
        "backbone=resnet18",
        f"image={images / '0.png'}",
        f"images={images}",
        "layer=layer2",
        "channels=[1,5]",
        "image_size=64",
        f"output={out}",
    )
    summary = features(cfg)
    assert summary["shape"] == (128, 8, 8) and summary["channels"] == [1, 5]
    records = json.loads((out / "patches.json").read_text())
    ranks = [(r["channel"], r["rank"]) for r in records]
    assert ranks == [(c, k) for c in (1, 5) for k in range(3)]  # each image once per channel
    assert {r["file"] for r in records if r["channel"] == 1} == {
        str(images / f"{i}.png") for i in range(3)
    }
    values = [r["value"] for r in records[:3]]
    assert values == sorted(values, reverse=True)
    assert Image.open(out / "input.png").size == (64, 64)
    assert Image.open(out / "patches.png").height == 2 * 66  # two channels, one row each
    GlobalHydra.instance().clear()


def test_checkpoint_defaults_to_the_last_stage_and_top_channels(tiny_checkpoint, images, tmp_path):
    ckpt = tiny_checkpoint("classification")
    cfg = compose_features(
        f"ckpt={ckpt}", f"image={images / '1.png'}", "top=3", f"output={tmp_path}"
    )
    summary = features(cfg)
    assert summary["layer"] == "layer4"  # the timm adapter's last stage (its model.layer4)
    assert len(summary["channels"]) == 3 and summary["shape"][0] == 128
    assert Image.open(tmp_path / "input.png").size == (32, 32)  # the checkpoint's image size
    records = json.loads((tmp_path / "patches.json").read_text())
    # a 1x1 map at 32x32 input: one position per channel, its field the whole input
    assert len(records) == 3 and all(r["file"].endswith("1.png") for r in records)
    assert all(r["position"] == [0, 0] and r["box"] == [0, 0, 32, 32] for r in records)
    GlobalHydra.instance().clear()


def test_command_line_and_errors(images, tmp_path):
    def features_command(*args):
        return cvtasks_in_process("features", f"image={images / '0.png'}", *args, cwd=tmp_path)

    ok = features_command("backbone=lenet5", "layer=c1", f"output={tmp_path / 'ok'}")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "layer c1: 6 channels of 28x28" in ok.stdout
    assert (tmp_path / "ok" / "activations.png").is_file()
    bad = features_command("backbone=lenet5", "layer=c9", f"output={tmp_path / 'bad'}")
    assert bad.returncode == 2 and "no layer 'c9'" in bad.stderr and "c1" in bad.stderr
    neither = features_command()
    assert neither.returncode == 2 and "backbone=NAME" in neither.stderr
