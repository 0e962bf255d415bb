"""Export of tiny checkpoints to ONNX, TorchScript and torch.export, checked against PyTorch."""

from __future__ import annotations

import json

import onnx
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from cvtasks.cli.common import load_trained
from cvtasks.cli.export import ExportError, export, exportable, operator_of, run_exported
from cvtasks.inference import count_batchnorms
from cvtasks.registry import BACKBONES, TASKS
from tests.cli.conftest import (
    NARROW_RESNET,
    TINY_TASKS,
    randomize_batchnorm,
    save_checkpoint,
    spread_detection_scores,
)

FORMATS = {"onnx": ".onnx", "torchscript": ".ts.pt", "torch_export": ".pt2"}


def export_cfg(ckpt, fmt, output, **extra):
    return OmegaConf.create(
        {
            "ckpt": str(ckpt),
            "format": fmt,
            "output": str(output),
            "expect_task": None,
            "opset": 18,
            "check": True,
            "atol": 1e-4,
            **extra,
        }
    )


def raw_outputs(ckpt, images):
    """The training module's raw outputs (BatchNorm not folded), in the order the export has."""
    with torch.no_grad():
        outputs = load_trained(ckpt).task(images)
    return list(outputs.values()) if isinstance(outputs, dict) else [outputs]


