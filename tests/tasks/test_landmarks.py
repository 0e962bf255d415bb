"""The landmarks task: construction checks, loss and metric wiring, predictions, learning."""

import pytest
import pytorch_lightning as pl
import torch

from cvtasks.registry import DATASETS
from cvtasks.tasks.landmarks import LandmarksTask
from tests.tasks.conftest import quiet_trainer

NAMES = ["left_eye", "right_eye", "nose"]
# LeNet-5 builds in milliseconds; its stages (1/2, 1/4, 1/4) feed both heads.
BACKBONE = {"name": "lenet5", "act_layer": "relu"}


def task(**kwargs):
    defaults = dict(backbone=BACKBONE, num_keypoints=3, keypoint_names=NAMES)
    return LandmarksTask(**{**defaults, **kwargs})


def batch(points):
    n = points.shape[0]
    return {
        "image": torch.zeros(n, 3, 32, 32),
        "keypoints": points,
        "visible": torch.ones(n, 3, dtype=torch.bool),
        "box": torch.tensor([[0.5, 0.5, 0.6, 0.8]]).expand(n, 4),
        "orig_size": torch.tensor([[100, 200]]).expand(n, 2),  # height, width
        "offset": torch.tensor([[10.0, 20.0]]).expand(n, 2),
    }


class FixedHead(torch.nn.Module):
    """A stand-in head whose decoded points are given."""

    def __init__(self, points, confidence):
        super().__init__()
        self.points, self.confidence = points, confidence

    def forward(self, features):
        return {}

    def decode(self, outputs):
        return self.points, self.confidence


POINTS = torch.tensor([[[0.6, 0.4], [0.4, 0.4], [0.5, 0.6]]])


def test_metrics_in_pixels_of_the_original_image():
    module = task()
    assert module.eyes == (0, 1) and module.monitor == "val/nme"
    module.net.head = FixedHead(POINTS.clone(), torch.ones(1, 3))
    module.update_metrics(module.val_metrics, {}, batch(POINTS))
    assert module.val_metrics.compute() == {"val/nme": 0.0, "val/pck": 1.0}
    wrong = POINTS.clone()
    wrong[0, 2, 0] += 0.02  # 4 px in a 200 px wide image; the eyes are 40 px apart
    module.net.head = FixedHead(wrong, torch.ones(1, 3))
    module.val_metrics.reset()
    module.update_metrics(module.val_metrics, {}, batch(POINTS))
    result = module.val_metrics.compute()
    assert result["val/nme"].item() == pytest.approx(4 / 3 / 40, rel=1e-5)
    assert result["val/pck"].item() == 1.0  # 4 px <= 0.1 * 40 px


def test_without_eye_names_the_box_diagonal_normalizes():
    module = task(keypoint_names=["a", "b", "c"])
    assert module.eyes is None
    wrong = POINTS.clone()
    wrong[0, 0, 1] += 0.05  # 5 px of a 100 px high image; box 120 x 80 px: diagonal 144.2
    module.net.head = FixedHead(wrong, torch.ones(1, 3))
    module.update_metrics(module.test_metrics, {}, batch(POINTS))
    nme = module.test_metrics.compute()["test/nme"].item()
    assert nme == pytest.approx(5 / 3 / (120**2 + 80**2) ** 0.5, rel=1e-5)


def test_predictions_are_pixels_of_the_image_file():
    module = task()
    module.net.head = FixedHead(POINTS.clone(), torch.tensor([[0.9, 0.8, 0.1]]))
    (result,) = module.predict_outputs({}, {**batch(POINTS), "path": ["a.png"]})
    # x * 200 + 10, y * 100 + 20
    expected = [[130.0, 60.0], [90.0, 60.0], [110.0, 80.0]]
    torch.testing.assert_close(torch.tensor(result["keypoints"]), torch.tensor(expected))
    assert result["confidence"] == pytest.approx([0.9, 0.8, 0.1])
    assert result["keypoint_names"] == NAMES and result["path"] == "a.png"


@pytest.mark.parametrize(
    ("head", "loss"),
    [
        ({"name": "keypoint_heatmap", "stride": 2}, {"points": "l1"}),
        ({"name": "keypoint_heatmap", "stride": 2}, {"points": None, "heatmap_weight": 1.0}),
        ({"name": "keypoint_regression"}, {"points": "wing"}),
        ({"name": "keypoint_regression"}, {"points": "mse", "visibility_weight": 0.0}),
    ],
)
def test_every_head_and_loss_trains(head, loss):
    module = task(head=head, loss=loss)
    data = batch(POINTS.expand(2, 3, 2).clone())
    data["image"] = torch.randn(2, 3, 32, 32)
    value = module.compute_loss(module(data["image"]), data)
    assert value.ndim == 0 and value.item() > 0
    value.backward()
    assert all(p.grad is not None for p in module.head.parameters())


def test_bad_configurations_are_explained():
    with pytest.raises(ValueError, match="needs a keypoint dataset"):
        LandmarksTask(backbone=BACKBONE)
    with pytest.raises(ValueError, match="2 keypoint names for 3 points"):
        task(keypoint_names=["a", "b"])
    with pytest.raises(ValueError, match="unknown keys"):
        task(loss={"pionts": "l1"})
    with pytest.raises(ValueError, match="mse, l1, wing"):
        task(loss={"points": "huber"})
    with pytest.raises(ValueError, match="pck_alpha"):
        task(pck_alpha=0)
    module = task(head={"name": "keypoint_regression"}, loss={"points": None})
    with pytest.raises(ValueError, match="without a loss"):
        module.compute_loss(module(torch.zeros(1, 3, 32, 32)), batch(POINTS))


# A narrow timm ResNet read up to 1/16: enough for faces at 64x64, a fraction of a second a step.
TINY_RESNET = {
    "name": "timm/resnet10t",
    "stem_width": 16,
    "channels": [16, 32, 64, 128],
    "out_indices": [1, 2, 3],
}


def test_heatmap_task_learns_faces_in_a_few_epochs(tmp_path, one_thread):
    pl.seed_everything(0, workers=True)
    data = DATASETS.build(
        "synthetic_faces", root=tmp_path, num_train=256, num_val=32, num_test=8, batch_size=32
    )
    task = LandmarksTask(
        backbone=TINY_RESNET,
        num_keypoints=data.num_keypoints,
        keypoint_names=data.keypoint_names,
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3},
    )
    trainer = quiet_trainer(max_epochs=4)
    (before,) = trainer.validate(task, datamodule=data, verbose=False)
    trainer.fit(task, datamodule=data)
    after = float(trainer.callback_metrics["val/nme"])
    # untrained about 0.9 (points near the middle); after 32 steps about 0.5
    assert after < 0.7 * before["val/nme"], f"val/nme {before['val/nme']:.3f} -> {after:.3f}"
