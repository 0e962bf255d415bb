"""``export verify=true``: exported files against PyTorch on the checkpoint's own test data."""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

import cvtasks.cli.export as export_module
from cvtasks.cli.build import DATA_TO_TASK_KEYS
from cvtasks.cli.common import load_trained
from cvtasks.cli.evaluate import build_test_data
from cvtasks.cli.export import export
from cvtasks.cli.export_verify import (
    Tolerance,
    VerifyError,
    compare_outputs,
    merge_reports,
    output_failures,
    verify_path,
)
from cvtasks.registry import DATASETS, TASKS
from tests.cli.conftest import NARROW_RESNET, randomize_batchnorm, save_checkpoint
from tests.cli.test_export import FORMATS, export_cfg
from tests.conftest import cvtasks_in_process

HEATMAP_BACKBONE = {**NARROW_RESNET, "name": "timm/resnet18", "out_indices": [1, 2, 3]}
#: task -> (task keywords, data config): tiny models on small built-in test splits; the data
#: tells the task its classes or points, as in training.
VERIFY_TASKS = {
    "classification": ({}, {"name": "digits", "image_size": 32, "batch_size": 32}),
    "multilabel": (
        {},
        {
            "name": "digits_multilabel",
            "image_size": 32,
            "batch_size": 16,
            "num_train": 16,
            "num_val": 8,
            "num_test": 24,
        },
    ),
    "segmentation": (
        {"head": {"name": "unet"}},
        {"name": "shapes", "image_size": 64, "batch_size": 8},
    ),
    "landmarks": (
        {"backbone": HEATMAP_BACKBONE, "head": {"name": "keypoint_heatmap"}},
        {
            "name": "synthetic_faces",
            "image_size": 64,
            "batch_size": 16,
            "num_train": 16,
            "num_val": 8,
            "num_test": 16,
        },
    ),
    "siamese": (
        {"head": {"name": "embedding", "embedding_dim": 16}},
        {
            "name": "synthetic_identities",
            "image_size": 40,
            "batch_size": 32,
            "identities": [24, 8, 8],
            "images_per_person": 4,
            "identities_per_batch": 8,
        },
    ),
    "localization": ({}, {"name": "digits_localization", "image_size": 64, "batch_size": 16}),
    "detection": (
        {
            "head": {
                "name": "centernet",
                "head_channels": 16,
                "neck": {"name": "fpn", "channels": 16},
            }
        },
        {
            "name": "digits_detection",
            "image_size": 64,
            "batch_size": 8,
            "num_train": 16,
            "num_val": 8,
            "num_test": 16,
        },
    ),
}
#: the main test metric of each task, as the task's own metric objects name it
METRIC = {
    "classification": "acc",
    "multilabel": "map",
    "segmentation": "miou",
    "landmarks": "nme",
    "siamese": "auc",
    "localization": "loc_acc",
    "detection": "map",
}


def data_checkpoint(
    task: str, path: Path, adjust: Callable[[nn.Module], None] | None = None
) -> Path:
    """A tiny, BN-randomized model of ``task`` for its built-in data, saved as train.py saves
    (after ``adjust(module)`` when given)."""
    kwargs, data = VERIFY_TASKS[task]
    options = {key: value for key, value in data.items() if key != "name"}
    datamodule = DATASETS.build(data["name"], **{"num_workers": 0, **options})
    datamodule.prepare_data()
    datamodule.setup("fit")
    accepted = inspect.signature(TASKS.get(task)).parameters
    facts = {
        key: getattr(datamodule, key)
        for key in DATA_TO_TASK_KEYS
        if key in accepted and hasattr(datamodule, key)
    }
    torch.manual_seed(0)
    module = TASKS.build(task, **{"backbone": NARROW_RESNET, **kwargs, **facts})
    randomize_batchnorm(module)
    if adjust is not None:
        with torch.no_grad():
            adjust(module)
    return save_checkpoint(module.eval(), task, {**data, "num_workers": 0}, path)


def read_report(output: Path) -> dict:
    return json.loads(verify_path(output).read_text())


