"""Test-time augmentation: views, and each task's merge in the original frame, by hand numbers.

The networks here are small fakes whose outputs follow from the image in a way worked out by
hand (a half-image mean, a bright spot, a centroid), so each merged number has an oracle.
"""

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cvtasks import tta
from cvtasks.heads.landmarks import KeypointHeatmapHead
from cvtasks.inference import Predictor
from cvtasks.registry import BACKBONES
from cvtasks.tasks.base import TaskNetwork
from cvtasks.tasks.classification import ClassificationTask
from cvtasks.tasks.detection import DetectionTask
from cvtasks.tasks.landmarks import LandmarksTask, pairs_by_name
from cvtasks.tasks.localization import LocalizationTask
from cvtasks.tasks.multilabel import MultilabelTask
from cvtasks.tasks.segmentation import SegmentationTask
from cvtasks.tasks.siamese import SiameseTask
from tests.tasks.test_base import TinyBackbone

pytestmark = pytest.mark.usefixtures("one_thread")


class Pixels(nn.Module):
    """A backbone that passes the image on (average-pooled by ``reduction``)."""

    def __init__(self, reduction: int = 1) -> None:
        super().__init__()
        self.reduction = reduction
        self.feature_info = [{"num_chs": 3, "reduction": reduction, "module": "pool"}]
        self.num_features = 3

    def forward_features(self, x):
        return [F.avg_pool2d(x, self.reduction) if self.reduction > 1 else x]


class Lambda(nn.Module):
    """A head computing ``fn(image)`` from the passed-on image."""

    def __init__(self, fn, **attributes) -> None:
        super().__init__()
        self.fn = fn
        for name, value in attributes.items():
            setattr(self, name, value)

    def forward(self, features):
        return self.fn(features[-1])


def with_net(task, head, reduction=1):
    task.net = TaskNetwork(Pixels(reduction), head)
    return task.eval()


def predictor(task, mode):
    return Predictor(task, device="cpu", precision="32", channels_last=False, tta=mode)


