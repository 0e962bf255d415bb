"""``data convert`` then ``train.py data=shards``, and its errors, as a user runs them."""

import pytest

from tests.conftest import TINY
from tests.conftest import cvtasks_in_process as cvtasks

pytestmark = pytest.mark.slow


def test_convert_the_digits_then_train_evaluate_and_resume_from_the_shards(run_train, tmp_path):
    shards = tmp_path / "shards"
    proc = cvtasks("data", "convert", f"output={shards}", "shard_size=300", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"python train.py data=shards data.root={shards}" in proc.stdout
    run = run_train("data=shards", f"data.root={shards}", *TINY, "trainer.limit_test_batches=null")
    metrics = run.check().metrics
    assert 0.0 <= metrics["test/acc"] <= 1.0
    config = (run.run_dir / "config.yaml").read_text()
    assert "image_size: 32" in config and "batch_size: 64" in config  # the digits' values
    # the whole test split, as one process evaluating the checkpoint reads it again
    ckpt = run.run_dir / "checkpoints" / "best.ckpt"
    out = tmp_path / "evaluation"
    proc = cvtasks("evaluate", f"ckpt={ckpt}", f"output={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_folder_that_holds_no_shards_stops_in_one_line(run_train, tmp_path):
    run = run_train("data=shards", f"data.root={tmp_path}", *TINY)
    assert run.proc.returncode != 0
    assert "no cvtasks_shards.json there" in run.proc.stderr
    assert "Traceback" not in run.proc.stderr


@pytest.mark.parametrize(
    "task, data",
    [
        ("siamese", ("data=digits_identities", "backbone=lenet5")),
        (
            "detection",
            ("data=digits_detection", "data.num_train=32", "data.num_val=8", "data.num_test=8"),
        ),
        (
            "landmarks",
            ("data=synthetic_faces", "data.num_train=32", "data.num_val=8", "data.num_test=8"),
        ),
    ],
)
def test_other_tasks_train_and_evaluate_from_their_shards(run_train, tmp_path, task, data):
    shards = tmp_path / "shards"
    args = ("data", "convert", f"task={task}", *data, f"output={shards}", "shard_size=16")
    proc = cvtasks(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    backbone = [a for a in data if a.startswith("backbone=")]
    run = run_train(f"task={task}", "data=shards", f"data.root={shards}", *backbone, *TINY)
    metrics = run.check().metrics
    assert metrics and all(v == v for v in metrics.values())  # numbers, not NaN
    ckpt = run.run_dir / "checkpoints" / "last.ckpt"
    proc = cvtasks("evaluate", f"ckpt={ckpt}", f"output={tmp_path / 'ev'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
