import json
import pickle

import pytest
import torch

from cvtasks.io import atomic_open, load_tensors, save_torch_atomic, write_json


def test_write_json_round_trip_and_no_temp_files_left(tmp_path):
    path = tmp_path / "sub" / "m.json"
    write_json(path, {"a": torch.tensor(0.5), "b": [1, 2]})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


def test_atomic_open_keeps_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("half of a new")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_load_tensors_pt_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = {"w": torch.randn(3, 2), "b": torch.zeros(2)}
    torch.save(state, tmp_path / "w.pth")
    save_file(state, str(tmp_path / "w.safetensors"))
    for name in ("w.pth", "w.safetensors"):
        loaded = load_tensors(tmp_path / name)
        assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["b"], state["b"])


class Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_load_tensors_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"x": Payload()}, f)
    with pytest.raises(ValueError, match=r"refusing to load .*arbitrary unpickling"):
        load_tensors(path)


def test_load_tensors_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        load_tensors(tmp_path / "nope.pth")


SAVER = """
import sys, torch
from cvtasks.io import save_torch_atomic
path, n = sys.argv[1], 0
while True:  # bigger and bigger checkpoints, so a kill lands mid-write
    n += 1
    save_torch_atomic({"step": n, "w": torch.full((200_000 + 1000 * n,), float(n))}, path)
    print(n, flush=True)
"""


def test_killed_mid_save_never_leaves_half_a_checkpoint(tmp_path):
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "last.ckpt"
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    rng = random.Random(0)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.readline()  # one complete save happened
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        state = torch.load(path, weights_only=True)  # always complete: never a torn file
        assert torch.all(state["w"] == float(state["step"]))
    save_torch_atomic({"x": torch.zeros(1)}, path)  # the next save cleans up orphaned temps
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_torch_load_safe_refuses_code_on_unpickling(tmp_path):
    from cvtasks.io import torch_load_safe

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, path)
    with pytest.raises(ValueError, match=r"refusing to load .*can run code"):
        torch_load_safe(path)