def halves(x):
    """Mean of channel 0 over the left and the right half of each image: ``[B, 2]``."""
    width = x.shape[-1]
    return torch.stack(
        [x[:, 0, :, : width // 2].mean((1, 2)), x[:, 0, :, width // 2 :].mean((1, 2))], 1
    )


def two_halves(left, right, height=4, width=8):
    image = torch.zeros(1, 3, height, width)
    image[:, 0, :, : width // 2] = left
    image[:, 0, :, width // 2 :] = right
    return image


def softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


# -- views -----------------------------------------------------------------------------------------
def test_views_put_the_plain_image_first_and_sizes_round_to_the_reduction():
    assert tta.views_for("flip") == [tta.View(False, 1.0), tta.View(True, 1.0)]
    scales = [(v.flip, v.scale) for v in tta.views_for("flip_scale")]
    assert scales[:2] == [(False, 1.0), (True, 1.0)] and len(scales) == 6
    assert {s for _, s in scales} == {0.75, 1.0, 1.25}
    assert tta.scaled_size((64, 96), 0.75, 16) == (48, 64)  # 72 rounds to 64
    assert tta.scaled_size((64, 96), 1.25, 16) == (80, 128)  # 120 rounds to 128
    image = torch.arange(12.0).view(1, 1, 3, 4)
    assert tta.transform(image, tta.View(flip=True))[0, 0, 0].tolist() == [3, 2, 1, 0]


def test_an_unknown_mode_is_refused_naming_the_choices():
    task = with_net(ClassificationTask(backbone=TinyBackbone(), num_classes=3), Lambda(halves))
    with pytest.raises(ValueError) as err:
        predictor(task, "rotate")
    assert str(err.value) == (
        "tta='rotate' is not a test-time augmentation: use tta=flip, tta=flip_scale or "
        "tta=null (off)"
    )
    assert predictor(task, None).tta is None and predictor(task, "none").tta is None


def test_a_task_that_merges_no_views_is_refused():
    class Plain(ClassificationTask):
        tta_modes = ()

    task = with_net(Plain(backbone=TinyBackbone(), num_classes=2), Lambda(halves))
    with pytest.raises(ValueError) as err:
        predictor(task, "flip")
    assert str(err.value) == "tta=flip: Plain cannot merge augmented views; use tta=null"


def test_applied_puts_the_network_back_and_augmentations_never_stack():
    task = with_net(ClassificationTask(backbone=TinyBackbone(), num_classes=2), Lambda(halves))
    net = task.net
    with tta.applied(task, "flip") as mode:
        assert mode == "flip" and isinstance(task.net, tta.TestTimeAugmentation)
        kept = predictor(task, None)  # a copy of the task under tta keeps it
        assert kept.tta == "flip" and len(kept.task.net.views) == 2
        replaced = predictor(task, "flip_scale")
        assert replaced.tta == "flip_scale" and len(replaced.task.net.views) == 6
        assert isinstance(replaced.task.net.net, TaskNetwork)
    assert task.net is net


# -- classification, multi-label ------------------------------------------------------------------
def test_classification_averages_probabilities_not_logits():
    # logits [left mean, right mean, 0]: [1, -0.5, 0] plain, [-0.5, 1, 0] mirrored
    head = Lambda(lambda x: torch.cat([halves(x), torch.zeros(len(x), 1)], 1))
    task = with_net(ClassificationTask(backbone=TinyBackbone(), num_classes=3), head)
    result = predictor(task, "flip").predict({"image": two_halves(1.0, -0.5)})[0]
    plain, mirrored = softmax([1, -0.5, 0]), softmax([-0.5, 1, 0])
    expected = [(p + m) / 2 for p, m in zip(plain, mirrored)]  # 0.3844, 0.3844, 0.2312
    got = {r["label"]: r["probability"] for r in result["top_k"]}
    assert [got[i] for i in range(3)] == pytest.approx(expected, abs=1e-6)
    assert softmax([0.25, 0.25, 0])[2] == pytest.approx(0.2803, abs=1e-4)  # logits averaged
    assert got[2] == pytest.approx(0.2312, abs=1e-4)


def test_flip_scale_averages_every_size_and_its_mirror():
    # logits [H / 32, W / 64, 0] of a 64 x 64 input: the views are 48, 64 and 80 pixels wide
    head = Lambda(lambda x: torch.tensor([[x.shape[-2] / 32, x.shape[-1] / 64, 0.0]] * len(x)))
    task = with_net(ClassificationTask(backbone=TinyBackbone(), num_classes=3), head)
    run = predictor(task, "flip_scale")
    assert run.tta == "flip_scale"
    result = run.predict({"image": torch.zeros(1, 3, 64, 64)})[0]
    views = [softmax([s / 32, s / 64, 0]) for s in (48, 64, 80)]
    expected = [sum(v[i] for v in views) / 3 for i in range(3)]
    got = {r["label"]: r["probability"] for r in result["top_k"]}
    assert [got[i] for i in range(3)] == pytest.approx(expected, abs=1e-6)


def test_flip_scale_drops_rescaled_views_that_round_back_to_the_input_size():
    # at a reduction of 32 a 64-px input's 48 and 80 px copies both round to 64: only the plain
    # image and its mirror are left, each run once
    sizes = []

    def record(x):
        sizes.append(tuple(x.shape[-2:]))
        return torch.zeros(len(x), 3)

    net = tta.TestTimeAugmentation(
        Lambda(record), lambda *a: a[0][0], tta.views_for("flip_scale"), 32
    )
    assert [(v.flip, v.scale) for v in net.distinct_views((64, 64))] == [(False, 1.0), (True, 1.0)]
    net(torch.zeros(1, 3, 64, 64))
    assert sizes == [(64, 64)] * 2
    sizes.clear()
    net(torch.zeros(1, 3, 128, 128))  # 96 and 160 px: every view
    assert sorted(set(sizes)) == [(96, 96), (128, 128), (160, 160)] and len(sizes) == 6


def test_a_network_of_one_input_size_is_named_under_flip_scale():
    def one_size(x):
        if x.shape[-1] != 64:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x27 and 48x3)\n...")
        return torch.zeros(len(x), 3)

    task = with_net(ClassificationTask(backbone=TinyBackbone(), num_classes=3), Lambda(one_size))
    with pytest.raises(ValueError) as err:
        predictor(task, "flip_scale").predict({"image": torch.zeros(1, 3, 64, 64)})
    assert str(err.value) == (
        "tta=flip_scale: the network cannot take 48x48 inputs (0.75 x 64x64): mat1 and mat2 "
        "shapes cannot be multiplied (1x27 and 48x3); use tta=flip"
    )


def test_multilabel_averages_sigmoid_probabilities():
    task = with_net(MultilabelTask(backbone=TinyBackbone(), num_classes=2), Lambda(halves))
    result = predictor(task, "flip").predict({"image": two_halves(1.0, -0.5)})[0]
    mean = (sigmoid(1.0) + sigmoid(-0.5)) / 2  # 0.5543; the averaged logit would give 0.5622
    assert result["probabilities"] == pytest.approx([mean, mean], abs=1e-6)


# -- segmentation ----------------------------------------------------------------------------------
def conv_head(weight):
    return Lambda(lambda x: F.conv2d(x, weight, padding=1))


def test_segmentation_flip_of_a_mirror_symmetric_network_changes_nothing():
    torch.manual_seed(0)
    weight = torch.randn(4, 3, 3, 3)
    weight = (weight + weight.flip(-1)) / 2  # mirror-symmetric kernels: f(flip x) = flip f(x)
    task = with_net(SegmentationTask(backbone=TinyBackbone(), num_classes=4), conv_head(weight))
    images = torch.randn(2, 3, 8, 12)
    plain = predictor(task, None).forward(images).softmax(1)
    for mode in ("flip", "flip_scale"):
        merged = predictor(task, mode).forward(images)
        assert merged.shape == plain.shape
        if mode == "flip":
            assert torch.allclose(merged.softmax(1), plain, atol=1e-5)


def test_segmentation_mirrored_logits_are_mirrored_back():
    # f(flip x), mirrored back, is the convolution with the mirrored kernel: an oracle that
    # flips no output
    torch.manual_seed(1)
    weight = torch.randn(3, 3, 3, 3)
    task = with_net(SegmentationTask(backbone=TinyBackbone(), num_classes=3), conv_head(weight))
    images = torch.randn(1, 3, 6, 10)
    merged = predictor(task, "flip").forward(images).softmax(1)
    plain = F.conv2d(images, weight, padding=1).softmax(1)
    mirrored = F.conv2d(images, weight.flip(-1), padding=1).softmax(1)
    assert torch.allclose(merged, (plain + mirrored) / 2, atol=1e-5)
    assert not torch.allclose(merged, plain, atol=1e-2)  # the views do differ


# -- landmarks -------------------------------------------------------------------------------------
NAMES = ["left_eye", "right_eye", "nose"]


class SpotHead(nn.Module):
    """Heatmaps of bright spots: ``left_eye`` in the left half of channel 0, ``right_eye`` in
    its right half, ``nose`` anywhere in channel 1. Mirror-symmetric: the left-eye map of a
    mirror image is the mirrored right-eye map of the image."""

    beta = 15.0
    decode = KeypointHeatmapHead.decode

    def forward(self, features):
        x = features[-1]
        left = torch.zeros_like(x[:, 0])
        left[..., : x.shape[-1] // 2] = 1.0
        maps = [x[:, 0] * left, x[:, 0] * (1 - left), x[:, 1]]
        return {"heatmaps": 20.0 * torch.stack(maps, 1)}


def face(size=32):
    """An asymmetric face: left eye at (7, 9), right eye at (22, 14), nose at (16, 20)."""
    image = torch.zeros(1, 3, size, size)
    image[0, 0, 9, 7] = image[0, 0, 14, 22] = image[0, 1, 20, 16] = 1.0
    return image


def landmarks_task(**kw):
    head = {"name": "keypoint_regression"}  # built for the tiny backbone, then replaced
    task = LandmarksTask(
        backbone=TinyBackbone(), num_keypoints=3, keypoint_names=NAMES, head=head, **kw
    )
    return with_net(task, SpotHead())


def test_flip_pairs_come_from_the_names_unless_given():
    assert landmarks_task().flip_pairs == [(0, 1)]
    assert pairs_by_name(["Left_Ear", "nose", "right_ear"]) == [(0, 2)]
    assert landmarks_task(flip_pairs=[[2, 0]]).flip_pairs == [(2, 0)]
    with pytest.raises(ValueError) as err:
        landmarks_task(flip_pairs=[[0, 1], [1, 2]])
    assert str(err.value) == (
        "task.flip_pairs: [1, 2] is not a pair of two points that are in no other pair"
    )


def test_the_mirrored_view_mapped_back_and_swapped_equals_the_plain_one():
    task = landmarks_task()
    image = face()
    plain = task.net(image)["heatmaps"]
    only_mirror = tta.TestTimeAugmentation(task.net, task.tta_merge, [tta.View(flip=True)])
    assert torch.equal(only_mirror(image)["heatmaps"], plain)


def test_left_stays_left_with_flip():
    batch = {"image": face(), "orig_size": torch.tensor([[64, 64]])}  # pixels x 2
    result = predictor(landmarks_task(), "flip").predict(batch)[0]
    expected = [[15.0, 19.0], [45.0, 29.0], [33.0, 41.0]]  # (x + 0.5) * 2, (y + 0.5) * 2
    assert torch.allclose(torch.tensor(result["keypoints"]), torch.tensor(expected), atol=0.01)
    # without the swap the mirror's left eye (the right eye) lands in the left eye's average
    unswapped = predictor(landmarks_task(flip_pairs=[]), "flip").predict(batch)[0]
    assert unswapped["keypoints"][0] == pytest.approx([30.0, 24.0], abs=0.01)


def test_regressed_points_are_mirrored_and_swapped_back():
    task = landmarks_task()
    plain = {
        "keypoints": torch.tensor([[[0.2, 0.3], [0.7, 0.4], [0.5, 0.6]]]),
        "visibility": torch.tensor([[2.0, -1.0, 0.0]]),
    }
    # the mirror image: the right eye (at 1 - 0.7) first, the left eye (1 - 0.22) second
    mirrored = {
        "keypoints": torch.tensor([[[0.3, 0.4], [0.78, 0.32], [0.5, 0.6]]]),
        "visibility": torch.tensor([[-1.0, 0.0, 0.0]]),
    }
    merged = task.tta_merge([plain, mirrored], tta.views_for("flip"), (32, 32))
    expected = [[0.21, 0.31], [0.7, 0.4], [0.5, 0.6]]
    assert torch.allclose(merged["keypoints"][0], torch.tensor(expected), atol=1e-6)
    confidence = merged["visibility"].sigmoid()[0].tolist()
    assert confidence == pytest.approx([(sigmoid(2) + sigmoid(0)) / 2, sigmoid(-1), 0.5], abs=1e-6)


def test_landmarks_flip_scale_runs_flip_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="cvtasks.tta"):
        run = predictor(landmarks_task(), "flip_scale")
    assert run.tta == "flip"
    assert "tta=flip_scale: LandmarksTask merges mirrored views only; running tta=flip" in (
        caplog.text
    )


# -- localization, detection -----------------------------------------------------------------------
def centroid_x(x):
    """The mean ``x`` (in [0, 1], pixel centres) of channel 0's bright pixels."""
    width = x.shape[-1]
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    weights = x[:, 0].sum(1)
    return (weights * xs).sum(1) / weights.sum(1)


def localize(x):
    c = centroid_x(x)
    box = torch.stack(
        [c + 0.1, torch.full_like(c, 0.5), torch.full_like(c, 0.2), torch.full_like(c, 0.3)], 1
    )
    logits = torch.stack([torch.zeros_like(c), 4 * c, torch.ones_like(c)], 1)
    return {"logits": logits, "box": box}


def test_localization_box_is_mirrored_back_and_averaged():
    task = LocalizationTask(backbone=TinyBackbone(), num_classes=2)
    task = with_net(task, Lambda(localize))
    image = torch.zeros(1, 3, 10, 20)
    image[0, 0, 3:6, 4:6] = 1.0  # centroid x = 0.25; mirrored 0.75
    batch = {"image": image, "orig_size": torch.tensor([[100, 200]])}
    result = predictor(task, "flip").predict(batch)[0]
    # plain cx 0.35; mirrored view 0.85 -> 0.15 back; mean 0.25 -> 50 px of 200, w 40, h 30
    assert result["box"] == pytest.approx([30.0, 35.0, 70.0, 65.0], abs=0.01)
    plain, mirrored = softmax([0, 1, 1]), softmax([0, 3, 1])
    assert result["label"] == 1
    assert result["probability"] == pytest.approx((plain[1] + mirrored[1]) / 2, abs=1e-6)
    assert result["p_nothing"] == pytest.approx((plain[0] + mirrored[0]) / 2, abs=1e-6)


def detect(x):
    """Per stride-4 cell: heatmap logit 16 * brightness - 10 + 0.1 * column, and the box
    distances (left, top, right, bottom) = (4, 4, 6, 6): a box that leans right."""
    heat = 16 * x[:, :1] - 10 + 0.1 * torch.arange(x.shape[-1], dtype=torch.float32)
    box = torch.tensor([4.0, 4.0, 6.0, 6.0]).view(1, 4, 1, 1).expand(len(x), 4, *x.shape[-2:])
    return {"heatmap": heat, "box": box.contiguous()}


@pytest.mark.parametrize("nms_iou", [0.5, 0.7])
def test_detection_boxes_are_mirrored_back_and_merged_by_class_wise_nms(nms_iou):
    backbone = BACKBONES.build("resnet10", channels=[8, 16, 32, 64], stem_width=8)
    task = DetectionTask(backbone=backbone, num_classes=3, nms_iou=nms_iou)
    task = with_net(task, Lambda(detect, stride=4), reduction=4)
    image = torch.zeros(1, 3, 32, 32)
    image[0, 0, 8:12, 4:8] = 1.0  # cell (2, 1), centre (6, 10); mirrored: cell (2, 6)
    batch = {"image": image, "orig_size": torch.tensor([[64, 64]])}
    found = predictor(task, "flip").predict(batch)[0]["detections"]
    # plain: [6 - 4, 10 - 4, 6 + 6, 10 + 6] = [2, 6, 12, 16], score sigmoid(6.1); mirror: centre
    # 26, [22, 6, 32, 16], score sigmoid(6.6), back: [32 - 32, 6, 32 - 22, 16] = [0, 6, 10, 16].
    # IoU 80 / 120 = 0.67: NMS at 0.5 keeps the better one only; at 0.7 both. Pixels x 2.
    expected = [([0, 12, 20, 32], sigmoid(6.6)), ([4, 12, 24, 32], sigmoid(6.1))]
    expected = expected[:1] if nms_iou == 0.5 else expected
    assert [d["box"] for d in found] == [box for box, _ in expected]
    assert [d["score"] for d in found] == [round(s, 4) for _, s in expected]
    assert {d["label"] for d in found} == {0}


# -- siamese ---------------------------------------------------------------------------------------
def test_siamese_embeddings_are_averaged_and_renormalized():
    head = Lambda(
        lambda x: F.normalize(torch.cat([halves(x), torch.ones(len(x), 1)], 1), dim=1),
        normalize=True,
    )
    task = with_net(SiameseTask(backbone=TinyBackbone()), head)
    image = two_halves(1.0, 0.0)
    result = predictor(task, "flip").predict({"image": image, "image_b": image})[0]
    # [1, 0, 1] / sqrt 2 and [0, 1, 1] / sqrt 2: mean [0.5, 0.5, 1] / sqrt 2, unit length again
    expected = [0.5 / math.sqrt(1.5), 0.5 / math.sqrt(1.5), 1 / math.sqrt(1.5)]
    assert result["embedding"] == pytest.approx(expected, abs=1e-6)
    assert result["embedding_b"] == pytest.approx(expected, abs=1e-6)  # the pair's, too
    assert result["distance"] == pytest.approx(0.0, abs=1e-6)
