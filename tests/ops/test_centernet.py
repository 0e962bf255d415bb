"""CenterNet targets and decoding against per-pixel and per-image references."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms, box_iou

from cvtasks.ops.centernet import (
    cell_centres,
    decode,
    detection_targets,
    distances_to_boxes,
    unpad,
)

# Small tensors step faster on one thread on a busy shared CPU (see the one_thread fixture).
pytestmark = pytest.mark.usefixtures("one_thread")

STRIDE = 4


def targets_of(objects, num_classes=3, out_size=(24, 24), crowd=None, **kw):
    """Targets of one image holding ``objects`` = [(x1, y1, x2, y2, label), ...]."""
    boxes = torch.tensor([o[:4] for o in objects], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([o[4] for o in objects], dtype=torch.long)
    flags = torch.tensor(crowd or [False] * len(objects), dtype=torch.bool)
    return detection_targets([boxes], [labels], [flags], num_classes, out_size, STRIDE, **kw)


def gaussian_oracle(box, out_size, ratio):
    """TTFNet's truncated elliptical Gaussian, one pixel at a time (draw_truncate_gaussian)."""
    x1, y1, x2, y2 = (v / STRIDE for v in box)
    cx, cy = math.floor((x1 + x2) / 2), math.floor((y1 + y2) / 2)
    rx, ry = math.floor(ratio * (x2 - x1) / 2), math.floor(ratio * (y2 - y1) / 2)
    sx, sy = (2 * rx + 1) / 6, (2 * ry + 1) / 6
    out = torch.zeros(out_size)
    for i in range(out_size[0]):
        for j in range(out_size[1]):
            if abs(j - cx) <= rx and abs(i - cy) <= ry:
                out[i, j] = math.exp(-((j - cx) ** 2) / (2 * sx**2) - (i - cy) ** 2 / (2 * sy**2))
    return out


def test_heatmap_is_the_truncated_gaussian_with_peak_one_at_the_centre_cell():
    box = (10.0, 22.0, 50.0, 46.0)  # centre (30, 34) → cell (x 7, y 8)
    t = targets_of([(*box, 2)])
    assert t.heatmap.shape == (1, 3, 24, 24)
    assert t.heatmap[0, 2, 8, 7] == 1.0
    assert (t.heatmap == 1).sum() == 1
    torch.testing.assert_close(t.heatmap[0, 2], gaussian_oracle(box, (24, 24), 0.54))
    assert t.heatmap[0, :2].abs().sum() == 0  # other classes untouched


def test_overlapping_objects_of_a_class_take_the_max():
    a, b = (8.0, 8.0, 48.0, 40.0), (30.0, 20.0, 70.0, 64.0)
    t = targets_of([(*a, 1), (*b, 1)])
    expected = torch.maximum(gaussian_oracle(a, (24, 24), 0.54), gaussian_oracle(b, (24, 24), 0.54))
    torch.testing.assert_close(t.heatmap[0, 1], expected)


def test_box_target_is_the_box_over_its_regression_area_with_log_area_weight():
    box = (10.0, 22.0, 50.0, 46.0)
    t = targets_of([(*box, 0)])
    area = gaussian_oracle(box, (24, 24), 0.54) > 0
    assert torch.equal(t.box_weight[0, 0] > 0, area)
    assert torch.equal(t.box[0][:, area], torch.tensor(box)[:, None].expand(4, int(area.sum())))
    assert t.box[0][:, ~area].abs().sum() == 0
    # Each object weighs log of its (w + 1)(h + 1), spread like its Gaussian.
    torch.testing.assert_close(t.box_weight.sum(), torch.tensor(math.log(41 * 25)))
    assert t.box_weight[0, 0, 8, 7] == t.box_weight.max()


def test_smaller_box_owns_cells_where_regression_areas_overlap():
    big, small = (0.0, 0.0, 80.0, 80.0), (28.0, 28.0, 52.0, 52.0)
    t = targets_of([(*big, 0), (*small, 1)])
    small_area = gaussian_oracle(small, (24, 24), 0.54) > 0
    big_area = gaussian_oracle(big, (24, 24), 0.54) > 0
    assert (small_area & big_area).any()
    assert torch.equal(t.box[0, :, 10, 10], torch.tensor(small))  # the small box's centre
    only_big = big_area & ~small_area
    assert (t.box[0][:, only_big] == torch.tensor(big)[:, None]).all()


def test_crowd_region_is_ignored_for_its_class_and_gives_no_targets():
    crowd_box = (40.0, 40.0, 80.0, 72.0)
    t = targets_of([(8.0, 8.0, 24.0, 24.0, 0), (*crowd_box, 1)], crowd=[False, True])
    xs, ys = cell_centres(24, 24, STRIDE)
    inside = ((ys >= 40) & (ys <= 72))[:, None] & ((xs >= 40) & (xs <= 80))[None, :]
    assert torch.equal(t.ignore[0, 1], inside)
    assert not t.ignore[0, 0].any() and not t.ignore[0, 2].any()
    assert t.heatmap[0, 1].sum() == 0  # no peak for the crowd
    assert t.box_weight[0, 0][inside].sum() == 0  # and no box regression
    assert t.heatmap[0, 0, 4, 4] == 1.0  # the real object is untouched


def test_images_and_batches_without_objects_give_empty_targets():
    empty = torch.zeros(0, 4)
    no_label, no_crowd = torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool)
    t = detection_targets([empty, empty], [no_label] * 2, [no_crowd] * 2, 2, (8, 10), STRIDE)
    assert t.heatmap.shape == (2, 2, 8, 10) and t.box.shape == (2, 4, 8, 10)
    assert t.box_weight.shape == (2, 1, 8, 10) and t.ignore.shape == (2, 2, 8, 10)
    assert all(x.abs().sum() == 0 for x in (t.heatmap, t.box, t.box_weight))
    assert not t.ignore.any()


