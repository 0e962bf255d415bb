"""``benchmarks/gpu_check.sh``: its budgets fit one 8-minute call, and its plumbing runs on a CPU.

The dry run shrinks every step (a tiny model, size and step count, one test, DEVICE=cpu) and
checks what a GPU run depends on: every step prints its result line, in order, with the budget
it declared; the figures are read back; and what lands in OUT_DIR is a few small files at most
two folders deep, while the data, run folders and logs stay in WORK.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STEPS = ["install", "env", "tests", "throughput", "lightning", "train", "ddp", "fsdp"]
CALL_LIMIT_S = 480  # the whole script, staged-wheel install included
RESULT = re.compile(
    r"^\[gpu-check\] (?P<step>\S+) +(?P<took>\d+)s/(?P<budget>\d+)s +"
    r"(?P<status>ok|TIMEOUT|FAILED\(rc=\d+\)|skipped): (?P<detail>.*)$"
)
SCALE = 3  # budgets x3: the dry run shares a slow CPU


def declared(name: str) -> str:
    """The value of ``NAME=...`` or ``NAME=${NAME:-...}`` as the script declares it."""
    text = SCRIPT.read_text()
    match = re.search(rf"^{name}=(?:\"(.*?)\"|(\d+))(?:\s+#.*)?$", text, re.M)
    if match:
        return match.group(1) or match.group(2)
    match = re.search(rf"^\w+=\$\{{{name}:-(.*?)\}}$", text, re.M | re.S)
    assert match, f"{name} is not declared in {SCRIPT}"
    return match.group(1).replace("\\\n", "")


def budgets() -> dict[str, int]:
    return {k: int(v) for k, v in (pair.split(":") for pair in declared("BUDGETS").split())}


def test_budgets_fit_the_call_and_name_every_step_in_order():
    assert list(budgets()) == STEPS
    assert int(declared("LIMIT")) == CALL_LIMIT_S
    assert sum(budgets().values()) <= CALL_LIMIT_S
    # each step's limit is its budget less the time kept to read its results and to kill it
    assert min(budgets().values()) > 5 + int(declared("KILL_AFTER"))
    assert min(budgets()[s] for s in ("train", "ddp", "fsdp")) > 8 + int(declared("KILL_AFTER"))


def test_the_gpu_test_list_names_files_that_exist():
    listed = declared("TESTS").split()
    assert listed and all((ROOT / path).is_file() for path in listed), listed
    fuse = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "layers").glob("test_fuse*.py")
    }
    assert fuse <= set(listed)


@pytest.mark.slow
def test_dry_run_prints_every_result_and_returns_a_few_small_files(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    results_md = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    env = {
        **os.environ,
        "DEVICE": "cpu",
        "BATCH": "2",
        "SIZE": "32",
        "PRECISION": "32",
        "BIG": "resnet18",
        "SMALL": "resnet18",
        "SMALL_BATCH": "2",
        "COMPILE": "0",
        "TIME_SCALE": str(SCALE),
        "TIMING": "--warmup 1 --steps 1 --windows 2",
        "TESTS": "tests/training/test_speed.py::test_auto_is_on_for_cuda_only_and_bad_values_"
        "name_the_key",
        "RUN_TASK": "task=classification",
        "TRAIN_LIMITS": "trainer.max_epochs=1 trainer.limit_train_batches=2 "
        "trainer.limit_val_batches=1 trainer.limit_test_batches=1",
        "WORK": str(work),
    }
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SCALE * CALL_LIMIT_S + 60,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    found = [m for m in map(RESULT.match, lines) if m]
    assert [m["step"] for m in found] == STEPS, proc.stdout[-4000:]
    results = {m["step"]: m for m in found}
    for step, seconds in budgets().items():
        assert int(results[step]["budget"]) == SCALE * seconds
        assert int(results[step]["took"]) <= SCALE * seconds
    total = SCALE * sum(budgets().values())
    assert f"= {total}s of {SCALE * CALL_LIMIT_S}s" in lines[0]

    statuses = {step: m["status"] for step, m in results.items()}
    assert statuses == {**dict.fromkeys(STEPS, "ok"), "install": "skipped", "fsdp": "skipped"}
    assert results["install"]["detail"].endswith("already importable")
    assert results["fsdp"]["detail"].startswith("needs CUDA")
    assert "no CUDA device; torch " in results["env"]["detail"]
    assert results["tests"]["detail"].startswith("1 passed")
    assert "resnet18 ours/baseline: train eager " in results["throughput"]["detail"]
    assert re.search(
        r"resnet18: loop \d+/s, Trainer \d+/s, overhead", results["lightning"]["detail"]
    )
    for step in ("train", "ddp"):
        assert re.search(
            r"val/acc=0\.\d{4} test/acc=0\.\d{4} epochs=1 steps=2 world_size=1",
            results[step]["detail"],
        )
        assert "clean_keys=True" in results[step]["detail"]
    # the measurements were printed as they came, before their step's result line
    live = [i for i, line in enumerate(lines) if line.startswith("  [throughput]")]
    assert len(live) == 4 and max(live) < lines.index(results["throughput"].string)

    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert 0 < len(files) <= 8 and all(len(p.relative_to(out).parts) <= 3 for p in files)
    assert all(p.stat().st_size < 1_000_000 for p in files)
    assert {p.name for p in files} == {
        "summary.txt",
        "tests.txt",
        "logs.txt",
        "throughput.json",
        "lightning.json",
        "runs.json",
        "RESULTS.md",
    }
    assert set(json.loads((out / "runs.json").read_text())) == {"train", "ddp"}
    assert len(json.loads((out / "throughput.json").read_text())["rows"]) == 4
    summary = (out / "summary.txt").read_text()
    assert all(m.string in summary for m in found)
    assert "## Throughput, cpu, resnet18, 32" in (out / "RESULTS.md").read_text()
    assert (ROOT / "benchmarks" / "RESULTS.md").read_text() == results_md  # the tree is left alone
    assert (work / "runs" / "train" / "metrics.json").is_file()
