"""The segmentation task: metrics against hand counts, predictions at the image's size, learning."""

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from cvtasks.registry import DATASETS
from cvtasks.tasks.segmentation import SegmentationTask
from tests.data.test_image_masks import write_pair
from tests.tasks.conftest import quiet_trainer
from tests.tasks.test_base import TinyBackbone


def make_task(**kw):
    torch.manual_seed(0)
    return SegmentationTask(
        backbone=TinyBackbone(), num_classes=3, class_names=["bg", "cat", "dog"], **kw
    )


def logits_for(pred):
    """Logits ``[B, 3, H, W]`` whose arg-max is ``pred``."""
    return torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float() * 5


def test_metrics_against_hand_counts_with_ignored_pixels():
    task = make_task()
    pred = torch.tensor([[[0, 0, 1, 1], [2, 2, 0, 1]]])
    mask = torch.tensor([[[0, 1, 1, 255], [2, 0, 0, 1]]])
    task.update_metrics(task.val_metrics, logits_for(pred), {"mask": mask})
    values = task.val_metrics.compute()
    # Flattened: pred 0 0 1 1 2 2 0 1, mask 0 1 1 255 2 0 0 1; position 3 is ignored.
    # bg: true {0, 5, 6}, predicted {0, 1, 6}: 2 hits, union 4. cat: true {1, 2, 7},
    # predicted {2, 7}: 2 hits, union 3. dog: true {4}, predicted {4, 5}: 1 hit, union 2.
    # Correct pixels: 0, 2, 4, 6, 7 of the 7 counted.
    ious = [2 / 4, 2 / 3, 1 / 2]
    dices = [2 * 2 / (3 + 3), 2 * 2 / (3 + 2), 2 * 1 / (1 + 2)]
    assert values["val/miou"].item() == pytest.approx(sum(ious) / 3, abs=1e-6)
    assert values["val/pixel_acc"].item() == pytest.approx(5 / 7, abs=1e-6)
    assert values["val/dice"].item() == pytest.approx(sum(dices) / 3, abs=1e-6)


def test_metrics_pool_pixels_over_the_split_not_batch_means():
    # Batch 1: one bg pixel right. Batch 2: three cat pixels, one predicted bg.
    # Pooled: bg IoU 1/2 (1 hit; true 1, predicted 2), cat IoU 2/3; pixel accuracy 3/4.
    # A mean of per-batch values would give a pixel accuracy of (1 + 2/3) / 2 instead.
    task = make_task()
    task.update_metrics(
        task.val_metrics, logits_for(torch.tensor([[[0]]])), {"mask": torch.tensor([[[0]]])}
    )
    pred, mask = torch.tensor([[[1, 1, 0]]]), torch.tensor([[[1, 1, 1]]])
    task.update_metrics(task.val_metrics, logits_for(pred), {"mask": mask})
    values = task.val_metrics.compute()
    assert values["val/pixel_acc"].item() == pytest.approx(3 / 4, abs=1e-6)
    assert values["val/miou"].item() == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-6)