def test_distances_to_boxes_measure_from_cell_centres():
    distances = torch.zeros(1, 4, 2, 3)
    distances[0, :, 1, 2] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    boxes = distances_to_boxes(distances, STRIDE)
    assert boxes[0, :, 1, 2].tolist() == [10 - 1, 6 - 2, 10 + 3, 6 + 4]  # centre (10, 6)
    assert boxes[0, :, 0, 0].tolist() == [2, 2, 2, 2]


def reference_decode(heatmap, box, k, threshold, iou, max_detections):
    """Per image: sigmoid, 3x3 peaks, top-k, torchvision batched_nms, threshold, best first."""
    out = []
    for logits, distances in zip(heatmap, box):
        scores = logits.sigmoid()
        peaks = scores * (F.max_pool2d(scores[None], 3, 1, 1)[0] == scores)
        height, width = scores.shape[-2:]
        top, index = peaks.flatten().topk(min(k, peaks.numel()))
        labels, cell = index // (height * width), index % (height * width)
        boxes = distances_to_boxes(distances[None], STRIDE)[0].flatten(1).T[cell]
        keep = batched_nms(boxes, top, labels, iou)
        keep = keep[top[keep] > threshold][:max_detections]
        out.append({"boxes": boxes[keep], "scores": top[keep], "labels": labels[keep]})
    return out


@pytest.mark.parametrize(("k", "max_detections"), [(60, 25), (10, 25), (500, 300)])
def test_decode_matches_a_per_image_reference(k, max_detections):
    torch.manual_seed(0)
    heatmap = torch.randn(3, 4, 12, 16) * 2
    box = torch.rand(3, 4, 12, 16) * 12
    boxes, scores, labels = decode(heatmap, box, STRIDE, k, 0.2, 0.3, max_detections)
    assert boxes.shape == (3, max_detections, 4) and labels.dtype == torch.int64
    got = unpad(boxes, scores, labels)
    expected = reference_decode(heatmap, box, k, 0.2, 0.3, max_detections)
    for g, e in zip(got, expected):
        assert len(e["scores"]) > 0
        torch.testing.assert_close(g, e)
    empty = labels < 0
    assert (scores[empty] == 0).all() and (boxes[empty] == 0).all()
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first


def test_decode_of_ideal_outputs_gives_the_boxes_back():
    objects = [(6.0, 10.0, 30.0, 30.0, 0), (40.0, 44.0, 88.0, 80.0, 1), (60.0, 8.0, 76.0, 24.0, 0)]
    t = targets_of(objects, num_classes=2)
    xs, ys = cell_centres(24, 24, STRIDE)
    ideal = torch.stack(
        [xs - t.box[:, 0], ys[:, None] - t.box[:, 1], t.box[:, 2] - xs, t.box[:, 3] - ys[:, None]],
        dim=1,
    )
    logits = torch.logit(t.heatmap.clamp(1e-4, 1 - 1e-4))
    found = unpad(*decode(logits, ideal, STRIDE, score_threshold=0.5))[0]
    truth = torch.tensor([o[:4] for o in objects])
    assert len(found["boxes"]) == 3
    iou = box_iou(found["boxes"], truth)
    assert (iou.max(dim=1).values > 0.9).all()
    assert sorted(found["labels"][iou.argmax(dim=1).argsort()].tolist()) == [0, 0, 1]


class Decoder(torch.nn.Module):
    def forward(self, heatmap, box):
        return decode(heatmap, box, STRIDE, k=50, score_threshold=0.3, max_detections=20)


def test_decode_traced_and_exported_on_batch_two_run_batch_three():
    torch.manual_seed(1)
    example = (torch.randn(2, 3, 16, 16) * 2, torch.rand(2, 4, 16, 16) * 20)
    inputs = (torch.randn(3, 3, 16, 16) * 2, torch.rand(3, 4, 16, 16) * 20)
    eager = Decoder()(*inputs)
    assert (eager[2] >= 0).any()
    with warnings.catch_warnings():  # the static map sizes are read as Python ints
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(Decoder(), example)
    for got, want in zip(traced(*inputs), eager):
        assert torch.equal(got, want)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(
        Decoder(), example, dynamic_shapes={"heatmap": {0: batch}, "box": {0: batch}}
    )
    for got, want in zip(program.module()(*inputs), eager):
        assert torch.equal(got, want)


def test_decode_exported_to_onnx_runs_another_batch_size(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.manual_seed(2)
    example = (torch.randn(2, 3, 16, 16) * 2, torch.rand(2, 4, 16, 16) * 20)
    inputs = (torch.randn(3, 3, 16, 16) * 2, torch.rand(3, 4, 16, 16) * 20)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.onnx.export(
        Decoder(),
        example,
        input_names=["heatmap", "box"],
        dynamic_shapes={"heatmap": {0: batch}, "box": {0: batch}},
        dynamo=True,
        verbose=False,
    )
    program.save(str(tmp_path / "decode.onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "decode.onnx"))
    feed = {"heatmap": inputs[0].numpy(), "box": inputs[1].numpy()}
    boxes, scores, labels = (torch.from_numpy(x) for x in session.run(None, feed))
    want_boxes, want_scores, want_labels = Decoder()(*inputs)
    assert torch.equal(labels, want_labels) and torch.equal(boxes, want_boxes)
    torch.testing.assert_close(scores, want_scores)  # sigmoid may differ by an ulp
