"""ckpt_path=last / PATH resolve to a checkpoint file and the run folder it belongs to."""

import os
import time

import pytest

from cvtasks.config import ConfigError
from cvtasks.training.resume import resolve_overrides, run_dir_of


def make_run(root, name, mtime):
    ckpt = root / "classification" / "runs" / name / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    os.utime(ckpt, (mtime, mtime))
    return ckpt


def test_last_is_the_newest_run_and_resumes_into_its_folder(tmp_path):
    now = time.time()
    make_run(tmp_path, "old", now - 100)
    new = make_run(tmp_path, "new", now)
    out = resolve_overrides(["ckpt_path=last", "seed=1"], tmp_path, "classification")
    assert out[-2:] == [f"ckpt_path={new.resolve()}", f"hydra.run.dir={new.parent.parent}"]


def test_a_path_resumes_into_its_run_folder(tmp_path):
    ckpt = make_run(tmp_path, "r1", time.time())
    out = resolve_overrides([f"ckpt_path={ckpt}"], tmp_path, "classification")
    assert f"hydra.run.dir={ckpt.parent.parent.resolve()}" in out
    assert run_dir_of(ckpt) == ckpt.parent.parent.resolve()


def test_last_in_a_stable_folder_starts_fresh_when_empty(tmp_path):
    stable = tmp_path / "slurm" / "123"
    out = resolve_overrides(["ckpt_path=last", f"hydra.run.dir={stable}"], tmp_path, "x")
    assert out[-1] == "ckpt_path=null"
    (stable / "checkpoints").mkdir(parents=True)
    (stable / "checkpoints" / "last.ckpt").write_bytes(b"x")
    out = resolve_overrides(["ckpt_path=last", f"hydra.run.dir={stable}"], tmp_path, "x")
    assert out[-1] == f"ckpt_path={(stable / 'checkpoints' / 'last.ckpt').resolve()}"


def test_nothing_to_resume_names_the_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"ckpt_path=last: no checkpoints/last.ckpt under .*runs"):
        resolve_overrides(["ckpt_path=last"], tmp_path, "classification")
    with pytest.raises(ConfigError, match=r"ckpt_path=nope.ckpt: no such checkpoint file"):
        resolve_overrides(["ckpt_path=nope.ckpt"], tmp_path, "classification")
