"""``python -m cvtasks benchmark``: its options, and a tiny checkpoint in two formats."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from cvtasks.cli.benchmark import (
    COLUMNS,
    list_arguments,
    parse_batch_sizes,
    parse_formats,
    table,
)
from tests.conftest import cvtasks_in_process as cvtasks

HEADER = ["format", "batch", "device", "latency", "ms", "images/s", "test/miou"]


def test_formats_and_batch_sizes_are_read_from_lists_or_comma_text():
    assert parse_formats("torch, onnx,torch") == ["torch", "onnx"]
    assert parse_formats(["torchscript"]) == ["torchscript"]
    assert parse_batch_sizes("1,8,8,32") == [1, 8, 32]
    assert parse_batch_sizes(4) == [4]
    assert list_arguments(["formats=torch,onnx", "batch_sizes=1,2", "output=a,b"]) == [
        "formats=[torch,onnx]",
        "batch_sizes=[1,2]",
        "output=a,b",  # not a list option: as given
    ]
    assert list_arguments(["formats=[onnx]"]) == ["formats=[onnx]"]


def test_bad_formats_and_batch_sizes_name_the_key_and_the_choices():
    with pytest.raises(ValueError) as err:
        parse_formats("torch,onx")
    message = str(err.value)
    assert message.startswith("formats=torch,onx: unknown format 'onx'; give one or more of ")
    assert "torch, onnx, torchscript, torch_export" in message
    assert message.endswith("(e.g. formats=torch,onnx)")
    with pytest.raises(ValueError, match=r"batch_sizes=1,0: '0' is not a positive int"):
        parse_batch_sizes("1,0")
    with pytest.raises(ValueError, match=r"batch_sizes=a: 'a' is not a positive int"):
        parse_batch_sizes(["a"])


def test_the_command_reads_comma_lists_and_reports_a_bad_one_in_one_line(tmp_path):
    proc = cvtasks(
        "benchmark", "ckpt=model.ckpt", "formats=torch,onx", "batch_sizes=1,2", cwd=tmp_path
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: formats=torch,onx: unknown format 'onx'")
    assert not (tmp_path / "benchmark").exists()


def test_the_table_aligns_numbers_under_their_header():
    rows = [
        {"format": "torch", "batch_size": 1, "device": "cpu", "latency_ms": 2.5,
         "images_per_s": 400.0, "value": 0.5},
        {"format": "onnx", "batch_size": 16, "device": "cpu", "latency_ms": 12.25,
         "images_per_s": 1306.1, "value": None},
    ]  # fmt: skip
    lines = table(rows, "test/miou")
    assert lines[0].split() == HEADER
    assert lines[1].split() == ["torch", "1", "cpu", "2.500", "400.0", "0.5000"]
    assert lines[2].split() == ["onnx", "16", "cpu", "12.250", "1306.1", "-"]
    assert len({len(line) for line in lines}) == 1


@pytest.mark.slow
def test_a_tiny_checkpoint_in_torch_and_onnx(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint("segmentation")
    output = tmp_path / "bench"
    proc = cvtasks(
        "benchmark",
        f"ckpt={ckpt}",
        "formats=torch,onnx",
        "batch_sizes=1,2",
        "device=cpu",
        f"output={output}",
        "warmup=1",
        "repeats=3",
        "trainer.limit_test_batches=2",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    printed = [line.split() for line in proc.stdout.splitlines()]
    header = printed.index(HEADER)
    assert [line[:3] for line in printed[header + 1 : header + 5]] == [
        ["torch", "1", "cpu"],
        ["torch", "2", "cpu"],
        ["onnx", "1", "cpu"],
        ["onnx", "2", "cpu"],
    ]
    with open(output / "benchmark.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    assert [(r["format"], int(r["batch_size"])) for r in rows] == [
        ("torch", 1), ("torch", 2), ("onnx", 1), ("onnx", 2)
    ]  # fmt: skip
    for row in rows:
        assert float(row["latency_ms"]) > 0 and float(row["images_per_s"]) > 0
        rate = int(row["batch_size"]) / (float(row["latency_ms"]) / 1000)
        assert float(row["images_per_s"]) == pytest.approx(rate, rel=1e-4, abs=1e-3)
        assert row["metric"] == "test/miou" and 0.0 <= float(row["value"]) <= 1.0
    summary = json.loads((output / "benchmark.json").read_text())
    scores = summary["test_metrics"]
    assert set(scores) == {"torch", "onnx"} and summary["metric"] == "test/miou"
    # the same network in two runtimes: the same test metrics (float32 outputs within 1e-4)
    for key, value in scores["torch"].items():
        assert scores["onnx"][key] == pytest.approx(value, abs=1e-4), key
    assert summary["rows"][0]["value"] == scores["torch"]["test/miou"]
    # the torch row is evaluate's number: the same test loop on the same data
    evaluation = tmp_path / "evaluation"
    args = (f"ckpt={ckpt}", f"output={evaluation}", "trainer.limit_test_batches=2")
    assert cvtasks("evaluate", *args, "trainer.accelerator=cpu", cwd=tmp_path).returncode == 0
    evaluated = json.loads((evaluation / "metrics.json").read_text())
    assert scores["torch"]["test/miou"] == pytest.approx(evaluated["test/miou"], abs=1e-4)


@pytest.mark.parametrize("name", ["landmarks", "localization", "classification"])
def test_a_runtime_in_the_task_s_place_scores_as_the_task_does(tiny_checkpoint, name):
    """The test loop's loss reads the head (keypoint decoding, strides): the runtime's copy of
    the task keeps it, and the same network gives the same loss through the torch runner."""
    from cvtasks.cli.common import load_trained
    from cvtasks.cli.runtimes import make_runner, raw_network, scoring_task

    model = load_trained(tiny_checkpoint(name))
    raw = raw_network(model)
    runner = make_runner("torch", model, raw, torch.device("cpu"), folder=None)
    scored = scoring_task(model, runner, raw)
    images = torch.randn(2, model.channels, *model.image_size, generator=torch.Generator())
    k = getattr(model.task, "num_keypoints", 1)
    batch = {
        "image": images,
        "label": torch.tensor([1, 0]),
        "box": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.4, 0.6, 0.3, 0.2]]),
        "keypoints": torch.rand(2, k, 2, generator=torch.Generator().manual_seed(1)),
        "visible": torch.ones(2, k, dtype=torch.bool),
        "orig_size": torch.tensor([[64, 64], [64, 64]]),
    }
    task = model.task.eval()
    with torch.no_grad():
        expected = task.compute_loss(task(images), batch)
        got = scored.compute_loss(scored(images), batch)
    assert scored.head is not None and torch.allclose(got, expected, atol=1e-4), (got, expected)
