"""Two torchrun nodes of one CPU process each, on this machine over gloo: ``trainer=ddp_multinode``
as a cluster runs it, both nodes sharing one run folder and one data cache."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cvtasks.data.builtin.digits import DIGITS_DIR
from tests.conftest import ROOT, TINY
from tests.e2e.distributed import assert_test_metrics_equal, one_process_test_metrics

pytestmark = pytest.mark.slow

MULTINODE = (
    "trainer=ddp_multinode",
    "trainer.accelerator=cpu",  # Lightning picks gloo for DDP on the CPU
    "trainer.devices=1",
    "trainer.num_nodes=2",
    "trainer.precision=32-true",  # ddp.yaml's bf16-mixed is for GPUs; the reference runs fp32
    "data.num_workers=0",
)


def free_port() -> int:
    """A TCP port nobody listens on now (the system's pick), for the first node's store."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_nodes(cwd: Path, *overrides: str, timeout: float = 240) -> list[tuple[int, str]]:
    """``torchrun --nnodes 2`` twice at once, node ranks 0 and 1; each node's (status, stderr).

    Outputs go to files (two pipes read one after the other could fill and stall a node). On a
    timeout both launchers are killed with their workers (each leads its own process group), and
    the assertion shows the end of both logs.
    """
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the two nodes share this machine's cores
    procs, logs, timed_out = [], [], False
    try:
        for node in (0, 1):
            cmd = [
                *(sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"),
                *("--node_rank", str(node), "--nproc_per_node", "1"),
                *("--master_addr", "127.0.0.1", "--master_port", str(port)),
                *(str(ROOT / "train.py"), *overrides),
            ]
            out, err = (cwd / f"node{node}.out").open("w"), (cwd / f"node{node}.err").open("w")
            logs += [out, err]
            procs.append(
                subprocess.Popen(
                    cmd, cwd=cwd, stdout=out, stderr=err, env=env, start_new_session=True
                )
            )
        deadline = time.monotonic() + timeout
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:  # also on an interrupted test: no node outlives it
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in logs:
            log.close()
    results = [(p.returncode, (cwd / f"node{n}.err").read_text()) for n, p in enumerate(procs)]
    assert not timed_out, tails(results, f"timed out after {timeout} s")
    return results


def tails(results: list[tuple[int, str]], what: str) -> str:
    """Both nodes' status and the end of their stderr, for an assertion's message."""
    shown = [f"node {n}: status {code}\n{err[-3000:]}" for n, (code, err) in enumerate(results)]
    return f"{what}\n" + "\n".join(shown)


def test_two_nodes_one_run_folder_and_metrics_equal_one_process(tmp_path, monkeypatch):
    cache = tmp_path / "cache"  # empty: both nodes prepare the built-in digits at once
    monkeypatch.setenv("CVTASKS_CACHE", str(cache))
    run_dir = tmp_path / "run"
    results = launch_two_nodes(
        tmp_path,
        *TINY,
        *MULTINODE,
        "task=classification",
        "trainer.limit_test_batches=null",  # the whole test split, split over the nodes
        f"hydra.run.dir={run_dir}",
    )
    assert [code for code, _ in results] == [0, 0], tails(results, "a node failed")

    # one run folder, written by rank zero; nothing else in the launch folder
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["cache", "run"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert len(list(tmp_path.rglob("metrics.json"))) == 1
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("config.yaml")) == [
        ".hydra/config.yaml",
        "config.yaml",
    ]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    # rank 1 logged to its own file, not into rank zero's train.log
    assert "data: digits" in (run_dir / "train_rank1.log").read_text()
    assert "data: digits" in (run_dir / "train.log").read_text()
    assert (run_dir / "train.log").read_text().count("data: digits") == 1
    # both nodes prepared the digits at once: one whole folder, no half-written copy
    assert [p.name for p in (cache / "data").iterdir() if not p.name.startswith(".")] == [
        DIGITS_DIR
    ]
    assert not list((cache / "data").glob(".*.tmp"))

    single = one_process_test_metrics(run_dir, metrics["best_checkpoint"])
    assert_test_metrics_equal(metrics, single, "classification")


def test_two_nodes_refuse_a_folder_holding_a_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text('{"world_size": 1}')
    results = launch_two_nodes(tmp_path, *TINY, *MULTINODE, f"hydra.run.dir={run_dir}", timeout=120)

    # rank zero claims the folder and refuses in one line; rank 1 learns it from rank zero and
    # stops with the same line, where it would wait for rank zero in Lightning's set-up
    (code0, err0), (code1, err1) = results
    assert code0 != 0 and code1 != 0, tails(results, "a node went on")
    refusal = (
        f"{run_dir} already holds a run (metrics.json): resume it with ckpt_path=last, "
        "choose another folder (hydra.run.dir=PATH), or replace it with overwrite=true"
    )
    assert [x for x in err0.splitlines() if x.startswith("error: ")] == [f"error: {refusal}"]
    assert [x for x in err1.splitlines() if x.startswith("error: ")] == [
        f"error: rank 0: {refusal}"
    ], tails(results, "rank 1 did not hear of the refusal")
    assert (run_dir / "metrics.json").read_text() == '{"world_size": 1}'
    assert not (run_dir / "checkpoints").exists()
