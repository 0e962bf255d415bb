"""A run training from shards, stopped mid-epoch and resumed with ``ckpt_path=last``, trains the
rest of that epoch, each sample once, then whole epochs again.

Every training image is a class of its own, so the labels a step trained on name its samples.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import ROOT, cvtasks_in_process
from tests.e2e.inject import at_step

pytestmark = pytest.mark.slow

SAMPLES = 24  # training images, in chunks of 3
BATCH = 4  # 2 steps end inside a chunk (sample 8 of 9); batches fill an epoch exactly: the case
# in which LitData's loader alone, resumed without workers, gave the later epochs no batch at all
EPOCH = [BATCH] * (SAMPLES // BATCH)  # batch sizes of one epoch (one process: nothing dropped)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """24 one-image classes (and a val and test image) written as shards of 3 samples."""
    root = tmp_path_factory.mktemp("shards_resume")
    rng = np.random.default_rng(0)
    for split, count in (("train", SAMPLES), ("val", 1), ("test", 1)):
        for label in range(count):
            folder = root / "raw" / split / f"c{label:02d}"
            folder.mkdir(parents=True)
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / "0.png")
    out = root / "shards"
    proc = cvtasks_in_process(
        "data",
        "convert",
        "data=image_folder",
        f"data.root={root / 'raw'}",
        f"output={out}",
        "shard_size=3",
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((out / "train").glob("*.bin"))) == SAMPLES // 3
    return out


def run_args(shards, labels, num_workers, epochs, *overrides):
    return [
        "data=shards",
        f"data.root={shards}",
        f"data.batch_size={BATCH}",
        f"data.num_workers={num_workers}",
        "backbone=lenet5",
        f"trainer.max_epochs={epochs}",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "callbacks.progress_bar=null",
        "logger=none",
        "+callbacks.labels._target_=tests.e2e.inject.RecordLabels",
        f"+callbacks.labels.path={labels}",
        *overrides,
    ]


def recorded(path):
    """``[(step, epoch, labels), ...]`` in the order the steps ran."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [(d["step"], d["epoch"], d["labels"]) for d in lines]


def stopped_checkpoint(run_dir, global_step):
    """``last.ckpt``'s step and the number of samples its training loader had handed out."""
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    [loader] = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert ckpt["global_step"] == global_step
    return loader["num_samples_yielded"]


def assert_each_sample_once_per_epoch(steps, epochs, stopped_after):
    """``epochs`` whole epochs, steps numbered on from the stop: every sample once an epoch;
    the epoch stopped after step ``stopped_after`` trained the samples it had not yet."""
    assert [s[0] for s in steps] == list(range(1, epochs * len(EPOCH) + 1)), "a step twice or lost"
    for epoch in range(epochs):
        batches = [labels for _step, e, labels in steps if e == epoch]
        assert [len(b) for b in batches] == EPOCH, f"epoch {epoch}"
        seen = [label for batch in batches for label in batch]
        assert sorted(seen) == list(range(SAMPLES)), f"epoch {epoch}: each sample exactly once"
    stopped = steps[stopped_after - 1][1]
    in_epoch = [(step, labels) for step, e, labels in steps if e == stopped]
    before = {label for step, labels in in_epoch if step <= stopped_after for label in labels}
    after = {label for step, labels in in_epoch if step > stopped_after for label in labels}
    assert before and after, "stopped mid-epoch"
    assert not before & after and len(before | after) == SAMPLES


def test_sigterm_mid_epoch_then_ckpt_path_last_trains_the_rest_of_the_epoch_once(
    shards, tmp_path, run_train
):
    labels, run_dir = tmp_path / "labels.jsonl", tmp_path / "run"
    # the signal at step 1 stops the run after step 2: 8 samples, inside the third chunk
    args = run_args(shards, labels, 0, 2, *at_step("SigtermAt", 1))
    stopped = run_train(*args, env={"PYTHONPATH": str(ROOT)})  # signalled: a process of its own
    assert stopped.proc.returncode == 143, stopped.output[-3000:]
    assert stopped_checkpoint(run_dir, 2) == 2 * BATCH
    assert [s[0] for s in recorded(labels)] == [1, 2]

    resumed = run_train(*run_args(shards, labels, 0, 2, "ckpt_path=last"))
    assert resumed.check().metrics["global_step"] == 2 * len(EPOCH)
    assert_each_sample_once_per_epoch(recorded(labels), epochs=2, stopped_after=2)


def test_a_failure_mid_epoch_with_a_loader_worker_resumes_without_replaying(
    shards, tmp_path, run_train
):
    labels, run_dir = tmp_path / "labels.jsonl", tmp_path / "run"
    # last.ckpt after every step; the failure comes in the second epoch, after a validation:
    # before step 9, its third batch
    every_step = "callbacks.model_checkpoint.every_n_train_steps=1"
    args = run_args(shards, labels, 1, 3, every_step, *at_step("OomAt", 8))
    failed = run_train(*args)
    assert failed.proc.returncode != 0 and "out of memory" in failed.output
    # the worker reads batches ahead of the steps; the checkpoint counts the trained ones only
    assert stopped_checkpoint(run_dir, 8) == 2 * BATCH
    assert [s[0] for s in recorded(labels)] == list(range(1, 9))

    resumed = run_train(*run_args(shards, labels, 1, 3, every_step, "ckpt_path=last"))
    assert resumed.check().metrics["global_step"] == 3 * len(EPOCH)
    assert_each_sample_once_per_epoch(recorded(labels), epochs=3, stopped_after=8)
