"""The detection task: loss, COCO metrics against pycocotools, predictions in pixels."""

import pytest
import torch

from cvtasks.losses.detection import DetectionLoss
from cvtasks.ops.centernet import detection_targets
from cvtasks.registry import BACKBONES, TASKS
from cvtasks.tasks.detection import DetectionTask

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

NAMES = ["cat", "dog", "eel"]


def make_task(**kw):
    torch.manual_seed(0)
    backbone = BACKBONES.build("resnet10", channels=[8, 16, 32, 64], stem_width=8)
    return DetectionTask(backbone=backbone, num_classes=3, class_names=NAMES, **kw)


def batch():
    return {
        "image": torch.randn(2, 3, 64, 64),
        "boxes": [
            torch.tensor([[4.0, 4.0, 20.0, 24.0], [30.0, 30.0, 60.0, 50.0]]),
            torch.zeros(0, 4),
        ],
        "labels": [torch.tensor([0, 2]), torch.zeros(0, dtype=torch.int64)],
        "crowd": [torch.tensor([False, False]), torch.zeros(0, dtype=torch.bool)],
        "orig_size": torch.tensor([[128, 64], [64, 64]]),
        "index": torch.tensor([5, 6]),
    }


def test_registered_and_monitors_map50():
    assert TASKS.get("detection") is DetectionTask
    assert DetectionTask.monitor == "val/map50" and DetectionTask.monitor_mode == "max"
    assert DetectionTask.dense_output


def test_outputs_and_loss_are_the_heads_and_the_criterions():
    task = make_task(loss={"box_loss": "giou_l1", "box_weight": 2.0})
    data = batch()
    out = task(data["image"])
    assert out["heatmap"].shape == (2, 3, 16, 16) and out["box"].shape == (2, 4, 16, 16)
    targets = detection_targets(
        data["boxes"], data["labels"], data["crowd"], 3, (16, 16), stride=task.head.stride
    )
    expected = DetectionLoss(box_loss="giou_l1", box_weight=2.0)(out, targets, 4).total
    torch.testing.assert_close(task.compute_loss(out, data), expected)
    assert torch.isfinite(expected)


def random_scene(generator, num_images=12, num_classes=3):
    """Ground truth (some crowd boxes, one empty image) and noisy scored detections."""
    truth, found = [], []
    for i in range(num_images):
        n = 0 if i == 3 else int(torch.randint(1, 5, (1,), generator=generator))
        xy = torch.rand(n, 2, generator=generator) * 80
        wh = torch.rand(n, 2, generator=generator) * 40 + 4
        boxes = torch.cat([xy, xy + wh], dim=1)
        labels = torch.randint(0, num_classes, (n,), generator=generator)
        crowd = torch.rand(n, generator=generator) < 0.15
        truth.append({"boxes": boxes, "labels": labels, "iscrowd": crowd})
        keep = torch.rand(n, generator=generator) < 0.8  # some objects missed
        noisy = boxes[keep] + torch.randn(int(keep.sum()), 4, generator=generator) * 3
        extra = torch.rand(2, 4, generator=generator) * 50  # false positives
        extra[:, 2:] += extra[:, :2] + 5
        pred_boxes = torch.cat([noisy, extra])
        pred_labels = torch.cat(
            [labels[keep], torch.randint(0, num_classes, (2,), generator=generator)]
        )
        scores = torch.rand(len(pred_boxes), generator=generator)
        found.append({"boxes": pred_boxes, "scores": scores, "labels": pred_labels})
    return truth, found