@pytest.mark.parametrize(
    "task, fmt",
    [
        ("segmentation", "onnx"),
        ("segmentation", "torchscript"),
        ("segmentation", "torch_export"),
        ("landmarks", "onnx"),
    ],
)
def test_raw_export_matches_the_unfolded_model(task, fmt, tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint(task)
    output = tmp_path / f"model{FORMATS[fmt]}"
    result = export(export_cfg(ckpt, fmt, output, decode=False))
    assert result["outputs"] == {"segmentation": ["logits"], "landmarks": ["heatmaps"]}[task]
    assert max(result["max_abs_diff"].values()) <= 1e-4
    size = load_trained(ckpt).image_size
    images = torch.randn(5, 3, *size, generator=torch.Generator().manual_seed(1))
    found = run_exported(fmt, output, images)
    expected = raw_outputs(ckpt, images)
    assert len(found) == len(expected) == len(result["outputs"])
    for a, b in zip(found, expected):
        assert a.shape == b.shape and a.shape[0] == 5  # the batch axis is dynamic
        assert (a.float() - b.float()).abs().max() <= 1e-4


#: the file (BatchNorm folded) against the training module: probabilities and embeddings agree
#: within PROB, coordinates in input pixels within PIXEL; predict rounds boxes to 0.01 pixel and
#: detection scores to 1e-4, so those compare within ROUNDED_PIXEL and ROUNDED_SCORE.
PROB, PIXEL, ROUNDED_PIXEL, ROUNDED_SCORE = 1e-4, 1e-3, 6e-3, 2e-4


def close(found, expected, atol):
    torch.testing.assert_close(
        torch.as_tensor(found).float(), torch.as_tensor(expected).float(), atol=atol, rtol=0
    )


def check_classification(out, predictions, raw):
    """Softmax of the logits; the top 3 (= min(5, C)) ranked as predict ranks them."""
    close(out["probabilities"], raw.softmax(dim=1), PROB)
    assert out["top_k_labels"].dtype == torch.int64 and out["top_k_labels"].shape == (5, 3)
    for k, prediction in enumerate(predictions):
        assert out["top_k_labels"][k].tolist() == [r["label"] for r in prediction["top_k"]]
        close(out["top_k_probabilities"][k], [r["probability"] for r in prediction["top_k"]], PROB)


def check_multilabel(out, predictions, raw):
    close(out["probabilities"], raw.sigmoid(), PROB)
    close(out["probabilities"], [p["probabilities"] for p in predictions], PROB)


def check_segmentation(out, predictions, raw):
    """The class map is predict's mask wherever the two best classes are not tied (1e-4)."""
    probs = raw.softmax(dim=1)
    close(out["probabilities"], probs, PROB)
    close(out["probabilities"], torch.stack([p["probabilities"] for p in predictions]), PROB)
    top2 = probs.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4
    masks = torch.stack([p["mask"] for p in predictions])
    assert out["classes"].dtype == torch.int64 and out["classes"].shape == masks.shape
    assert torch.equal(out["classes"][clear], masks[clear])
    assert clear.float().mean() > 0.99


def check_landmarks(out, predictions, raw):
    """Points in input pixels (64 x 64): predict's points, within 1e-3 pixel."""
    assert out["keypoints"].shape == (5, 5, 2) and float(out["keypoints"].max()) > 1.0
    close(out["keypoints"], [p["keypoints"] for p in predictions], PIXEL)
    close(out["confidence"], [p["confidence"] for p in predictions], PROB)


def check_siamese(out, predictions, raw):
    close(out["embedding"].norm(dim=1), torch.ones(5), PROB)
    close(out["embedding"], F.normalize(raw, dim=1), PROB)
    close(out["embedding"], [p["embedding"] for p in predictions], PROB)  # the head normalizes


def check_localization(out, predictions, raw):
    """Label, probabilities and the box ``(cx +- w/2, cy +- h/2) * 64`` clipped to the input;
    predict rounds boxes to 0.01 pixel."""
    probs = raw["logits"].softmax(dim=1)
    close(out["probabilities"], probs, PROB)
    close(out["p_nothing"], probs[:, 0], PROB)
    assert torch.equal(out["label"], probs.argmax(dim=1))
    cx, cy, w, h = raw["box"].unbind(1)
    corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
    close(out["box"], corners.clamp(0, 1) * 64, PIXEL)
    boxes = 0
    for k, prediction in enumerate(predictions):
        assert int(out["label"][k]) == prediction["label"]
        close(out["probability"][k], prediction["probability"], PROB)
        if prediction["box"] is not None:
            close(out["box"][k], prediction["box"], ROUNDED_PIXEL)
            boxes += 1
    assert boxes > 0


def check_detection(out, predictions, raw):
    """predict's detections (scores rounded to 1e-4, boxes to 0.01 pixel) in the filled slots."""
    filled = out["labels"] >= 0
    assert filled.any() and not filled.all()
    for k, prediction in enumerate(predictions):
        found = prediction["detections"]
        assert out["labels"][k][filled[k]].tolist() == [d["label"] for d in found]
        close(out["scores"][k][filled[k]], [d["score"] for d in found], ROUNDED_SCORE)
        boxes = torch.tensor([d["box"] for d in found]).reshape(-1, 4)
        close(out["boxes"][k][filled[k]], boxes, ROUNDED_PIXEL)
    assert float(out["boxes"].min()) >= 0 and float(out["boxes"].max()) <= 64


CHECKS = {
    "classification": check_classification,
    "multilabel": check_multilabel,
    "segmentation": check_segmentation,
    "landmarks": check_landmarks,
    "siamese": check_siamese,
    "localization": check_localization,
    "detection": check_detection,
}


@pytest.mark.parametrize(
    "task, fmt",
    [
        ("classification", "onnx"),
        ("classification", "torchscript"),
        ("classification", "torch_export"),
        ("multilabel", "torchscript"),
        ("segmentation", "onnx"),
        ("landmarks", "torch_export"),
        ("siamese", "torchscript"),
        ("localization", "onnx"),
        ("detection", "torch_export"),
    ],
)
def test_decoded_export_answers_as_predict(task, fmt, tiny_checkpoint, tmp_path):
    """The file's decoded outputs equal predict's answers for the same input tensor (the input
    frame) and the decoding written out here from the raw outputs of the unfolded model."""
    if task == "detection":
        ckpt = detection_checkpoint(tmp_path / "detection.ckpt")
    elif task == "localization":
        ckpt = localization_checkpoint(tmp_path / "localization.ckpt")
    else:
        ckpt = tiny_checkpoint(task)
    output = tmp_path / f"model{FORMATS[fmt]}"
    result = export(export_cfg(ckpt, fmt, output))
    model = load_trained(ckpt)  # the training module: BatchNorm not folded
    images = torch.randn(5, 3, *model.image_size, generator=torch.Generator().manual_seed(1))
    out = dict(zip(result["outputs"], run_exported(fmt, output, images)))
    task_module = model.task
    task_module.predict_probabilities = True  # segmentation: predict its probabilities too
    with torch.no_grad():
        raw = task_module(images)
        predictions = task_module.predict_outputs(raw, {"image": images})
    CHECKS[task](out, predictions, raw)


def localization_checkpoint(path):
    """A tiny localization model that finds an object (a class above *nothing*) in most images."""
    kwargs, data = TINY_TASKS["localization"]
    torch.manual_seed(0)
    task = TASKS.build("localization", **kwargs)
    randomize_batchnorm(task)
    with torch.no_grad():  # an untrained classifier: tilt it away from label 0, *nothing*
        task.head.classifier[-1].bias.copy_(torch.tensor([-3.0, 1.0, 0.0, -1.0]))
    return save_checkpoint(task.eval(), "localization", data, path)


def detection_checkpoint(path):
    """A tiny detection model whose heatmap peaks pass the score threshold in some cells."""
    from cvtasks.tasks.detection import DetectionTask

    torch.manual_seed(0)
    task = DetectionTask(
        backbone=NARROW_RESNET,
        num_classes=3,
        class_names=["cat", "dog", "eel"],
        head={"name": "centernet", "head_channels": 16, "neck": {"name": "fpn", "channels": 16}},
        score_threshold=0.4,
        max_detections=40,
        top_k=30,  # fewer candidates than slots: every image has empty slots
    )
    randomize_batchnorm(task)
    spread_detection_scores(task)
    data = {"name": "coco_detection", "image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}
    return save_checkpoint(task.eval(), "detection", data, path)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_detection_exports_padded_detections_that_match_pytorch(fmt, tmp_path):
    ckpt = detection_checkpoint(tmp_path / "detection.ckpt")
    output = tmp_path / f"detection{FORMATS[fmt]}"
    result = export(export_cfg(ckpt, fmt, output))
    assert result["outputs"] == ["boxes", "scores", "labels"]
    images = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    boxes, scores, labels = run_exported(fmt, output, images)
    assert boxes.shape == (5, 40, 4) and scores.shape == labels.shape == (5, 40)
    assert labels.dtype == torch.int64
    filled = labels >= 0
    assert filled.any() and not filled.all()  # both kinds of slot are checked
    assert (scores[~filled] == 0).all() and (boxes[~filled] == 0).all()
    assert (scores.diff(dim=1) <= 0).all()  # best first
    task = load_trained(ckpt).task  # the training module: BatchNorm not folded
    with torch.no_grad():
        expected = task.decode(task(images))
    for k, want in enumerate(expected):
        assert torch.equal(labels[k][filled[k]], want["labels"])
        torch.testing.assert_close(scores[k][filled[k]], want["scores"], atol=1e-4, rtol=0)
        inside = want["boxes"].clamp(0, 64)  # clipped to the input, as predict clips
        torch.testing.assert_close(boxes[k][filled[k]], inside, atol=1e-3, rtol=0)


def test_siamese_export_names_its_output_embedding(tiny_checkpoint):
    net = exportable(load_trained(tiny_checkpoint("siamese")))
    assert net.output_names == ["embedding"]
    (embedding,) = net(net.example)
    assert embedding.shape == (2, 16)


def test_onnx_carries_the_preprocessing(tiny_checkpoint, tmp_path):
    output = tmp_path / "landmarks.onnx"
    export(export_cfg(tiny_checkpoint("landmarks"), "onnx", output))
    meta = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert meta["task"] == "landmarks" and json.loads(meta["image_size"]) == [64, 64]
    assert json.loads(meta["mean"]) == [0.5] * 3 and json.loads(meta["std"]) == [0.5] * 3
    assert json.loads(meta["keypoint_names"])[:2] == ["left_eye", "right_eye"]
    assert json.loads(meta["outputs"]) == ["keypoints", "confidence"]
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] not in (1, 2)  # symbolic batch axis


@pytest.mark.parametrize("fmt", ["torchscript", "torch_export"])
def test_sidecar_json_carries_the_preprocessing(fmt, tiny_checkpoint, tmp_path):
    output = tmp_path / f"model{FORMATS[fmt]}"
    export(export_cfg(tiny_checkpoint("classification"), fmt, output))
    meta = json.loads(output.with_name(output.name + ".json").read_text())
    assert meta["class_names"] == ["cat", "dog", "eel"] and meta["image_size"] == [32, 32]
    assert meta["mean"] == [0.5] * 3 and meta["std"] == [0.25] * 3 and meta["format"] == fmt


class EighNet(nn.Module):
    """A backbone whose features go through an eigen-decomposition (no ONNX function for it)."""

    def __init__(self, **_: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.feature_info = [{"num_chs": 8, "reduction": 2, "module": "conv"}]
        self.num_features = 8

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        y = self.conv(x)
        gram = y.flatten(2) @ y.flatten(2).transpose(1, 2)
        values = torch.linalg.eigh(gram)[0]
        return [y * values.mean(dim=1)[:, None, None, None]]


@pytest.fixture
def eigh_backbone():
    """``test_eigh_net`` registered for one test only (listings iterate every backbone)."""
    BACKBONES.add("test_eigh_net", EighNet, override=True)
    yield "test_eigh_net"
    BACKBONES._entries.pop("test_eigh_net")


def test_an_unsupported_operator_is_named(eigh_backbone, tmp_path):
    task = TASKS.build("classification", backbone={"name": eigh_backbone}, num_classes=2)
    data = {"name": "digits", "image_size": 16, "mean": [0.5] * 3, "std": [0.5] * 3}
    ckpt = save_checkpoint(task, "classification", data, tmp_path / "eigh.ckpt")
    with pytest.raises(ExportError, match=r"operator aten\._?linalg_eigh") as err:
        export(export_cfg(ckpt, "onnx", tmp_path / "eigh.onnx"))
    assert "try another format" in str(err.value)
    assert not (tmp_path / "eigh.onnx").exists()


def test_operator_of_reads_exporter_messages():
    assert operator_of(RuntimeError("No ONNX function found for <OpOverload(op='aten.foo')>")) == (
        "aten.foo"
    )
    assert operator_of(RuntimeError("Unsupported: aten::bar_baz")) == "aten::bar_baz"
    assert operator_of(RuntimeError("something else")) is None


def test_wrong_format_and_suffix_are_refused(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint("classification")
    with pytest.raises(ValueError, match="format=tflite is not one of onnx, torchscript"):
        export(export_cfg(ckpt, "tflite", tmp_path / "m.tflite"))
    with pytest.raises(ValueError, match=r"must end in \.pt2"):
        export(export_cfg(ckpt, "torch_export", tmp_path / "m.pt"))


def test_exportable_folds_batchnorm(tiny_checkpoint):
    model = load_trained(tiny_checkpoint("segmentation"))
    before = count_batchnorms(model.task.net)
    net = exportable(model)
    assert count_batchnorms(net) < before
    assert net.output_names == ["classes", "probabilities"] and not net.training
    assert exportable(load_trained(tiny_checkpoint("segmentation")), decode=False).output_names == [
        "logits"
    ]
