"""The run folder's lock, the refusal to replace a finished run, and the clean-up of temp files."""

import subprocess
import sys
import textwrap

import pytest

from cvtasks.config import ConfigError
from cvtasks.training.run_folder import (
    RunFolderBusyError,
    RunFolderLock,
    check_new_run,
    remove_stale_temps_in,
    run_results,
)


def finished_run(run_dir):
    (run_dir / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        (run_dir / name).write_text(name)
    return run_dir


def test_a_second_lock_on_the_folder_is_refused_naming_the_holder(tmp_path):
    with RunFolderLock(tmp_path / "run"), pytest.raises(RunFolderBusyError) as err:
        RunFolderLock(tmp_path / "run").acquire()
    message = str(err.value)
    assert str(tmp_path / "run") in message and "in use by another run (pid " in message
    assert "hydra.run.dir=PATH" in message
    RunFolderLock(tmp_path / "run").acquire().release()  # free again once released


def test_the_lock_of_another_process_is_seen_and_dies_with_it(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from cvtasks.training.run_folder import RunFolderLock
                RunFolderLock({str(tmp_path)!r}).acquire()
                print("locked", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusyError, match=f"pid {holder.pid}"):
            RunFolderLock(tmp_path).acquire()
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs, the kernel still drops the lock
        holder.wait()
    RunFolderLock(tmp_path).acquire().release()


def test_a_folder_with_a_finished_run_is_refused_with_the_three_ways_on(tmp_path):
    run_dir = finished_run(tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        check_new_run(run_dir, overwrite=False)
    message = str(err.value)
    assert message.startswith(f"{run_dir} already holds a run (checkpoints/best.ckpt")
    for way in ("ckpt_path=last", "hydra.run.dir=PATH", "overwrite=true"):
        assert way in message
    assert (run_dir / "checkpoints" / "best.ckpt").read_text() == "checkpoints/best.ckpt"


def test_overwrite_removes_the_old_results_and_nothing_else(tmp_path):
    run_dir = finished_run(tmp_path / "run")
    (run_dir / "notes.txt").write_text("mine")
    check_new_run(run_dir, overwrite=True)
    assert run_results(run_dir) == [] and not (run_dir / "checkpoints").exists()
    assert (run_dir / "notes.txt").read_text() == "mine"


def test_an_empty_or_hydra_only_folder_is_a_new_run(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "train.log").write_text("")
    check_new_run(run_dir, overwrite=False)
    check_new_run(tmp_path / "missing", overwrite=False)


def test_temp_files_of_killed_atomic_writes_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "csv").mkdir()
    stale = [
        tmp_path / ".config.yaml.k2j4h1x_.tmp",
        tmp_path / "csv" / ".metrics.csv.abc123de.tmp",
        tmp_path / ".digits.q1w2e3r4.tmp",  # a killed dataset write leaves a folder
    ]
    stale[0].write_text("half")
    stale[1].write_text("half")
    stale[2].mkdir()
    (stale[2] / "0.png").write_bytes(b"x")
    kept = [tmp_path / "config.yaml", tmp_path / "notes.tmp", tmp_path / ".hidden.tmp"]
    for path in kept:
        path.write_text("keep")
    removed = remove_stale_temps_in(tmp_path)
    assert sorted(removed) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


def test_what_a_killed_atomic_write_leaves_is_what_the_clean_up_removes(tmp_path):
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys\n"
            "from cvtasks.io import atomic_open\n"
            "with atomic_open(sys.argv[1]) as f:\n"
            "    f.write('half'); f.flush(); os._exit(9)\n",
            str(tmp_path / "config.yaml"),
        ],
        check=False,
    )
    assert killed.returncode == 9
    (leftover,) = tmp_path.glob(".config.yaml.*.tmp")
    assert remove_stale_temps_in(tmp_path) == [leftover]
    assert list(tmp_path.iterdir()) == []