def pycocotools_results(truth, found, num_classes):
    """COCOeval's stats and per-class AP on the same boxes (category ids 1..C, image ids 1..N)."""
    images, annotations, detections = [], [], []
    for i, (gt, dt) in enumerate(zip(truth, found), start=1):
        images.append({"id": i, "width": 200, "height": 200})
        for box, label, crowd in zip(gt["boxes"].tolist(), gt["labels"].tolist(), gt["iscrowd"]):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": label + 1,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": int(crowd),
                }
            )
        for box, score, label in zip(dt["boxes"].tolist(), dt["scores"].tolist(), dt["labels"]):
            box_wh = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
            detections.append(
                {"image_id": i, "category_id": int(label) + 1, "bbox": box_wh, "score": score}
            )
    gt_api = COCO()
    gt_api.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
    }
    gt_api.createIndex()
    evaluator = COCOeval(gt_api, gt_api.loadRes(detections), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 0, 2]  # all areas, 100 detections
    per_class = []
    for c in range(num_classes):
        values = precision[:, :, c]
        per_class.append(float(values[values > -1].mean()))
    return evaluator.stats, per_class


def test_map_and_per_class_ap_equal_pycocotools(monkeypatch):
    task = make_task()
    truth, found = random_scene(torch.Generator().manual_seed(3))
    for start in (0, 6):  # two batches of six images
        chunk = slice(start, start + 6)
        data = {
            "boxes": [t["boxes"] for t in truth[chunk]],
            "labels": [t["labels"] for t in truth[chunk]],
            "crowd": [t["iscrowd"] for t in truth[chunk]],
        }
        monkeypatch.setattr(task, "decode", lambda outputs, preds=found[chunk]: preds)
        task.update_metrics(task.test_metrics, {}, data)
    logged = {}
    monkeypatch.setattr(task, "log", lambda name, value, **kw: logged.__setitem__(name, value))
    task.on_test_epoch_end()
    stats, per_class = pycocotools_results(truth, found, 3)
    assert 0.05 < stats[0] < 0.95  # a scene that can tell a wrong metric from a right one
    for name, index in (("map", 0), ("map50", 1), ("map75", 2), ("mar100", 8)):
        assert float(logged[f"test/{name}"]) == pytest.approx(stats[index], abs=1e-5), name
    reported = task.test_reports["ap_per_class"]
    assert list(reported) == NAMES
    for name, expected in zip(NAMES, per_class):
        assert reported[name] == pytest.approx(expected, abs=1e-5), name
        assert float(logged[f"test/ap/{name}"]) == pytest.approx(expected, abs=1e-3)


def test_training_updates_no_map():
    task = make_task()
    data = batch()
    task.update_metrics(task.train_metrics, task(data["image"]), data)
    assert task.val_map.update_count == 0 and task.test_map.update_count == 0


def test_predictions_are_sorted_named_and_in_pixels_of_the_file(monkeypatch):
    task = make_task()
    data = batch()
    decoded = [
        {
            "boxes": torch.tensor([[8.0, 8.0, 32.0, 16.0], [0.0, 60.0, 70.0, 64.0]]),
            "scores": torch.tensor([0.9, 0.4]),
            "labels": torch.tensor([2, 0]),
        },
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0).long()},
    ]
    monkeypatch.setattr(task, "decode", lambda outputs: decoded)
    first, second = task.predict_outputs({}, data)
    # the first file is 128 high and 64 wide: y doubles, x stays; the box past x = 64 is clipped
    assert first["detections"] == [
        {"label": 2, "class_name": "eel", "score": 0.9, "box": [8.0, 16.0, 32.0, 32.0]},
        {"label": 0, "class_name": "cat", "score": 0.4, "box": [0.0, 120.0, 64.0, 128.0]},
    ]
    assert first["index"] == 5 and second == {"detections": [], "index": 6}


def test_decode_keeps_at_most_max_detections_above_the_threshold():
    task = make_task(max_detections=3, score_threshold=0.3)
    out = task(torch.randn(2, 3, 64, 64))
    out["heatmap"] = torch.randn_like(out["heatmap"]) * 4
    for found in task.decode(out):
        assert len(found["boxes"]) <= 3
        assert bool((found["scores"] >= 0.3).all())
        assert found["scores"].tolist() == sorted(found["scores"].tolist(), reverse=True)


@pytest.mark.parametrize("key, value", [("max_detections", 0), ("top_k", 0)])
def test_bad_decoding_options_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"task.{key}={value}"):
        make_task(**{key: value})
