"""``tile=`` of the commands: refusals, native-size inputs, the tiled predictor on a checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from cvtasks.cli.common import load_trained
from cvtasks.cli.tiles import TiledPredictor, tiling_from, without_resize
from cvtasks.inference import Predictor
from cvtasks.tiling import Tiling
from tests.conftest import cvtasks_in_process as cvtasks

pytestmark = pytest.mark.usefixtures("one_thread")


def write_image(path, height: int, width: int, seed: int = 0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_tile_is_refused_for_a_task_it_does_not_serve(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint("classification")
    image = write_image(tmp_path / "a.png", 40, 50)
    proc = cvtasks("predict", f"ckpt={ckpt}", f"input={image}", "tile=32", cwd=tmp_path)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line == (
        "error: tile= serves the dense tasks (segmentation, detection), not classification: "
        "drop tile= for this checkpoint"
    )
    assert not (tmp_path / "predictions").exists()


def test_a_bad_tile_value_is_named(tiny_checkpoint, tmp_path):
    model = load_trained(tiny_checkpoint("segmentation"))
    cfg = OmegaConf.create({"tile": 64, "overlap": 1.5})
    with pytest.raises(ValueError, match=r"^overlap=1.5: give a fraction in \[0, 1\)"):
        tiling_from(cfg, model.task, model.task_name)
    assert tiling_from(OmegaConf.create({"tile": None}), model.task, model.task_name) is None
    tiling = tiling_from(OmegaConf.create({"tile": [64, 32]}), model.task, model.task_name)
    assert tiling == Tiling((64, 32), 0.25, "gaussian", 8)


def test_native_inputs_are_normalized_but_not_resized(tiny_checkpoint):
    model = load_trained(tiny_checkpoint("segmentation"))
    pixels = np.random.default_rng(0).integers(0, 256, (37, 100, 3), dtype=np.uint8)
    resized = model.transform()(image=pixels)["image"]
    native = without_resize(model.transform())(image=pixels)["image"]
    assert resized.shape == (3, 64, 64) and native.shape == (3, 37, 100)
    expected = (pixels / 255.0 - 0.5) / 0.25  # the checkpoint's mean and std
    assert np.allclose(native.permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_tiled_segmentation_at_the_training_size_is_the_plain_prediction(tiny_checkpoint):
    model = load_trained(tiny_checkpoint("segmentation"))
    predictor = Predictor(model.task, "cpu", precision="32")
    tiled = TiledPredictor(predictor, Tiling((64, 64), 0.25))
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    image = model.transform()(image=pixels)["image"][None]
    batch = {"image": image, "orig_size": torch.tensor([[64, 64]]), "path": ["x.png"]}
    [plain] = predictor.predict(batch)
    [windows] = tiled.predict(batch)
    assert torch.equal(plain["mask"], windows["mask"]) and windows["path"] == "x.png"

    big = without_resize(model.transform())(image=np.tile(pixels, (2, 3, 1))[:100, :170])["image"]
    [result] = tiled.predict({"image": big[None], "orig_size": torch.tensor([[100, 170]])})
    assert result["mask"].shape == (100, 170) and result["size"] == (100, 170)


def test_predict_with_tiles_writes_masks_at_each_image_size(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint("segmentation")
    images = tmp_path / "images"
    images.mkdir()
    sizes = {"wide": (70, 210), "small": (40, 30)}
    for name, (height, width) in sizes.items():
        write_image(images / f"{name}.png", height, width)
    out = tmp_path / "out"
    args = (f"ckpt={ckpt}", f"input={images}", f"output={out}", "tile=64", "overlap=0.5")
    proc = cvtasks("predict", *args, "tile_blend=linear", "tile_batch=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        height, width = sizes[record["path"].split("/")[-1][:-4]]
        assert record["size"] == [height, width]
        assert Image.open(out / record["mask_file"]).size == (width, height)
