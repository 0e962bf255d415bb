import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_f1_score

from cvtasks.tasks.classification import ClassificationTask
from tests.tasks.test_base import TinyBackbone


def make_task(**kw):
    torch.manual_seed(0)
    return ClassificationTask(
        backbone=TinyBackbone(), num_classes=7, class_names=list("abcdefg"), **kw
    )


def test_loss_is_cross_entropy_with_label_smoothing():
    task = make_task(label_smoothing=0.1)
    logits, labels = torch.randn(5, 7), torch.tensor([0, 3, 6, 2, 2])
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(task.compute_loss(logits, {"label": labels}), expected)


def test_metrics_top1_top5_f1_against_direct_counts():
    task = make_task()
    logits = torch.randn(40, 7)
    labels = torch.randint(0, 7, (40,))
    task.update_metrics(task.val_metrics, logits, {"label": labels})
    values = task.val_metrics.compute()
    top1 = (logits.argmax(1) == labels).float().mean()
    top5 = (logits.topk(5, dim=1).indices == labels[:, None]).any(1).float().mean()
    torch.testing.assert_close(values["val/acc"], top1)
    torch.testing.assert_close(values["val/acc_top5"], top5)
    from sklearn.metrics import f1_score

    # torchmetrics leaves classes absent from both predictions and targets out of the macro mean
    present = sorted(set(labels.tolist()) | set(logits.argmax(1).tolist()))
    f1 = f1_score(labels, logits.argmax(1), average="macro", labels=present)
    assert values["val/f1_macro"].item() == pytest.approx(f1, abs=1e-6)


def test_predict_returns_label_probability_and_top_k():
    task = make_task(top_k=3).eval()
    images = torch.randn(2, 3, 16, 16)
    out = task.predict_step({"image": images, "path": ["x.png", "y.png"]}, 0)
    probs = task(images).softmax(1)
    assert len(out) == 2 and out[1]["path"] == "y.png"
    for k, result in enumerate(out):
        assert result["label"] == int(probs[k].argmax())
        assert result["class_name"] == "abcdefg"[result["label"]]
        assert result["probability"] == pytest.approx(float(probs[k].max()))
        assert [r["probability"] for r in result["top_k"]] == sorted(
            (r["probability"] for r in result["top_k"]), reverse=True
        )
        assert len(result["top_k"]) == 3


def test_confusion_matrix_report():
    task = make_task()
    task.on_test_epoch_start()
    logits = torch.eye(7)[[0, 1, 1, 2]] * 5
    task.after_step(logits, {"label": torch.tensor([0, 1, 2, 2])}, "test")
    task.on_test_epoch_end()
    matrix = task.test_reports["confusion_matrix"]["matrix"]
    assert matrix[0][0] == 1 and matrix[1][1] == 1 and matrix[2][1] == 1 and matrix[2][2] == 1
    assert sum(map(sum, matrix)) == 4


def test_hyperparameters_rebuild_from_a_backbone_config(tmp_path):
    task = ClassificationTask(
        backbone={"name": "lenet5"}, num_classes=10, head={"name": "mlp", "hidden_dims": [84]}
    )
    assert task.hparams.backbone == {"name": "lenet5"}
    path = tmp_path / "m.ckpt"
    torch.save(
        {
            "state_dict": task.state_dict(),
            "hyper_parameters": dict(task.hparams),
            "pytorch-lightning_version": "2.6.6",
        },
        path,
    )
    loaded = ClassificationTask.load_from_checkpoint(path, weights_only=True)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded.eval()(x), task.eval()(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="label_smoothing"):
        make_task(label_smoothing=1.0)
    with pytest.raises(ValueError, match="3 class names given for 7 classes"):
        ClassificationTask(backbone=TinyBackbone(), num_classes=7, class_names=["a", "b", "c"])


class AuxBackbone(TinyBackbone):
    """A backbone with one auxiliary classifier, following the GoogLeNet contract."""

    aux_enabled = False

    def init_aux(self, num_classes: int) -> None:
        self.aux_head = torch.nn.Linear(self.num_features, num_classes)
        self.aux_enabled = True

    def forward_features_aux(self, x):
        features = self.forward_features(x)
        return features, [self.aux_head(features[-1].mean(dim=(2, 3)))]


def test_auxiliary_losses_are_weighted_in_training_and_gone_in_eval():
    torch.manual_seed(0)
    task = ClassificationTask(backbone=AuxBackbone(), num_classes=3, aux_weight=0.3)
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 1])
    task.train()
    outputs = task(images)
    main, (aux,) = outputs
    expected = F.cross_entropy(main, labels, label_smoothing=0.0) + 0.3 * F.cross_entropy(
        aux, labels
    )
    batch = {"image": images, "label": labels}
    torch.manual_seed(1)
    loss = task._step(batch, "train")
    torch.testing.assert_close(loss, expected)
    task.eval()
    assert task(images).shape == (4, 3)  # no auxiliary output at inference


def test_aux_weight_zero_builds_no_auxiliary_classifier():
    task = ClassificationTask(backbone=AuxBackbone(), num_classes=3, aux_weight=0.0)
    assert not hasattr(task.backbone, "aux_head")
    task.train()
    assert task(torch.randn(2, 3, 8, 8)).shape == (2, 3)


def test_metrics_keep_their_own_state_when_the_first_batch_is_all_right():
    # top-1 and top-5 counts agree on a perfect batch; a shared compute group would then report
    # macro F1 from the top-5 counts (1.0) for the whole split.
    task = ClassificationTask(backbone={"name": "lenet5"}, num_classes=10)
    metrics = task.test_metrics
    target = torch.arange(10).repeat(2)
    perfect = torch.nn.functional.one_hot(target, 10).float()
    metrics.update(perfect, target)
    wrong = torch.roll(perfect, 1, dims=1) + 0.5 * perfect  # target second: wrong, in top 5
    metrics.update(wrong, target)
    result = {k: float(v) for k, v in metrics.compute().items()}
    assert result["test/acc"] == pytest.approx(0.5)
    assert result["test/acc_top5"] == pytest.approx(1.0)
    expected = multiclass_f1_score(torch.cat([perfect, wrong]), target.repeat(2), 10)
    assert result["test/f1_macro"] == pytest.approx(float(expected))
