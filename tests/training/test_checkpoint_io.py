"""AtomicCheckpointIO: atomic saves, and checkpoints that would run code on load are refused."""

import os

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
