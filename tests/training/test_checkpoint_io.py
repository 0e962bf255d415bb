"""AtomicCheckpointIO: atomic saves, and checkpoints that would run code on load are refused."""

import os
import signal
import subprocess
import sys
import zipfile

import pytest
import torch

from cvtasks.training.checkpoint_io import AtomicCheckpointIO


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_round_trip_and_file_mode(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 2}, path)
    loaded = io.load_checkpoint(path)
    assert loaded["epoch"] == 2 and torch.equal(loaded["state_dict"]["w"], torch.ones(3))
    assert path.stat().st_mode & 0o044  # readable like any file, not only by its owner
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_crafted_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": RunsCode()}, path)
    with pytest.raises(ValueError, match=r"refusing to load .*evil\.ckpt.*can run code"):
        AtomicCheckpointIO().load_checkpoint(path)
    with pytest.raises(ValueError, match="weights_only=False"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)


def test_a_damaged_checkpoint_is_called_corrupt_not_unsafe(tmp_path):
    from cvtasks.io import CorruptFileError

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    path.write_bytes(path.read_bytes()[:-100])  # the archive's end (its directory) is gone
    with pytest.raises(
        CorruptFileError, match=r"last\.ckpt \([\d,]+ bytes\): the zip archive is cut"
    ):
        AtomicCheckpointIO().load_checkpoint(path)


# A tiny Trainer saving last.ckpt after every step, through AtomicCheckpointIO ("atomic") or a
# checkpoint IO that writes straight into the target ("in_place"). It is SIGKILLed while writing
# its second checkpoint, once half as many bytes as the first one has are on disk (printed).
SAVE_AND_DIE = """
import os, signal, sys
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from cvtasks.training.checkpoint_io import AtomicCheckpointIO

out, how = sys.argv[1], sys.argv[2]


class InPlaceCheckpointIO(AtomicCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            torch.save(checkpoint, f)


class DieMidWrite:
    def __init__(self, file, limit):
        self.file, self.room = file, limit

    def write(self, data):
        if len(data) >= self.room:  # the bytes up to the limit reach the disk, then SIGKILL
            self.file.write(bytes(data[: self.room]))
            self.file.flush()
            os.fsync(self.file.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        self.room -= len(data)
        return self.file.write(data)

    def flush(self):
        self.file.flush()


real_save, saves = torch.save, []


def save(obj, f, *args, **kwargs):
    saves.append(obj["global_step"])
    if len(saves) == 2:
        limit = os.path.getsize(os.path.join(out, "last.ckpt")) // 2
        print(limit, flush=True)
        f = DieMidWrite(f, limit)
    return real_save(obj, f, *args, **kwargs)


torch.save = save


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(64, 64)

    def training_step(self, batch, batch_idx):
        return self.net(batch).square().mean()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


torch.manual_seed(0)
trainer = pl.Trainer(
    accelerator="cpu",
    max_steps=4,
    logger=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    default_root_dir=out,
    plugins=[AtomicCheckpointIO() if how == "atomic" else InPlaceCheckpointIO()],
    callbacks=[ModelCheckpoint(dirpath=out, save_last=True, save_top_k=0, every_n_train_steps=1)],
)
trainer.fit(Tiny(), torch.utils.data.DataLoader(torch.randn(8, 64), batch_size=2))
"""


def save_and_die(tmp_path, how: str) -> int:
    """Run the Trainer above until its kill; the number of bytes of the cut checkpoint."""
    script = tmp_path / "save_and_die.py"
    script.write_text(SAVE_AND_DIE)
    out = tmp_path / "checkpoints"
    proc = subprocess.run(
        [sys.executable, str(script), str(out), how], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    return int(proc.stdout.split()[-1])


def test_a_lightning_save_killed_midway_leaves_the_previous_last_ckpt(tmp_path):
    written = save_and_die(tmp_path, "atomic")
    last = tmp_path / "checkpoints" / "last.ckpt"
    state = AtomicCheckpointIO().load_checkpoint(last)
    assert state["global_step"] == 1  # the first checkpoint, whole
    torch.nn.Linear(64, 64).load_state_dict(
        {k.removeprefix("net."): v for k, v in state["state_dict"].items()}
    )
    assert len(state["optimizer_states"][0]["state"]) == 2  # Adam moments of weight and bias
    # the second save was really cut: its temporary file holds exactly the bytes written
    (temp,) = (tmp_path / "checkpoints").glob(".last.ckpt.*.tmp")
    assert temp.stat().st_size == written > 0


def test_the_same_kill_tears_a_checkpoint_written_in_place(tmp_path):
    written = save_and_die(tmp_path, "in_place")
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.stat().st_size == written  # half of a checkpoint, where a whole one was
    assert not zipfile.is_zipfile(last)
    with pytest.raises((RuntimeError, EOFError, OSError)):  # which depends on where the cut is
        torch.load(last, weights_only=True)


def model_checkpoint_state(folder, **names):
    """Lightning's ModelCheckpoint state as a checkpoint stores it."""
    state = {
        "dirpath": str(folder),
        "best_model_path": str(folder / "best.ckpt"),
        "kth_best_model_path": str(folder / "best.ckpt"),
        "last_model_path": str(folder / "last.ckpt"),
        "best_k_models": {str(folder / "best.ckpt"): torch.tensor(0.5)},
        "best_model_score": torch.tensor(0.5),
    }
    return {"ModelCheckpoint{'monitor': 'val/acc', 'mode': 'max'}": {**state, **names}}


@pytest.mark.parametrize(
    "names",
    [
        {"last_model_path": "{folder}/../../victim.txt"},  # Lightning would delete it
        {"best_model_path": "/elsewhere/best.ckpt"},  # Lightning would test it
        {"best_k_models": {"{folder}/../x.ckpt": 0.1}},
        {"kth_best_model_path": "s3://bucket/x.ckpt"},
    ],
    ids=["last-traversal", "best-elsewhere", "top-k", "remote"],
)
def test_checkpoint_naming_files_outside_its_folder_is_refused(tmp_path, names):
    folder = tmp_path / "run" / "checkpoints"
    names = {
        k: {n.format(folder=folder): s for n, s in v.items()}
        if isinstance(v, dict)
        else v.format(folder=folder)
        for k, v in names.items()
    }
    path = folder / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {}, "callbacks": model_checkpoint_state(folder)}, path)
    assert io.load_checkpoint(path)["callbacks"]  # what Lightning writes loads
    io.save_checkpoint(
        {"state_dict": {}, "callbacks": model_checkpoint_state(folder, **names)}, path
    )
    outside = next(iter(names.values()))
    outside = next(iter(outside)) if isinstance(outside, dict) else outside
    with pytest.raises(ValueError) as info:
        io.load_checkpoint(path)
    assert str(info.value) == (
        f"refusing to load {path}: the state of its ModelCheckpoint names {outside!r}, outside "
        f"its checkpoint folder {str(folder)!r} (Lightning would load or delete that file). "
        "Resume from a checkpoint train.py wrote."
    )
