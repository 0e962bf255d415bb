"""The centernet head: shapes, strides, neck levels, initial outputs, errors, and that it learns."""

import pytest
import torch
from omegaconf import OmegaConf
from torchvision.ops import box_iou

from cvtasks.heads.detection import PRIOR_PROBABILITY
from cvtasks.losses.detection import DetectionLoss
from cvtasks.ops.centernet import decode, detection_targets, unpad
from cvtasks.registry import BACKBONES, HEADS

# Small tensors step faster on one thread on a busy shared CPU (see the one_thread fixture).
pytestmark = pytest.mark.usefixtures("one_thread")

# A ResNet-like backbone on a 64x64 input: stages at 1/2 ... 1/32.
INFO = [
    {"num_chs": 8, "reduction": 2, "module": "stem"},
    {"num_chs": 8, "reduction": 4, "module": "s1"},
    {"num_chs": 16, "reduction": 8, "module": "s2"},
    {"num_chs": 32, "reduction": 16, "module": "s3"},
    {"num_chs": 64, "reduction": 32, "module": "s4"},
]


def features(info, batch=2, size=64):
    torch.manual_seed(0)
    return [
        torch.randn(batch, i["num_chs"], size // i["reduction"], size // i["reduction"])
        for i in info
    ]


@pytest.mark.parametrize(
    ("stride", "levels"), [(4, [1, 2, 3, 4]), (8, [2, 3, 4]), (2, [0, 1, 2, 3, 4])]
)
def test_outputs_at_stride_over_the_stages_at_or_above_it(stride, levels):
    head = HEADS.build("centernet", feature_info=INFO, num_classes=3, stride=stride)
    out = head(features(INFO))
    size = 64 // stride
    assert out["heatmap"].shape == (2, 3, size, size) and out["box"].shape == (2, 4, size, size)
    assert head.stride == stride and head.neck.levels == levels
    # the neck reads those stages and returns the finest map, the one the head uses
    assert [i["reduction"] for i in head.neck.feature_info] == [INFO[levels[0]]["reduction"]]


def test_finest_stage_coarser_than_stride_is_upsampled():
    coarse = INFO[2:]  # stages at 1/8 .. 1/32 only
    head = HEADS.build("centernet", feature_info=coarse, num_classes=2, stride=4)
    out = head(features(coarse))
    assert out["heatmap"].shape == (2, 2, 16, 16) and out["box"].shape == (2, 4, 16, 16)


def test_untrained_head_predicts_the_prior_and_positive_distances():
    head = HEADS.build("centernet", feature_info=INFO, num_classes=4, box_scale=16.0)
    out = head(features(INFO))
    probability = out["heatmap"].sigmoid()
    assert probability.mean().item() == pytest.approx(PRIOR_PROBABILITY, rel=0.1)
    assert (out["box"] > 0).all()
    # Outputs start near 0, so distances near softplus(0) * box_scale = 16 ln 2.
    assert out["box"].mean().item() == pytest.approx(
        16 * torch.log(torch.tensor(2.0)).item(), rel=0.1
    )


def test_neck_settings_come_from_the_config():
    neck = OmegaConf.create({"name": "fpn", "channels": 24})  # as Hydra passes it
    head = HEADS.build("centernet", feature_info=INFO, num_classes=2, neck=neck, head_channels=16)
    assert [i["num_chs"] for i in head.neck.feature_info] == [24]  # the finest map only
    assert head(features(INFO))["heatmap"].shape == (2, 2, 16, 16)


def test_every_parameter_takes_part_in_the_outputs():
    """DDP refuses a module with parameters outside the loss: the neck builds no unread map."""
    head = HEADS.build("centernet", feature_info=INFO, num_classes=2, head_channels=16)
    out = head(features(INFO))
    (out["heatmap"].sum() + out["box"].sum()).backward()
    assert [n for n, p in head.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"stride": 64}, r"task.head.stride=64 is coarser than every backbone stage .*stride=32"),
        ({"stride": 3}, r"task.head.stride=3 must divide .* \(4\); e.g. task.head.stride=4"),
        ({"neck": {"channels": 8}}, "task.head.neck needs a 'name'"),
        ({"neck": {"name": "fpn", "levels": [1]}}, "task.head.neck.levels is chosen by the head"),
        ({"neck": {"name": "fpn", "outputs": 2}}, "task.head.neck.outputs is chosen by the head"),
        ({"box_scale": 0.0}, "task.head.box_scale must be > 0"),
    ],
)
def test_bad_settings_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        HEADS.build("centernet", feature_info=INFO, num_classes=2, **kw)


