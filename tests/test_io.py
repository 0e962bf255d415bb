import json
import pickle

import pytest
import torch

from cvtasks.io import atomic_open, load_tensors, write_json


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
