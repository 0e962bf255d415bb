"""Whole ``train.py task=siamese`` runs: the built-in faces, your identity folders, bad input."""

import os

import pytest

from tests.conftest import TINY
from tests.data.conftest import write_png

pytestmark = pytest.mark.slow

SMALL_FACES = (
    "data.identities=[24,8,8]",
    "data.images_per_person=4",
    "data.identities_per_batch=8",
)
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # LeNet-sized steps on a busy 2-core machine


def test_train_siamese_writes_verification_metrics(run_train):
    run = run_train("task=siamese", *TINY, *SMALL_FACES, env=ONE_THREAD).check()
    metrics = run.metrics
    for split in ("val", "test"):
        for name in ("verification_acc", "auc", "tar@far1e-2"):
            assert 0.0 <= metrics[f"{split}/{name}"] <= 1.0, (split, name)
    assert metrics["monitor"] == "val/auc" and metrics["monitor_mode"] == "max"
    report = metrics["reports"]["test"]["verification"]
    assert report["threshold_from"] == "val" and report["distance"] == "cosine"
    assert report["threshold"] == pytest.approx(metrics["test/threshold"])
    assert (run.run_dir / "checkpoints" / "best.ckpt").is_file()


def make_lfw(root, people=8, images=3, single=None):
    """LFW's layout: ``root/<name>/<name>_0001.png``; ``pairs.txt`` names people 0 and 1."""
    for k in range(people):
        name = f"Person_{k}"
        for i in range(1, images + 1):
            write_png(
                root / name / f"{name}_{i:04d}.png", value=(29 * k + 7 * i) % 256, size=(36, 36)
            )
    if single:
        write_png(root / single / f"{single}_0001.png", value=3, size=(36, 36))
    (root / "pairs.txt").write_text("1\t2\nPerson_0\t1\t2\nPerson_0\t1\tPerson_1\t3\n")
    return root


LFW_ARGS = (
    "task=siamese",
    "data=identity_folders",
    "data.test_pairs=pairs.txt",
    "data.val_fraction=0.34",
    "data.num_pairs=8",
    "data.image_size=36",
    "data.identities_per_batch=2",
    "data.images_per_identity=2",
    "data.num_workers=0",
    "data.augment=[]",
)


def test_train_siamese_on_identity_folders_with_an_lfw_pairs_file(run_train, tmp_path):
    root = make_lfw(tmp_path / "lfw")
    run = run_train(*TINY, *LFW_ARGS, f"data.root={root}", env=ONE_THREAD).check()
    assert 0.0 <= run.metrics["test/auc"] <= 1.0
    assert run.metrics["reports"]["test"]["verification"]["threshold_from"] == "val"


def test_identity_folders_without_a_root_names_data_root(run_train):
    run = run_train(*TINY, "task=siamese", "data=identity_folders")
    assert run.proc.returncode != 0
    assert "data.root is not set" in run.output and "data.root=" in run.output


@pytest.mark.parametrize("problem", ["one image", "missing file"])
def test_bad_identity_input_is_an_error_naming_the_file(run_train, tmp_path, problem):
    root = make_lfw(tmp_path / "lfw", single="Solo" if problem == "one image" else None)
    if problem == "missing file":
        os.remove(root / "Person_1" / "Person_1_0003.png")
        expected = f"pairs.txt:3: image {root / 'Person_1' / 'Person_1_0003'}.* does not exist"
    else:
        expected = f"identity folder {root / 'Solo'} has one image"
    # split_seed 0 carves Person_4 and Person_6 out for val: Solo stays a training identity
    run = run_train(*TINY, *LFW_ARGS, f"data.root={root}", "data.split_seed=0", env=ONE_THREAD)
    assert run.proc.returncode != 0
    assert expected in run.output