@pytest.mark.parametrize(
    "task, fmt",
    [
        ("classification", "onnx"),
        ("multilabel", "torch_export"),
        ("segmentation", "torchscript"),
        ("landmarks", "onnx"),
        ("siamese", "torch_export"),
        ("localization", "torchscript"),
        ("detection", "onnx"),
    ],
)
def test_verify_passes_on_a_good_export_and_writes_the_report(task, fmt, tmp_path):
    ckpt = data_checkpoint(task, tmp_path / f"{task}.ckpt")
    output = tmp_path / f"model{FORMATS[fmt]}"
    result = export(export_cfg(ckpt, fmt, output, verify=True, verify_batches=1))
    report = read_report(output)
    assert report["passed"] is True and report["failures"] == []
    assert report["task"] == task and report["format"] == fmt and report["decode"] is True
    assert report["data"]["name"] == VERIFY_TASKS[task][1]["name"] and report["images"] > 0
    assert report["file"] == str(output) and result["verify"]["passed"] is True
    assert list(report["outputs"]) == result["outputs"]
    for entry in report["outputs"].values():
        assert entry["max_abs_diff"] <= 1e-4 or entry["mismatch"] <= 1e-4
    score = report["metrics"][METRIC[task]]
    assert score["pytorch"] is not None and score["diff"] <= 1e-4
    assert score["exported"] == pytest.approx(score["pytorch"], abs=1e-4)


def favour_zero(module: nn.Module) -> None:
    """Tilt the classifier towards digit 0, so that some test digits (0 and 1 lead the split)
    are right and some wrong."""
    last = [m for m in module.head.modules() if isinstance(m, nn.Linear)][-1]
    last.bias[0] += 2.0


def test_verify_scores_with_the_task_metric(tmp_path):
    """The reported accuracy is the share of the first test batches' digits the model's arg-max
    gets right, computed here from the unfolded model."""
    ckpt = data_checkpoint("classification", tmp_path / "digits.ckpt", favour_zero)
    output = tmp_path / "model.onnx"
    export(export_cfg(ckpt, "onnx", output, verify=True, verify_batches=2, check=False))
    model = load_trained(ckpt)
    loader = build_test_data(model, {}).test_dataloader()
    batches = list(itertools.islice(loader, 2))
    images = torch.cat([batch["image"] for batch in batches])
    labels = torch.cat([batch["label"] for batch in batches])
    with torch.no_grad():
        right = (model.task(images).argmax(dim=1) == labels).float().mean()
    report = read_report(output)
    assert 0 < float(right) < 1 and report["images"] == len(labels) == 64
    assert report["metrics"]["acc"]["pytorch"] == pytest.approx(float(right), abs=1e-6)
    assert report["metrics"]["acc"]["exported"] == pytest.approx(float(right), abs=1e-6)


def test_verify_of_a_raw_export_compares_logits_and_metrics(tmp_path):
    ckpt = data_checkpoint("segmentation", tmp_path / "shapes.ckpt")
    output = tmp_path / "model.pt2"
    export(export_cfg(ckpt, "torch_export", output, decode=False, verify=True, verify_batches=1))
    report = read_report(output)
    assert report["passed"] and report["decode"] is False and list(report["outputs"]) == ["logits"]
    assert {"miou", "pixel_acc", "dice"} <= set(report["metrics"])


