"""``tile=`` of the commands: refusals, native-size inputs, the tiled predictor on a checkpoint,
tiles with ``tta=flip``, and ``evaluate``'s plots of tiled detections."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from cvtasks.cli.common import load_trained
from cvtasks.cli.tiles import TiledPredictor, padded_detections, tiling_from, without_resize
from cvtasks.inference import Predictor
from cvtasks.registry import TASKS
from cvtasks.tiling import Tiling, blend_windows
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


# -- tiles with test-time augmentation ------------------------------------------------------------
#: windows of 64 px, 48 apart: across a width of 112 they lie at 0 and 48, mirror images of each
#: other; across 130 at 0, 48 and 66, which no mirror maps onto themselves
TILES = Tiling((64, 64), 0.25, batch=4)


def predictors(model, tiling=TILES):
    """The plain predictor, and tiled predictors without and with ``tta=flip``."""
    plain = Predictor(model.task, "cpu", precision="32")
    flipped = Predictor(model.task, "cpu", precision="32", tta="flip")
    return plain, TiledPredictor(plain, tiling), TiledPredictor(flipped, tiling)


def test_tiled_segmentation_with_flip_averages_each_window_and_its_mirror(tiny_checkpoint):
    model = load_trained(tiny_checkpoint("segmentation"))
    plain, tiled, flip = predictors(model)
    generator = torch.Generator().manual_seed(0)

    # a mirror-symmetric grid: the mean of the tiled image and its tiled mirror mirrored back
    image = torch.randn(1, 3, 100, 112, generator=generator)
    merged = flip.forward(image).softmax(dim=1)
    own = tiled.forward(image).softmax(dim=1)
    mirror = tiled.forward(image.flip(-1)).softmax(dim=1).flip(-1)
    # float32 sums of a few windows, probabilities clamped at 1e-7 before the log
    assert torch.allclose(merged, (own + mirror) / 2, atol=1e-5)
    assert (merged - own).abs().max() > 1e-2  # the views differ

    # any grid: every window's probabilities averaged with its mirror's, then blended
    def window_and_mirror(windows):
        direct = plain.forward(windows).softmax(dim=1)
        return (direct + plain.forward(windows.flip(-1)).softmax(dim=1).flip(-1)) / 2

    wide = torch.randn(1, 3, 70, 130, generator=generator)
    expected = blend_windows(window_and_mirror, wide, TILES)
    assert torch.allclose(flip.forward(wide).softmax(dim=1), expected, atol=1e-5)


DIGITS = [str(d) for d in range(10)]


def detection_checkpoint(path, data=None):
    """A tiny detection model at 64 px, its heatmap spread so that scores differ and some pass
    the threshold."""
    from tests.cli.conftest import (
        NARROW_RESNET,
        randomize_batchnorm,
        save_checkpoint,
        spread_detection_scores,
    )

    torch.manual_seed(0)
    task = TASKS.build(
        "detection",
        backbone=NARROW_RESNET,
        num_classes=10,
        class_names=DIGITS,
        head={"name": "centernet", "head_channels": 16, "neck": {"name": "fpn", "channels": 16}},
        score_threshold=0.3,
        max_detections=50,
        top_k=30,
    )
    randomize_batchnorm(task)
    spread_detection_scores(task)
    data = data or {"name": "digits_detection"}
    data = {**data, "image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}
    return save_checkpoint(task.eval(), "detection", data, path)


def by_score(found):
    order = found["scores"].argsort(descending=True)
    return {key: value[order] for key, value in found.items()}


def mirrored_back(found, width: float):
    """Boxes of a mirror image in the original's frame, by hand: ``x -> width - x``."""
    x1, y1, x2, y2 = found["boxes"].unbind(-1)
    return {**found, "boxes": torch.stack([width - x2, y1, width - x1, y2], dim=-1)}


def same_detections(a, b) -> bool:
    a, b = by_score(a), by_score(b)
    return (
        len(a["scores"]) == len(b["scores"])
        and torch.equal(a["labels"], b["labels"])
        and torch.allclose(a["scores"], b["scores"], atol=1e-5)
        and torch.allclose(a["boxes"], b["boxes"], atol=1e-3)
    )


def test_tiled_detection_with_flip_finds_the_mirror_image_s_boxes_mirrored(tmp_path):
    model = load_trained(detection_checkpoint(tmp_path / "detection.ckpt"))
    _, tiled, flip = predictors(model)
    image = torch.randn(1, 3, 80, 112, generator=torch.Generator().manual_seed(0))
    found = flip.detections(image)
    assert len(found["scores"]) >= 5
    boxes = found["boxes"]
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 112).all() and (boxes[:, [1, 3]] <= 80).all()
    # the grid is mirror-symmetric: flipping the image mirrors what is found, when each window's
    # mirrored view comes back into the window's frame
    assert same_detections(found, mirrored_back(flip.detections(image.flip(-1)), 112.0))
    # without the views the same model finds other boxes in the mirror image
    plain = tiled.detections(image)
    assert not same_detections(plain, mirrored_back(tiled.detections(image.flip(-1)), 112.0))


