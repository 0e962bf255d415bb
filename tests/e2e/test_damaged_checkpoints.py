"""A damaged checkpoint is named as such: ``ckpt_path=last`` resumes another, ``PATH`` stops."""

import pytest

from tests.conftest import TINY

pytestmark = pytest.mark.slow


def test_ckpt_path_last_skips_a_cut_short_last_ckpt_and_rewinds_to_best(run_train):
    first = run_train(*TINY).check()
    last = first.run_dir / "checkpoints" / "last.ckpt"
    best = first.run_dir / "checkpoints" / "best.ckpt"
    assert not last.is_symlink()
    last.write_bytes(last.read_bytes()[:1000])  # what a full disk leaves
    second = run_train(*TINY, "trainer.max_epochs=2", "ckpt_path=last").check()
    assert f"ckpt_path=last: skipped {last} (corrupt, 1,000 bytes: the zip archive" in second.output
    assert f"resuming from {best} (not a last/hpc checkpoint: training rewinds to epoch" in (
        second.output
    )
    assert second.metrics["epochs"] == 2 and second.metrics["global_step"] == 6


def test_ckpt_path_to_an_empty_file_is_one_error_line(train_in_process, tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    run = train_in_process(*TINY, f"ckpt_path={empty}")
    assert run.proc.returncode == 2
    assert run.proc.stderr.strip() == (
        f"error: ckpt_path={empty}: corrupt file {empty} (0 bytes): the file is empty; expected a "
        "PyTorch checkpoint (zip archive) written by torch.save. Copy or download it again, or "
        "use another checkpoint."
    )
