"""Killed runs resume from last.ckpt in their own folder and go on as an uninterrupted run: the
same training loss at every step after the resume, the same final metrics."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT, TrainRun, run_in_process
from tests.e2e.inject import at_step

pytestmark = pytest.mark.slow

# two epochs of four batches, last.ckpt after every step; augmentation stays on (digits default)
RUN = (
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "callbacks.progress_bar=null",
    "callbacks.model_checkpoint.every_n_train_steps=1",
    "logger=none",
)


def train(cwd, run_dir, *overrides, here=False):
    """``train.py`` in ``cwd``; ``run_dir=None`` lets Hydra (or a resume) choose the folder.

    ``here=True`` runs its entry point in this process (no import time), for runs that are
    neither killed nor signalled.
    """
    where = [f"hydra.run.dir={run_dir}"] if run_dir else []
    if here:
        from cvtasks.cli.train import main

        argv = ["train.py", *RUN, *overrides, *where]
        return TrainRun(run_in_process(main, argv, cwd), run_dir)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *RUN, *overrides, *where],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return TrainRun(proc, run_dir)


def record_losses(path):
    """Overrides that append every training step's loss to ``path`` (``RecordLosses``)."""
    return [
        "+callbacks.losses._target_=tests.e2e.inject.RecordLosses",
        f"+callbacks.losses.path={path}",
    ]


def step_losses(path):
    """``[(step, epoch, batch, loss), ...]`` in the order the steps ran."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [(d["step"], d["epoch"], d["batch"], d["loss"]) for d in lines]


def assert_same_steps(resumed, reference, resumed_from):
    """The resumed run went on with the step after its checkpoint, batch by batch as the
    uninterrupted run did, each with the same loss; no step ran twice."""
    assert [s[:3] for s in resumed] == [s[:3] for s in reference], "steps, epochs and batches"
    for (step, _, _, got), (_, _, _, want) in zip(resumed, reference):
        if step > resumed_from:
            assert got == pytest.approx(want, rel=1e-6, abs=1e-7), f"training loss at step {step}"


def test_sigkill_mid_epoch_then_ckpt_path_last_matches_an_uninterrupted_run(tmp_path):
    logs = tmp_path / "logs"
    ref_losses, losses = tmp_path / "reference.jsonl", tmp_path / "killed.jsonl"
    reference = train(
        tmp_path, tmp_path / "reference", *record_losses(ref_losses), here=True
    ).check()
    killed_dir = logs / "classification" / "runs" / "killed"
    # killed before step 7: epoch 1, batch 2 (mid-epoch)
    killed = train(tmp_path, killed_dir, *at_step("KillAt", 6), *record_losses(losses))
    assert killed.proc.returncode == -signal.SIGKILL
    assert not (killed_dir / "metrics.json").exists()
    last = killed_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 6
    assert [s[0] for s in step_losses(losses)] == [1, 2, 3, 4, 5, 6]

    # ckpt_path=last: the newest last.ckpt under paths.log_dir, resumed in its own run folder
    resumed = train(
        tmp_path, None, f"paths.log_dir={logs}", "ckpt_path=last", *record_losses(losses)
    )
    resumed.run_dir = killed_dir
    resumed.check()
    assert step_losses(losses)[6][:3] == (7, 1, 2)  # epoch 1, batch 2: where it was killed
    assert_same_steps(step_losses(losses), step_losses(ref_losses), resumed_from=6)
    assert sorted(p.name for p in (logs / "classification" / "runs").iterdir()) == ["killed"]
    assert (killed_dir / "config.yaml").exists() and list(killed_dir.glob("config.resumed-*"))
    ref, got = reference.metrics, resumed.metrics
    assert got["global_step"] == ref["global_step"] == 8
    for key in ("val/loss", "val/acc", "test/loss", "test/acc"):
        assert got[key] == pytest.approx(ref[key], abs=1e-4), key


def test_siamese_pk_batches_resume_mid_epoch_like_an_uninterrupted_run(tmp_path):
    siamese = ("task=siamese", "data=digits_identities")
    ref_losses, losses = tmp_path / "reference.jsonl", tmp_path / "killed.jsonl"
    reference = train(
        tmp_path, tmp_path / "reference", *siamese, *record_losses(ref_losses), here=True
    )
    reference.check()
    killed_dir = tmp_path / "killed"
    killed = train(tmp_path, killed_dir, *siamese, *at_step("KillAt", 6), *record_losses(losses))
    assert killed.proc.returncode == -signal.SIGKILL
    resumed = train(tmp_path, killed_dir, *siamese, "ckpt_path=last", *record_losses(losses))
    resumed.check()
    assert_same_steps(step_losses(losses), step_losses(ref_losses), resumed_from=6)
    ref, got = reference.metrics, resumed.metrics
    assert got["global_step"] == ref["global_step"] == 8
    for key in ("val/auc", "test/auc", "test/verification_acc"):
        assert got[key] == pytest.approx(ref[key], abs=1e-4), key


def test_ckpt_path_last_with_nothing_to_resume_says_where_it_looked(tmp_path):
    run = train(tmp_path, None, f"paths.log_dir={tmp_path / 'logs'}", "ckpt_path=last", here=True)
    assert run.proc.returncode == 2
    assert "ckpt_path=last: no checkpoints/last.ckpt under" in run.proc.stderr
    assert str(tmp_path / "logs" / "classification" / "runs") in run.proc.stderr


def test_sigterm_saves_a_resumable_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    every_epoch = "callbacks.model_checkpoint.every_n_train_steps=null"
    stopped = train(tmp_path, run_dir, every_epoch, *at_step("SigtermAt", 2))
    assert stopped.proc.returncode == 143, stopped.output[-3000:]
    assert "stopped by SIGTERM" in stopped.output
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 3  # the batch after the signal
    resumed = train(tmp_path, None, f"ckpt_path={last}", here=True)
    resumed.run_dir = run_dir
    assert resumed.check().metrics["global_step"] == 8


def test_sigkill_before_the_first_validation_resumes_from_the_last_step_saved(tmp_path):
    run_dir, losses = tmp_path / "killed", tmp_path / "killed.jsonl"
    # killed before step 3: epoch 0, batch 2, before any validation has scored the weights
    killed = train(tmp_path, run_dir, *at_step("KillAt", 2), *record_losses(losses))
    assert killed.proc.returncode == -signal.SIGKILL
    saved = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert [p.name for p in saved] == ["last.ckpt"]  # no score yet: no best.ckpt
    assert torch.load(saved[0], weights_only=True)["global_step"] == 2

    resumed = train(tmp_path, run_dir, "ckpt_path=last", *record_losses(losses), here=True)
    assert resumed.check().metrics["global_step"] == 8
    steps = [s[:3] for s in step_losses(losses)]
    assert steps == [(1, 0, 0), (2, 0, 1), (3, 0, 2), (4, 0, 3)] + [(5 + b, 1, b) for b in range(4)]