def test_tiled_detection_outputs_decode_to_each_image_s_merged_detections(tmp_path):
    model = load_trained(detection_checkpoint(tmp_path / "detection.ckpt"))
    flip = predictors(model)[2]
    images = torch.randn(2, 3, 70, 130, generator=torch.Generator().manual_seed(1))
    decoded = model.task.decode(flip.forward(images))
    for k, found in enumerate(decoded):
        expected = flip.detections(images[k : k + 1])
        assert len(expected["scores"]) and same_detections(found, expected)
    # the padded form: empty slots score 0 with label -1; detections past the slots are dropped
    two = {
        "boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]),
        "scores": torch.tensor([0.9, 0.4]),
        "labels": torch.tensor([5, 2]),
    }
    none = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0).long()}
    boxes, scores, labels = padded_detections([two, none], slots=3)
    assert boxes.tolist() == [[[1, 2, 3, 4], [5, 6, 7, 8], [0] * 4], [[0] * 4] * 3]
    assert scores.tolist() == [pytest.approx([0.9, 0.4, 0.0]), [0.0] * 3]
    assert labels.tolist() == [[5, 2, -1], [-1] * 3] and labels.dtype == torch.int64
    boxes, scores, labels = padded_detections([two], slots=1)
    assert boxes.tolist() == [[[1, 2, 3, 4]]] and labels.tolist() == [[5]]


def test_predict_with_tiles_and_flip_writes_the_merged_masks(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint("segmentation")
    model = load_trained(ckpt)
    _, tiled, flip = predictors(model)
    images = tmp_path / "images"
    images.mkdir()
    path = write_image(images / "wide.png", 70, 130, seed=3)
    out = tmp_path / "out"
    args = (f"ckpt={ckpt}", f"input={images}", f"output={out}", "tile=64", "device=cpu")
    proc = cvtasks("predict", *args, "tta=flip", "precision=32", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [record] = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    written = np.asarray(Image.open(out / record["mask_file"]))
    pixels = np.asarray(Image.open(path).convert("RGB"))
    image = without_resize(model.transform())(image=pixels)["image"][None]
    expected = flip.forward(image).argmax(dim=1)[0].numpy()
    assert written.shape == (70, 130) and np.array_equal(written, expected)
    assert not np.array_equal(written, tiled.forward(image).argmax(dim=1)[0].numpy())


def write_coco_split(folder, images):
    """``folder/_annotations.coco.json`` and its PNGs: ``{name: (pixels, detections)}``, each
    detection's box ``(x1, y1, x2, y2)`` and label becoming an object of category ``label``."""
    folder.mkdir(parents=True)
    coco = {"images": [], "annotations": []}
    coco["categories"] = [{"id": d, "name": name} for d, name in enumerate(DIGITS)]
    for index, (name, (pixels, found)) in enumerate(images.items()):
        Image.fromarray(pixels).save(folder / f"{name}.png")
        height, width = pixels.shape[:2]
        coco["images"].append(
            {"id": index, "file_name": f"{name}.png", "height": height, "width": width}
        )
        for (x1, y1, x2, y2), label in zip(found["boxes"].tolist(), found["labels"].tolist()):
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]),
                    "image_id": index,
                    "category_id": int(label),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    (folder / "_annotations.coco.json").write_text(json.dumps(coco))


