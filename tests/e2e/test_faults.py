"""NaN losses, out-of-memory, unreadable images, invalid values, unsafe checkpoints: clear ends."""

import math

import pytest
import torch
from PIL import Image

from tests.conftest import ROOT, TINY
from tests.e2e.inject import at_step

pytestmark = pytest.mark.slow

ENV = {"PYTHONPATH": str(ROOT)}
SMALL = (*TINY, "trainer.limit_train_batches=4", "logger=none")


def test_nan_loss_stops_naming_step_and_batch_and_keeps_the_last_good_checkpoint(run_train):
    every_step = "callbacks.model_checkpoint.every_n_train_steps=1"
    run = run_train(*SMALL, "trainer.max_epochs=2", every_step, *at_step("NanAt", 6), env=ENV)
    assert run.proc.returncode == 1
    assert "non-finite training loss (nan" in run.proc.stderr
    assert "global step 6, epoch 1, batch 2 of the epoch" in run.proc.stderr
    assert "callbacks.nonfinite_loss.action=skip" in run.proc.stderr
    state = torch.load(run.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 6
    assert all(
        torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point()
    )


def test_nan_loss_skip_drops_that_update_and_counts_it(run_train):
    run = run_train(*SMALL, "callbacks.nonfinite_loss.action=skip", *at_step("NanAt", 1), env=ENV)
    metrics = run.check().metrics
    assert metrics["train/nonfinite_skipped"] == 1
    assert metrics["global_step"] == 4 and math.isfinite(metrics["val/loss"])
    state = torch.load(metrics["best_checkpoint"], weights_only=True)
    assert all(
        torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point()
    )


def test_out_of_memory_suggests_a_batch_size(run_train):
    run = run_train(*SMALL, "data.batch_size=64", *at_step("OomAt", 1), env=ENV)
    assert run.proc.returncode == 1
    assert "out of memory with data.batch_size=64 per process" in run.proc.stderr
    assert "Try: data.batch_size=32" in run.proc.stderr
    assert "trainer.accumulate_grad_batches=2" in run.proc.stderr


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("task.optimizer.lr=-0.001", "task.optimizer.lr=-0.001: must be a number > 0"),
        ("trainer.precision=fp8", "trainer.precision='fp8': must be one of"),
    ],
)
def test_invalid_value_fails_before_training(train_in_process, override, expected):
    run = train_in_process(*TINY, override)
    assert run.proc.returncode == 2
    assert expected in run.proc.stderr and "Traceback" not in run.proc.stderr


def bad_image_folder(root):
    """Two classes of good PNGs plus one of each kind of bad file in class ``a``."""
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), (40 * i, 200 if cls == "a" else 0, 90)).save(
                root / cls / f"{i}.png"
            )
    good_png = (root / "a" / "0.png").read_bytes()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(root / "b" / "full.jpg", quality=90)
    good_jpg = (root / "b" / "full.jpg").read_bytes()
    bad = {
        "truncated.png": good_png[: len(good_png) // 2],
        "truncated.jpg": good_jpg[: len(good_jpg) // 2],
        "empty.png": b"",
        "text.jpg": b"this is not an image at all\n",
    }
    for name, data in bad.items():
        (root / "a" / name).write_bytes(data)
    (root / "b" / "png_named.jpg").write_bytes(good_png)  # wrong extension, readable: kept
    return [root / "a" / name for name in bad]


FOLDER = [
    "data=image_folder",
    "data.image_size=32",
    "data.num_workers=0",
    "data.batch_size=4",
    "data.augment=[]",
    "data.val_fraction=0.25",
    "data.test_fraction=0.25",
    "trainer.max_epochs=1",
    "callbacks.progress_bar=null",
    "logger=none",
]


def test_every_kind_of_bad_image_is_skipped_counted_and_named(run_train, tmp_path):
    bad = bad_image_folder(tmp_path / "imgs")
    run = run_train(*FOLDER, f"data.root={tmp_path / 'imgs'}", "data.on_bad_image=skip").check()
    skipped = sum(v for k, v in run.metrics.items() if k.endswith("skipped_images"))
    # an empty file is known to be no image when the folder is listed: it is skipped (and named)
    # there, and never reaches a batch; the others are found when decoded, and counted
    assert skipped == len(bad) - 1
    for path in bad:
        assert path.name in run.output


def test_bad_image_error_names_the_file(run_train, tmp_path):
    bad = bad_image_folder(tmp_path / "imgs")
    run = run_train(*FOLDER, f"data.root={tmp_path / 'imgs'}")
    assert run.proc.returncode != 0
    assert any(str(path) in run.output for path in bad)


class RunsCode:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_checkpoint_that_runs_code_on_load_is_refused(run_train, tmp_path):
    evil = tmp_path / "evil" / "checkpoints" / "last.ckpt"
    evil.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "epoch": 0, "global_step": 0, "x": RunsCode()}, evil)
    run = run_train(*TINY, f"ckpt_path={evil}")
    assert run.proc.returncode != 0
    assert "refusing to load" in run.output and "can run code" in run.output
    assert "code ran while loading" not in run.output