def test_unknown_neck_names_the_registry():
    with pytest.raises(KeyError, match=r"Unknown neck 'fpm'.*Did you mean: fpn"):
        HEADS.build("centernet", feature_info=INFO, num_classes=2, neck={"name": "fpm"})


def canvases(count, size=48, seed=0):
    """Squares (class 0) and discs (class 1) of 10-20 px on noise, not overlapping."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(count, 3, size, size, generator=gen) * 0.2
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    boxes, labels = [], []
    for image in images:
        placed, kinds = [], []
        for _ in range(int(torch.randint(1, 4, (), generator=gen))):
            side = float(torch.randint(10, 21, (), generator=gen))
            x0, y0 = (torch.rand(2, generator=gen) * (size - side)).tolist()
            box = torch.tensor([x0, y0, x0 + side, y0 + side])
            if placed and box_iou(box[None], torch.stack(placed)).max() > 0:
                continue
            kind = int(torch.randint(0, 2, (), generator=gen))
            if kind == 0:
                inside = (xs >= x0) & (xs < x0 + side) & (ys >= y0) & (ys < y0 + side)
            else:
                inside = (xs - x0 - side / 2) ** 2 + (ys - y0 - side / 2) ** 2 <= (side / 2) ** 2
            image[:, inside] = (torch.rand(3, generator=gen) * 0.5 + 0.5)[:, None]
            placed.append(box)
            kinds.append(kind)
        boxes.append(torch.stack(placed))
        labels.append(torch.tensor(kinds))
    return images, boxes, labels


def recall(found, boxes, labels, iou=0.5):
    """Share of objects with a detection of their class overlapping them by IoU >= ``iou``."""
    hits = sum(
        int(((box_iou(b, f["boxes"]) * (c[:, None] == f["labels"])).amax(1) >= iou).sum())
        for f, b, c in zip(found, boxes, labels)
        if len(f["boxes"])
    )
    return hits / sum(len(b) for b in boxes)


def test_head_loss_and_decode_learn_to_find_squares_and_discs():
    torch.manual_seed(0)
    images, boxes, labels = canvases(16)
    crowd = [torch.zeros(len(b), dtype=torch.bool) for b in boxes]
    backbone = BACKBONES.build("resnet10", channels=[8, 16, 32, 64], stem_width=8)
    head = HEADS.build(
        "centernet",
        feature_info=backbone.feature_info,
        num_classes=2,
        neck={"name": "fpn", "channels": 32},
        head_channels=32,
    )
    net = torch.nn.ModuleList([backbone, head])
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss = DetectionLoss()
    targets = detection_targets(boxes, labels, crowd, 2, (12, 12), head.stride)

    def found():
        net.eval()
        with torch.no_grad():
            out = head(backbone.forward_features(images))
        net.train()
        return unpad(*decode(out["heatmap"], out["box"], head.stride, score_threshold=0.3))

    assert recall(found(), boxes, labels) < 0.1
    first = None
    for _ in range(60):
        parts = loss(head(backbone.forward_features(images)), targets, head.stride)
        first = parts.total.item() if first is None else first
        optimizer.zero_grad()
        parts.total.backward()
        optimizer.step()
    assert parts.total.item() < first / 2
    assert recall(found(), boxes, labels) >= 0.9
