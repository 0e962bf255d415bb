"""Detection view and report: records, pictures, F1 image scores and COCO precision-recall."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from cvtasks.tasks.detection import DetectionTask
from cvtasks.tasks.detection_report import (
    MEAN_CURVE,
    DetectionReport,
    DetectionView,
    MatchCounts,
    match_detections,
)
from cvtasks.viz.boxes import class_colour
from cvtasks.viz.report import batch_sample
from cvtasks.viz.views import RecordContext

NAMES = ["cat", "dog", "eel"]


def stand_in_task(score_threshold=0.3):
    """A task whose raw outputs are already its decoded detections (one dict per image)."""
    return SimpleNamespace(
        view=DetectionView,
        class_names=NAMES,
        num_classes=len(NAMES),
        score_threshold=score_threshold,
        decode=lambda outputs: outputs,
    )


def found(boxes, scores, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def truth(boxes, labels, crowd=None):
    crowd = [False] * len(labels) if crowd is None else crowd
    return (
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(labels, dtype=torch.int64),
        torch.tensor(crowd, dtype=torch.bool),
    )


def batch_of(*images):
    """A batch of ``(boxes, labels, crowd)`` truths; image ``k`` is filled with the value k."""
    return {
        "image": torch.stack([torch.full((3, 32, 32), float(k)) for k in range(len(images))]),
        "boxes": [t[0] for t in images],
        "labels": [t[1] for t in images],
        "crowd": [t[2] for t in images],
    }


def make_report(outputs_by_image=(), score_threshold=0.3):
    """A report whose predictor returns, for an image filled with k, the k-th outputs."""
    task = stand_in_task(score_threshold)

    def forward(images):
        return [outputs_by_image[int(images[0, 0, 0, 0])]]

    predictor = SimpleNamespace(task=task, forward=forward)
    return DetectionReport(predictor, [0.0] * 3, [1.0] * 3, keep=4)


def test_the_detection_task_declares_its_view_and_report():
    assert DetectionTask.view is DetectionView
    assert DetectionTask.report is DetectionReport


def test_record_lists_every_detection_as_json_values_best_first():
    result = {
        "detections": [
            {"label": 1, "class_name": "dog", "score": 0.912345, "box": [1.004, 2.0, 30.5, 40.25]},
            {
                "label": np.int64(0),
                "class_name": "cat",
                "score": np.float32(0.5),
                "box": (0, 0, 9, 9),
            },
        ],
        "index": torch.tensor(12),
        "path": "a.png",
    }
    record = DetectionView(stand_in_task()).record(result, RecordContext(None, "a"))
    assert record == {
        "detections": [
            {"label": 1, "class_name": "dog", "score": 0.9123, "box": [1.0, 2.0, 30.5, 40.25]},
            {"label": 0, "class_name": "cat", "score": 0.5, "box": [0.0, 0.0, 9.0, 9.0]},
        ],
        "index": 12,
        "path": "a.png",
    }
    assert type(record["detections"][1]["label"]) is int  # JSON-writable, not numpy
    empty = DetectionView(stand_in_task()).record({"detections": []}, RecordContext(None, "b"))
    assert empty == {"detections": []}


def test_picture_draws_each_box_in_its_class_colour_with_its_tag():
    image = Image.new("RGB", (64, 48), (90, 90, 90))
    result = {
        "detections": [
            {"label": 1, "class_name": "dog", "score": 0.9, "box": [8, 20, 30, 40]},
            {"label": 2, "class_name": "eel", "score": 0.6, "box": [36, 24, 60, 44]},
        ]
    }
    picture = DetectionView(stand_in_task()).picture(image, result)
    scale = 4  # 256 // 64: small images are enlarged so that tags read
    assert picture.size == (64 * scale, 48 * scale)
    pixels = np.asarray(picture)
    dog, eel = (np.all(pixels == class_colour(k), axis=-1) for k in (1, 2))
    assert dog[39 * scale + 2, 10 * scale : 28 * scale].all()  # the dog box's bottom edge
    assert eel[24 * scale + 1, 38 * scale : 58 * scale].all()  # the eel box's top edge
    assert dog[: 20 * scale, 8 * scale : 30 * scale].sum() > 50  # the dog tag above its box
    assert (pixels.min(axis=-1) > 200).any()  # light tag text
    assert tuple(pixels[30 * scale, 20 * scale]) == (90, 90, 90)  # inside a box: the image
    assert tuple(pixels[5, 250]) == (90, 90, 90)  # away from every box: the image
    assert np.all(np.asarray(image) == 90)  # the input is not drawn on


@pytest.mark.parametrize(
    ("detections", "objects", "expected"),
    [
        # both objects found, best score first
        (found([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 1]), 2, MatchCounts(2, 0, 0)),
        # the second object missed
        (found([[0, 0, 10, 10]], [0.9], [0]), 2, MatchCounts(1, 0, 1)),
        # right place, wrong class: a false detection and a missed object
        (found([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 2]), 2, MatchCounts(1, 1, 1)),
        # a duplicate of a found object is false; IoU of [1, 0, 11, 10] with [0, 0, 10, 10]: 9/11
        (found([[1, 0, 11, 10], [0, 0, 10, 10]], [0.7, 0.9], [0, 0]), 1, MatchCounts(1, 1, 0)),
        # IoU 1/3 (a half-shifted box) is below 0.5: not a match
        (found([[5, 0, 15, 10]], [0.9], [0]), 1, MatchCounts(0, 1, 1)),
        # nothing detected in an image without objects
        (found([], [], []), 0, MatchCounts(0, 0, 0)),
    ],
)
def test_matching_counts_found_false_and_missed_objects(detections, objects, expected):
    boxes, labels, _ = truth([[0, 0, 10, 10], [20, 20, 30, 30]][:objects], [0, 1][:objects])
    counts = match_detections(detections, boxes, labels)
    assert counts == expected
    tp, fp, fn = expected
    assert counts.f1 == pytest.approx(1.0 if fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))


def test_matching_prefers_the_best_score_and_the_most_overlapping_object():
    # objects A = [0, 0, 10, 10], B = [4, 0, 14, 10]; the better detection overlaps A by 7/13
    # and B by 9/11: it takes B. The weaker one overlaps A by 1/3 only and B is taken: false.
    # (Taking the first object above 0.5 instead would find both.)
    boxes, labels, _ = truth([[0, 0, 10, 10], [4, 0, 14, 10]], [0, 0])
    detections = found([[5, 0, 15, 10], [3, 0, 13, 10]], [0.5, 0.9], [0, 0])
    assert match_detections(detections, boxes, labels) == MatchCounts(1, 1, 1)


def test_crowd_objects_are_neither_missed_nor_make_detections_false():
    boxes, labels, crowd = truth([[0, 0, 10, 10], [20, 0, 60, 40]], [0, 1], [False, True])
    # the second detection lies inside the crowd box of its class; the third is another class
    detections = found(
        [[0, 0, 10, 10], [25, 5, 35, 15], [25, 5, 35, 15]], [0.9, 0.8, 0.7], [0, 1, 2]
    )
    assert match_detections(detections, boxes, labels, crowd) == MatchCounts(1, 1, 0)


def test_scores_are_one_minus_f1_above_the_score_threshold():
    report = make_report(score_threshold=0.3)
    batch = batch_of(
        truth([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1]),  # perfect (plus one weak false box)
        truth([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1]),  # one of two objects missed
        truth([], []),  # no objects, nothing found
        truth([[0, 0, 10, 10]], [2]),  # found only below the threshold
    )
    outputs = [
        found([[0, 0, 10, 10], [20, 20, 30, 30], [40, 0, 50, 10]], [0.9, 0.8, 0.1], [0, 1, 0]),
        found([[0, 0, 10, 10]], [0.9], [0]),
        found([], [], []),
        found([[0, 0, 10, 10]], [0.2], [2]),
    ]
    scores = report.scores(outputs, batch)
    assert scores.tolist() == pytest.approx([0.0, 1 - 2 / 3, 0.0, 1.0])
    assert report.caption({"boxes": batch["boxes"][1], "crowd": batch["crowd"][1]}, 1 / 3) == (
        "2 objects, F1 0.67"
    )


def test_precision_recall_curves_follow_coco_interpolation():
    report = make_report()
    batch = batch_of(
        truth([[0, 0, 10, 10]], [0]),
        truth([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1]),
    )
    outputs = [
        found([[0, 0, 10, 10]], [0.9], [0]),  # cat: one object, found
        # dog: a false box ranked above the one found object; the other object missed
        found([[40, 40, 50, 50], [0, 0, 10, 10]], [0.95, 0.8], [1, 1]),
    ]
    report.update(outputs, batch)
    curves, ap = report.precision_recall()
    recall = [k / 100 for k in range(101)]
    # dog: precision 1/2 at recall 1/2, nothing beyond; interpolated: 0.5 up to recall 0.5
    dog = [0.5 if r <= 0.5 else 0.0 for r in recall]
    assert set(curves) == {"cat", "dog", MEAN_CURVE}  # eel has no test object: no curve
    assert curves["cat"][0] == pytest.approx(recall)
    assert curves["cat"][1] == pytest.approx([1.0] * 101)
    assert curves["dog"][1] == pytest.approx(dog)
    assert curves[MEAN_CURVE][1] == pytest.approx([(1.0 + d) / 2 for d in dog])
    assert ap == pytest.approx({"cat": 1.0, "dog": 51 * 0.5 / 101, "eel": None})


def test_charts_and_worst_grid_are_drawn(tmp_path):
    outputs = [
        found([[0, 0, 10, 10]], [0.9], [0]),
        found([[16, 16, 30, 30]], [0.9], [1]),
    ]
    report = make_report(outputs)
    batch = batch_of(truth([[0, 0, 10, 10]], [0]), truth([[2, 2, 12, 12]], [1]))
    report.update(outputs, batch)
    charts = report.charts({})
    assert set(charts) == {"pr_curves", "ap_per_class"}
    for name, chart in charts.items():
        chart.save(tmp_path / f"{name}.png")
        assert Image.open(tmp_path / f"{name}.png").size == chart.size
    colours = {c for _, c in charts["pr_curves"].getcolors(1 << 20)}
    assert class_colour(0) in colours and class_colour(1) in colours
    grid = report.worst_grid()
    assert grid is not None and grid.width > 2 * 32 * 8  # two enlarged pictures side by side
    # the dog image (its only object missed): predicted box solid, true box dashed
    worst = np.asarray(report.picture(batch_sample(batch, 1)))
    scale = 8  # 256 // 32
    true_top = np.all(worst[2 * scale, 2 * scale : 12 * scale] == class_colour(1), axis=-1)
    assert 0.2 < true_top.mean() < 0.8  # dashes and gaps
    found_top = np.all(worst[16 * scale, 17 * scale : 29 * scale] == class_colour(1), axis=-1)
    assert found_top.all()  # the detection is solid


def test_a_report_without_batches_draws_no_charts():
    assert make_report().charts({}) == {}


def test_detections_under_the_shown_score_are_neither_counted_nor_drawn():
    from cvtasks.tasks.detection_report import SHOWN_SCORE, DetectionView

    report = make_report(score_threshold=0.05)  # the task keeps weak boxes for mAP's recall
    batch = batch_of(truth([[0, 0, 10, 10]], [0]))
    weak = SHOWN_SCORE / 2
    outputs = [found([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, weak], [0, 1])]  # a weak duplicate
    assert report.scores(outputs, batch).tolist() == [0.0]
    view = DetectionView(stand_in_task(0.05))
    image = Image.new("RGB", (32, 32))
    strong = {"label": 0, "class_name": "cat", "score": 0.9, "box": [2, 2, 20, 20]}
    duplicate = {**strong, "label": 1, "class_name": "dog", "score": weak}
    both = view.picture(image, {"detections": [strong, duplicate]})
    alone = view.picture(image, {"detections": [strong]})
    assert np.array_equal(np.asarray(both), np.asarray(alone))
