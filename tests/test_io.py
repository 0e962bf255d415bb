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


def test_the_next_save_removes_the_temp_files_of_killed_saves(tmp_path):
    # what a save killed between its temp file and the rename leaves (the kill itself, at a
    # fixed byte of a real Lightning save, is tested in tests/training/test_checkpoint_io.py)
    orphans = [tmp_path / ".last.ckpt.k2j4h1x_.tmp", tmp_path / ".last.ckpt.abc12345.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"PK half a zip")
    other = tmp_path / ".best.ckpt.abc12345.tmp"  # another file's: not this save's to remove
    other.write_bytes(b"x")
    save_torch_atomic({"x": torch.zeros(1)}, tmp_path / "last.ckpt")
    assert not any(p.exists() for p in orphans) and other.exists()
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["x"].tolist() == [0.0]


def test_torch_load_safe_refuses_code_on_unpickling(tmp_path):
    from cvtasks.io import torch_load_safe

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, path)
    with pytest.raises(ValueError, match=r"refusing to load .*can run code"):
        torch_load_safe(path)


# -- damaged files are called damaged, unsafe ones unsafe -----------------------------------------
def good_checkpoint(path, legacy=False):
    state = {"state_dict": {"w": torch.randn(64), "b": torch.zeros(3)}, "epoch": 2}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


def rewrite_zip(src, dst, drop):
    import zipfile

    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for name in old.namelist():
            if not name.endswith(drop):
                new.writestr(name, old.read(name))
    return dst


def random_bytes(path):
    import random

    path.write_bytes(random.Random(0).randbytes(5000))  # starts neither with PK nor a pickle
    return path


def truncated(path, legacy=False):
    data = good_checkpoint(path, legacy).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def empty(path):
    path.write_bytes(b"")
    return path


def folder(path):
    path.mkdir()
    return path


CORRUPT = {
    "random bytes": (random_bytes, "neither a zip archive nor a pickle"),
    "truncated zip": (truncated, "the zip archive is cut short or damaged"),
    "truncated legacy": (lambda p: truncated(p, legacy=True), "cut short|pickled data"),
    "empty": (empty, "the file is empty"),
    "folder": (folder, "it is a folder"),
    "zip without data.pkl": (
        lambda p: rewrite_zip(good_checkpoint(p.with_suffix(".src")), p, "data.pkl"),
        "the zip archive has no data.pkl member",
    ),
    "zip without a tensor": (
        lambda p: rewrite_zip(good_checkpoint(p.with_suffix(".src")), p, "data/0"),
        "failed locating file data/0",
    ),
}


@pytest.mark.parametrize("mmap", [False, True], ids=["load", "probe"])
@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_checkpoint_is_reported_as_corrupt_with_path_size_and_fix(tmp_path, case, mmap):
    import re

    from cvtasks.io import CorruptFileError, probe_checkpoint, torch_load_safe

    make, reason = CORRUPT[case]
    path = make(tmp_path / "last.ckpt")
    size = "a folder" if path.is_dir() else f"{path.stat().st_size:,} bytes"
    with pytest.raises(CorruptFileError) as info:
        (probe_checkpoint if mmap else torch_load_safe)(path)
    message = str(info.value)
    assert message.startswith(f"corrupt file {path} ({size}): ")
    assert re.search(reason, message), message
    assert "expected a PyTorch checkpoint (zip archive) written by torch.save" in message
    assert message.endswith(".") and "\n" not in message and "can run code" not in message
    assert isinstance(info.value, ValueError)  # callers catching ValueError still catch it


def test_empty_file_message_in_full(tmp_path):
    from cvtasks.io import CorruptFileError

    path = empty(tmp_path / "w.pth")
    with pytest.raises(CorruptFileError) as info:
        load_tensors(path)
    assert str(info.value) == (
        f"corrupt file {path} (0 bytes): the file is empty; expected a PyTorch checkpoint (zip "
        "archive) written by torch.save. Copy or download it again, or use another checkpoint."
    )


def test_a_damaged_global_name_is_corrupt_not_unsafe(tmp_path):
    from collections import OrderedDict

    from cvtasks.io import CorruptFileError

    path = tmp_path / "m.pt"
    torch.save(OrderedDict(w=torch.ones(2)), path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    assert b"collections\nOrderedDict" in data
    path.write_bytes(data.replace(b"collections\nOrderedDict", b"collectionz\nOrderedDict"))
    with pytest.raises(CorruptFileError, match=r"pickled data cannot be read .*collectionz"):
        load_tensors(path)


def test_an_unsafe_global_keeps_the_refusal(tmp_path):
    from cvtasks.io import CorruptFileError

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, path)
    with pytest.raises(ValueError, match=r"can run code. .*Detail: Unsupported global") as info:
        load_tensors(path)
    assert not isinstance(info.value, CorruptFileError)


def test_running_out_of_memory_while_loading_is_not_called_corrupt(tmp_path, monkeypatch):
    from cvtasks.io import torch_load_safe

    path = good_checkpoint(tmp_path / "m.ckpt")
    oom = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
        "memory: you tried to allocate 8589934592 bytes. Error code 12 (Cannot allocate memory)"
    )

    def fail(*args, **kwargs):
        raise oom

    monkeypatch.setattr(torch, "load", fail)
    with pytest.raises(RuntimeError) as info:
        torch_load_safe(path)
    assert info.value is oom


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p, data: p.write_bytes(b""), "header too small"),
        (lambda p, data: p.write_bytes(data[: len(data) // 2]), "incomplete metadata"),
        (lambda p, data: p.mkdir(), "it is a folder"),
    ],
    ids=["empty", "truncated", "folder"],
)
def test_corrupt_safetensors_file(tmp_path, make, reason):
    from safetensors.torch import save_file

    from cvtasks.io import CorruptFileError

    save_file({"w": torch.randn(100)}, str(tmp_path / "good.safetensors"))
    path = tmp_path / "w.safetensors"
    make(path, (tmp_path / "good.safetensors").read_bytes())
    with pytest.raises(CorruptFileError) as info:
        load_tensors(path)
    assert str(info.value).startswith(f"corrupt file {path} (")
    assert reason in str(info.value) and "expected a safetensors file" in str(info.value)


def test_probe_checks_a_checkpoint_without_reading_its_tensors(tmp_path):
    import struct
    import zipfile

    from cvtasks.io import probe_checkpoint

    path = tmp_path / "m.ckpt"
    torch.save({"w": torch.zeros(4096), "epoch": 3}, path)
    probed = probe_checkpoint(path)
    assert probed["epoch"] == 3 and probed["w"].shape == (4096,)
    # overwrite the tensor's bytes in place: a tensor read at probe time would still be zeros
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo("m/data/0").header_offset
    with open(path, "r+b") as f:
        f.seek(offset)
        name_len, extra_len = struct.unpack("<HH", f.read(30)[26:30])
        f.seek(offset + 30 + name_len + extra_len)
        f.write(torch.ones(4096).numpy().tobytes())
    assert float(probed["w"].sum()) == 4096.0