def test_tiled_detection_evaluation_scores_and_draws_the_tiled_flipped_detections(tmp_path):
    from cvtasks.cli.evaluate import build_test_data
    from cvtasks.cli.tiles import native_test_data
    from cvtasks.tasks.detection_report import DetectionReport

    root = tmp_path / "objects"
    ckpt = detection_checkpoint(
        tmp_path / "detection.ckpt", {"name": "coco_detection", "root": str(root), "num_workers": 0}
    )
    model = load_trained(ckpt)
    flip = predictors(model)[2]
    # the oracle: test objects that are exactly the tiled + flip detections scored above a
    # threshold, in every image: those then rank first in every class, every AP is 1, and
    # detections from any other prediction miss some of them
    rng = np.random.default_rng(0)
    test = {}
    for name, (height, width) in {"wide": (80, 150), "tall": (110, 90)}.items():
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = without_resize(model.transform())(image=pixels)["image"][None]
        test[name] = (pixels, flip.detections(image))
    threshold = torch.cat([found["scores"] for _, found in test.values()]).sort().values[-8]
    for name, (pixels, found) in test.items():
        test[name] = (pixels, {k: v[found["scores"] >= threshold] for k, v in found.items()})
    assert all(len(found["scores"]) for _, found in test.values())
    write_coco_split(root / "test", test)
    write_coco_split(root / "train", {"a": (test["wide"][0], test["wide"][1])})
    write_coco_split(root / "valid", {"b": (test["tall"][0], test["tall"][1])})

    summaries = {}
    for tta in ("flip", "null"):
        out = tmp_path / f"evaluation_{tta}"
        args = (f"ckpt={ckpt}", f"output={out}", "tile=64", f"tta={tta}", "device=cpu")
        proc = cvtasks("evaluate", *args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        summaries[tta] = json.loads((out / "metrics.json").read_text())
        assert summaries[tta]["plots"] == ["pr_curves.png", "ap_per_class.png", "worst.png"]
    assert summaries["flip"]["tta"] == "flip" and summaries["null"]["tta"] is None
    for key in ("test/map", "test/map50", "test/map75", "test/mar100"):
        assert summaries["flip"][key] == pytest.approx(1.0, abs=1e-6), key
    assert summaries["null"]["test/map"] < 0.9

    # the plots: what the report draws from the tiled + flip predictions of the test images
    batches = list(native_test_data(build_test_data(model, {})).test_dataloader())
    assert [tuple(b["image"].shape[-2:]) for b in batches] == [(80, 150), (110, 90)]
    report = DetectionReport(flip, model.mean, model.std)
    for batch in batches:
        report.update(flip.forward(batch["image"]), batch)
    pictures = {**report.charts({}), "worst": report.worst_grid()}
    for name, picture in pictures.items():
        written = np.asarray(Image.open(tmp_path / "evaluation_flip" / f"{name}.png"))
        assert np.array_equal(written, np.asarray(picture)), name
    unflipped = np.asarray(Image.open(tmp_path / "evaluation_null" / "worst.png"))
    assert not np.array_equal(unflipped, np.asarray(pictures["worst"]))


def write_mask_split(folder, images):
    """``folder/images/<name>.png`` and ``folder/masks/<name>.png``: ``{name: (pixels, mask)}``."""
    for kind in ("images", "masks"):
        (folder / kind).mkdir(parents=True)
    for name, (pixels, mask) in images.items():
        Image.fromarray(pixels).save(folder / "images" / f"{name}.png")
        Image.fromarray(mask.astype(np.uint8)).save(folder / "masks" / f"{name}.png")


def test_tiled_segmentation_evaluation_with_flip_scores_the_merged_windows(tmp_path):
    from tests.cli.conftest import TINY_TASKS, randomize_batchnorm, save_checkpoint

    root = tmp_path / "masks"
    kwargs, data = TINY_TASKS["segmentation"]
    torch.manual_seed(0)
    task = TASKS.build("segmentation", **kwargs)
    randomize_batchnorm(task)
    data = {**data, "name": "image_masks", "root": str(root), "image_size": 32, "num_workers": 0}
    ckpt = save_checkpoint(task.eval(), "segmentation", data, tmp_path / "segmentation.ckpt")
    model = load_trained(ckpt)
    flip = predictors(model, Tiling((32, 32), 0.25, batch=4))[2]
    # the oracle: masks that are the tiled + flip class maps, so that only those score 1
    rng = np.random.default_rng(0)
    test = {}
    for name, (height, width) in {"wide": (40, 90), "tall": (70, 50)}.items():
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = without_resize(model.transform())(image=pixels)["image"][None]
        test[name] = (pixels, flip.forward(image).argmax(dim=1)[0].numpy())
    write_mask_split(root / "test", test)
    write_mask_split(root / "train", {"a": test["wide"]})
    write_mask_split(root / "val", {"b": test["tall"]})
    (root / "classes.txt").write_text("background\nsquare\ncircle\ntriangle\n")

    scores = {}
    for tta in ("flip", "null"):
        out = tmp_path / f"evaluation_{tta}"
        args = (f"ckpt={ckpt}", f"output={out}", "tile=32", f"tta={tta}", "device=cpu")
        proc = cvtasks("evaluate", *args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        scores[tta] = json.loads((out / "metrics.json").read_text())
    assert scores["flip"]["tta"] == "flip"
    # the test loop's network keeps its BatchNorm, the oracle's is folded: a pixel at a near tie
    # may go the other way
    assert scores["flip"]["test/pixel_acc"] == pytest.approx(1.0, abs=1e-3)
    assert scores["flip"]["test/miou"] == pytest.approx(1.0, abs=1e-2)
    assert scores["null"]["test/pixel_acc"] < 0.99 and scores["null"]["test/miou"] < 0.9
