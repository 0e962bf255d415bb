"""A run folder never loses results: refusals, a lock, appended history, truthful exit codes."""

import csv
import os
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT, TINY, TrainRun, run_in_process

pytestmark = pytest.mark.slow

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
EVERY_STEP = "callbacks.model_checkpoint.every_n_train_steps=1"


def command(run_dir, *overrides):
    return [sys.executable, str(ROOT / "train.py"), *TINY, *overrides, f"hydra.run.dir={run_dir}"]


def train(tmp_path, run_dir, *overrides):
    proc = subprocess.run(
        command(run_dir, *overrides),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    return TrainRun(proc, run_dir)


def train_here(tmp_path, run_dir, *overrides):
    """The same run through train.py's entry point in this process (no import time)."""
    from cvtasks.cli.train import main

    argv = ["train.py", *TINY, *overrides, f"hydra.run.dir={run_dir}"]
    return TrainRun(run_in_process(main, argv, tmp_path), run_dir)


def inject(name, **kwargs):
    extra = [f"+callbacks.phase.{key}={value}" for key, value in kwargs.items()]
    return [f"+callbacks.phase._target_=tests.e2e.inject_phases.{name}", *extra]


def csv_rows(run_dir):
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_a_new_run_into_a_finished_runs_folder_is_refused_unless_asked(tmp_path):
    run_dir = tmp_path / "run"
    first = train_here(tmp_path, run_dir).check()
    best = (run_dir / "checkpoints" / "best.ckpt").read_bytes()
    refused = train_here(tmp_path, run_dir, "trainer.max_epochs=2")
    assert refused.proc.returncode == 2, refused.output[-3000:]
    assert f"error: {run_dir} already holds a run" in refused.proc.stderr
    assert "ckpt_path=last" in refused.proc.stderr and "Traceback" not in refused.proc.stderr
    assert (run_dir / "checkpoints" / "best.ckpt").read_bytes() == best
    assert first.metrics["epochs"] == 1 == TrainRun(refused.proc, run_dir).metrics["epochs"]

    replaced = train_here(tmp_path, run_dir, "trainer.max_epochs=2", "overwrite=true").check()
    assert replaced.metrics["epochs"] == 2
    assert [r["epoch"] for r in csv_rows(run_dir) if r.get("val/acc")] == ["0", "1"]


def test_a_second_run_into_a_busy_folder_is_refused_and_the_first_finishes(tmp_path):
    run_dir = tmp_path / "run"
    release = tmp_path / "release"
    first = subprocess.Popen(
        command(run_dir, *inject("WaitForFile", path=release)),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "waiting").exists() and time.monotonic() < deadline:
            assert first.poll() is None, first.stdout.read()[-3000:]
            time.sleep(0.1)
        second = train_here(tmp_path, run_dir, "trainer.max_epochs=2")
        assert second.proc.returncode == 2, second.output[-3000:]
        assert f"{run_dir} is in use by another run (pid {first.pid}" in second.proc.stderr
    finally:
        release.touch()
        output = first.communicate(timeout=300)[0]
    assert first.returncode == 0, output[-3000:]
    run = TrainRun(subprocess.CompletedProcess([], 0, "", ""), run_dir)
    assert run.metrics["epochs"] == 1  # the first run's results, not mixed with the second's


def test_a_resume_appends_to_the_history_and_removes_stale_temp_files(tmp_path):
    run_dir = tmp_path / "run"
    killed = train(
        tmp_path,
        run_dir,
        "trainer.max_epochs=2",
        EVERY_STEP,
        "+callbacks.kill._target_=tests.e2e.inject.KillAt",
        "+callbacks.kill.step=4",
    )
    assert killed.proc.returncode == -9
    before = csv_rows(run_dir)
    assert before, "rows up to the last checkpoint are on disk"
    stale = run_dir / ".config.yaml.k2j4h1x_.tmp"
    stale.write_text("half a file of a killed write")
    resumed = train_here(tmp_path, run_dir, "trainer.max_epochs=2", EVERY_STEP, "ckpt_path=last")
    assert resumed.check().metrics["global_step"] == 6
    after = csv_rows(run_dir)
    assert [r["step"] for r in after[: len(before)]] == [r["step"] for r in before]
    assert len(after) > len(before) and not stale.exists()


def test_a_failed_resume_deletes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    train_here(tmp_path, run_dir).check()
    history = (run_dir / "csv" / "metrics.csv").read_text()
    failed = train_here(tmp_path, run_dir, "ckpt_path=last", "task.head.name=mlp")
    assert failed.proc.returncode != 0
    assert (run_dir / "csv" / "metrics.csv").read_text() == history
    assert (run_dir / "metrics.json").is_file()


def test_sigterm_in_the_final_test_exits_143_and_a_resume_finishes_the_run(tmp_path):
    run_dir = tmp_path / "run"
    stopped = train(tmp_path, run_dir, *inject("SigtermInTest"))
    assert stopped.proc.returncode == 143, stopped.output[-3000:]
    assert "stopped by SIGTERM during the final test" in stopped.output
    assert "resume with ckpt_path=last" in stopped.output
    assert not (run_dir / "metrics.json").exists()
    resumed = train_here(tmp_path, run_dir, "ckpt_path=last").check()
    assert resumed.metrics["global_step"] == 3 and 0.0 <= resumed.metrics["test/acc"] <= 1.0


@pytest.mark.parametrize("injector", ["SigtermInValidation", "SigtermAfterFit"])
def test_sigterm_around_training_exits_143_with_a_resumable_checkpoint(tmp_path, injector):
    run_dir = tmp_path / "run"
    stopped = train(tmp_path, run_dir, *inject(injector))
    assert stopped.proc.returncode == 143, stopped.output[-3000:]
    assert "stopped by SIGTERM during training" in stopped.output
    assert not (run_dir / "metrics.json").exists()
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3


def test_sigterm_while_the_run_is_set_up_exits_143(tmp_path):
    plugin = ROOT / "tests" / "e2e" / "sigterm_on_import.py"
    stopped = train(tmp_path, tmp_path / "run", f"plugins=[{plugin}]")
    assert stopped.proc.returncode == 143, stopped.output[-3000:]
    assert "stopped by SIGTERM during the set-up of the run" in stopped.output
    assert "nothing to resume yet: run the same command again" in stopped.output