def tamper_onnx_weights(path: Path) -> None:
    """Scale the largest weight tensor of an ONNX file by 1.5, in place."""
    proto = onnx.load(str(path))
    weights = max(proto.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    scaled = (numpy_helper.to_array(weights) * 1.5).astype(np.float32)
    weights.CopyFrom(numpy_helper.from_array(scaled, weights.name))
    onnx.save(proto, str(path))


def test_verify_fails_on_an_export_with_tampered_weights(monkeypatch, tmp_path):
    ckpt = data_checkpoint("classification", tmp_path / "digits.ckpt")
    write_onnx = export_module.export_onnx

    def broken_export(net, path, meta, opset):
        write_onnx(net, path, meta, opset)
        tamper_onnx_weights(path)

    monkeypatch.setattr(export_module, "export_onnx", broken_export)
    output = tmp_path / "model.onnx"
    cfg = export_cfg(ckpt, "onnx", output, check=False, verify=True, verify_batches=1)
    with pytest.raises(VerifyError) as err:
        export(cfg)
    message = str(err.value)
    assert message.startswith(f"{output} fails verification against PyTorch on the test data: ")
    assert "probabilities differs by" in message and "atol=0.0001, rtol=1e-05" in message
    assert f"report in {output}.verify.json" in message and "\n" not in message
    report = read_report(output)
    assert report["passed"] is False and report["failures"]
    assert report["outputs"]["probabilities"]["max_abs_diff"] > 1e-4


def perturbed_runner(monkeypatch: pytest.MonkeyPatch, delta: float) -> None:
    """Make the exported file's first output come back ``delta`` off."""
    load = export_module.exported_runner

    def runner(fmt, path):
        run = load(fmt, path)
        return lambda images: [o + delta if i == 0 else o for i, o in enumerate(run(images))]

    monkeypatch.setattr(export_module, "exported_runner", runner)


def test_verify_fails_when_the_file_gives_other_outputs(monkeypatch, tmp_path):
    ckpt = data_checkpoint("classification", tmp_path / "digits.ckpt")
    perturbed_runner(monkeypatch, 1e-2)
    output = tmp_path / "model.ts.pt"
    with pytest.raises(
        VerifyError, match=r"probabilities differs by 0\.01 > 0\.0001\d* \(atol \+ rtol"
    ):
        export(export_cfg(ckpt, "torchscript", output, check=False, verify=True, verify_batches=1))
    outputs = read_report(output)["outputs"]
    assert outputs["probabilities"]["max_abs_diff"] == pytest.approx(1e-2, rel=1e-3)
    assert outputs["top_k_labels"]["mismatch"] == 0.0


def test_the_command_exits_1_with_one_line_when_verification_fails(monkeypatch, tmp_path):
    ckpt = data_checkpoint("classification", tmp_path / "digits.ckpt")
    perturbed_runner(monkeypatch, 1e-2)
    output = tmp_path / "model.ts.pt"
    args = (f"ckpt={ckpt}", "format=torchscript", f"output={output}", "check=false")
    proc = cvtasks_in_process("export", *args, "verify=true", "verify_batches=1", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "fails verification against PyTorch" in errors[0]
    assert "probabilities differs by 0.01" in errors[0]
    assert "output probabilities" in proc.stdout  # the per-output table is printed first
    assert read_report(output)["passed"] is False


def test_compare_outputs_judges_float_and_integer_outputs():
    expected = [torch.zeros(2, 5), torch.zeros(10_000, dtype=torch.int64), torch.zeros(3)]
    found = [torch.full((2, 5), 5e-5), torch.zeros(10_000, dtype=torch.int64), torch.zeros(4)]
    found[1][0] = 3  # one class index of 10,000 flipped: a near-tie
    report = compare_outputs(["p", "classes", "e"], expected, found)
    assert report["p"]["max_abs_diff"] == pytest.approx(5e-5)
    assert report["classes"] == {
        "dtype": "int64",
        "max_abs_diff": 3.0,
        "max_abs_value": 0.0,
        "differing": 1,
        "elements": 10_000,
    }
    assert report["e"] == {"shape": [4], "expected_shape": [3]}
    assert output_failures(report, Tolerance()) == ["e has shape [4], not [3]"]
    assert report["classes"]["mismatch"] == 1e-4
    strict = output_failures(compare_outputs(["p"], expected[:1], found[:1]), Tolerance(atol=1e-5))
    assert strict == ["p differs by 5e-05 > 1e-05 (atol + rtol x its largest value 0)"]
    # a coordinate of 500 pixels may be off by 1e-4 + 1e-5 x 500 = 5.1e-3
    at = [torch.tensor([500.0], dtype=torch.float64)]
    pixels = compare_outputs(["x"], at, [torch.tensor([500.004], dtype=torch.float64)])
    assert output_failures(pixels, Tolerance()) == []
    pixels = compare_outputs(["x"], at, [torch.tensor([500.006], dtype=torch.float64)])
    assert output_failures(pixels, Tolerance()) == [
        "x differs by 0.006 > 0.0051 (atol + rtol x its largest value 500)"
    ]
    found[1][1] = 1  # two of 10,000 exceed the default share
    twice = compare_outputs(["classes"], expected[1:2], found[1:2])
    assert output_failures(twice, Tolerance()) == [
        "classes differs in 0.020% of its elements > mismatch=0.0001"
    ]


def test_merge_reports_keeps_the_worst_difference_and_counts():
    total: dict = {}
    first = {"dtype": "int64", "max_abs_diff": 0.0, "max_abs_value": 5.0}
    second = {"dtype": "int64", "max_abs_diff": 2.0, "max_abs_value": 3.0}
    merge_reports(total, {"c": {**first, "differing": 0, "elements": 6}})
    merge_reports(total, {"c": {**second, "differing": 1, "elements": 4}})
    assert total["c"] == {
        "dtype": "int64",
        "max_abs_diff": 2.0,
        "max_abs_value": 5.0,
        "differing": 1,
        "elements": 10,
    }
    output_failures(total, Tolerance(mismatch=0.5))
    assert total["c"]["mismatch"] == 0.1