def test_test_report_has_per_class_iou_and_the_confusion_matrix():
    task = make_task()
    task.on_test_epoch_start()
    pred = torch.tensor([[[0, 0, 1, 1]]])
    mask = torch.tensor([[[0, 1, 1, 255]]])
    task.update_metrics(task.test_metrics, logits_for(pred), {"mask": mask})
    task.on_test_epoch_end()
    report = task.test_reports
    assert report["per_class_iou"] == {"bg": 0.5, "cat": 0.5, "dog": None}  # dog: never seen
    assert report["confusion_matrix"]["matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]


def ramp_case():
    """Logits at the training size (4x4) whose class-1 score rises to the right, and a 8x10
    mask read from a file: class 1 from column 4, the top row ignored.

    Upsampled (bilinear, half-pixel centres) the logits cross zero between columns 4 and 5, so
    at the original size column 4 is wrong; the nearest-neighbour 4x4 mask (source columns 0,
    2, 5 and 7) hides it: at the training size every pixel is right.
    """
    logits = torch.zeros(1, 2, 4, 4)
    logits[0, 1] = torch.tensor([-1.5, -0.5, 0.5, 1.5])  # the same in every row
    original = np.zeros((8, 10), dtype=np.uint8)
    original[:, 4:] = 1
    original[0] = 255
    resized = cv2.resize(original, (4, 4), interpolation=cv2.INTER_NEAREST)
    batch = {
        "mask": torch.from_numpy(resized).long()[None],
        "orig_mask": [torch.from_numpy(original)],
    }
    return logits, batch, original


def numpy_scores(logits, original, num_classes):
    """Mean IoU, pixel accuracy and the confusion matrix at the mask's size, computed apart
    from the task: each logit plane resized by OpenCV (bilinear), NumPy arg-max and counts."""
    height, width = original.shape
    planes = [
        cv2.resize(plane, (width, height), interpolation=cv2.INTER_LINEAR)
        for plane in logits[0].numpy()
    ]
    pred = np.argmax(np.stack(planes), axis=0)
    keep = original != 255
    matrix = np.bincount(
        original[keep].astype(np.int64) * num_classes + pred[keep],
        minlength=num_classes * num_classes,
    ).reshape(num_classes, num_classes)
    hits = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - hits
    miou = float(np.mean(hits[union > 0] / union[union > 0]))
    return miou, hits.sum() / keep.sum(), matrix


def test_test_metrics_score_each_image_at_its_original_size():
    task = SegmentationTask(backbone=TinyBackbone(), num_classes=2, class_names=["bg", "fg"])
    logits, batch, original = ramp_case()
    task.on_test_epoch_start()
    task.update_metrics(task.test_metrics, logits, batch)
    values = task.test_metrics.compute()
    # 7 counted rows: fg 5 of 6 columns right (IoU 35/42), bg 4 columns of 5 (28/35)
    assert values["test/miou"].item() == pytest.approx((35 / 42 + 28 / 35) / 2, abs=1e-6)
    assert values["test/pixel_acc"].item() == pytest.approx(63 / 70, abs=1e-6)
    miou, accuracy, matrix = numpy_scores(logits, original, 2)
    assert values["test/miou"].item() == pytest.approx(miou, abs=1e-6)
    assert values["test/pixel_acc"].item() == pytest.approx(accuracy, abs=1e-6)
    task.on_test_epoch_end()
    assert task.test_reports["confusion_matrix"]["matrix"] == matrix.tolist()
    # the training-size score of the same batch: every pixel right
    assert task.test_miou_train_size.compute().item() == pytest.approx(1.0)
    task.update_metrics(task.val_metrics, logits, {"mask": batch["mask"]})
    assert task.val_metrics.compute()["val/miou"].item() == pytest.approx(1.0)


def test_original_masks_of_several_sizes_pool_into_one_score():
    task = SegmentationTask(backbone=TinyBackbone(), num_classes=2)
    logits, batch, original = ramp_case()
    same = original[1:, :]  # a 7x10 image: the same columns, no ignored row
    two = {
        "mask": batch["mask"].repeat(2, 1, 1),
        "orig_mask": [batch["orig_mask"][0], torch.from_numpy(np.ascontiguousarray(same))],
    }
    task.update_metrics(task.test_metrics, logits.repeat(2, 1, 1, 1), two)
    # the second image adds 7 more rows of the same columns: the ratios stay
    assert task.test_metrics.compute()["test/miou"].item() == pytest.approx(
        numpy_scores(logits, original, 2)[0], abs=1e-6
    )


def test_predict_gives_a_class_map_at_each_images_own_size():
    task = make_task(predict_probabilities=True).eval()
    images = torch.randn(2, 3, 16, 16)
    batch = {"image": images, "orig_size": torch.tensor([[40, 24], [16, 16]]), "path": ["a", "b"]}
    with torch.no_grad():
        out = task.predict_step(batch, 0)
        logits = task(images)
    assert out[0]["mask"].shape == (40, 24) and out[0]["size"] == (40, 24)
    assert out[0]["probabilities"].shape == (3, 40, 24) and out[0]["path"] == "a"
    torch.testing.assert_close(out[0]["probabilities"].sum(0), torch.ones(40, 24))
    torch.testing.assert_close(out[1]["mask"], logits[1].argmax(0))  # same size: no resampling
    assert "probabilities" not in make_task().eval().predict_step(batch, 0)[0]


def test_logits_match_the_input_size_even_when_it_does_not_divide():
    task = make_task()
    assert task(torch.randn(1, 3, 31, 29)).shape == (1, 3, 31, 29)


def test_loss_config_and_a_checkpoint_round_trip(tmp_path):
    task = SegmentationTask(
        backbone={"name": "lenet5"},
        num_classes=3,
        head={"name": "fcn", "hidden_dims": [16]},
        loss={"name": "ce", "class_weights": [0.5, 1, 1]},
    )
    assert task.criterion.name == "ce" and task.criterion.class_weights.tolist() == [0.5, 1, 1]
    path = tmp_path / "m.ckpt"
    torch.save(
        {
            "state_dict": task.state_dict(),
            "hyper_parameters": dict(task.hparams),
            "pytorch-lightning_version": pl.__version__,
        },
        path,
    )
    loaded = SegmentationTask.load_from_checkpoint(path, weights_only=True)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded.eval()(x), task.eval()(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="2 class names given for 3 classes"):
        SegmentationTask(backbone=TinyBackbone(), num_classes=3, class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"task\.loss\.name"):
        make_task(loss={"name": "lovasz"})


def write_blobs(root, count, seed):
    """Noisy 24x24 images with a reddish square (class 1) and a bluish one (class 2)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        mask = np.zeros((24, 24), dtype=np.uint8)
        for cls in (1, 2):
            y, x = rng.integers(0, 14, size=2)
            mask[y : y + 10, x : x + 10] = cls
        colours = np.array([[90, 90, 90], [200, 60, 60], [60, 60, 200]])
        image = colours[mask] + rng.normal(0, 25, size=(24, 24, 3))
        write_pair(root, f"{i:03d}", mask, np.clip(image, 0, 255).astype(np.uint8))


def test_a_tiny_run_clearly_improves_mean_iou(tmp_path):
    write_blobs(tmp_path / "train", 32, seed=0)
    write_blobs(tmp_path / "val", 16, seed=1)
    write_blobs(tmp_path / "test", 4, seed=2)
    pl.seed_everything(0, workers=True)
    data = DATASETS.build("image_masks", root=tmp_path, image_size=24, batch_size=8, augment=[])
    data.setup("fit")
    task = SegmentationTask(
        backbone=TinyBackbone(width=16),
        num_classes=data.num_classes,
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-2},
    )
    trainer = quiet_trainer(
        max_epochs=6,
        inference_mode=False,  # validate() before fit() must not leave inference-mode metric states
    )
    before = trainer.validate(task, datamodule=data, verbose=False)[0]["val/miou"]
    trainer.fit(task, datamodule=data)
    after = float(trainer.callback_metrics["val/miou"])
    assert after >= 0.8 and after > before + 0.3, f"val/miou {before:.3f} -> {after:.3f}"


def test_task_config_picks_the_shapes_data_and_a_small_backbone(compose_train):
    cfg = compose_train("task=segmentation")
    assert cfg.data.name == "shapes" and cfg.backbone.name == "resnet10"  # resnet10_tiny
    assert list(cfg.backbone.channels) == [16, 32, 64, 128]
    assert cfg.task.head.name == "unet" and cfg.task.loss.name == "ce_dice"
    assert cfg.trainer.max_epochs == 40  # the task's recipe, not the trainer's default (50)
    cfg = compose_train(
        "task=segmentation",
        "data=voc_segmentation",
        "data.root=/x",
        "backbone=timm",
        "trainer.max_epochs=3",
    )
    assert cfg.data.name == "voc_segmentation" and cfg.backbone.name == "timm/resnet18"
    assert cfg.trainer.max_epochs == 3
