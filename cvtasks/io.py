"""Files in and out: atomic writes and safe loading of tensors and checkpoints."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch

# mkstemp creates files readable by their owner only; give the final file the usual mode instead
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    A crash or an exception inside the block leaves the old file (or none) in place, never half
    of a new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def remove_stale_temps(path: str | os.PathLike[str]) -> None:
    """Delete temporary files :func:`atomic_open` left beside ``path`` when a process was killed.

    A SIGKILL between ``mkstemp`` and the rename leaves ``.<name>.<random>.tmp``; only one process
    (rank zero) writes a given file, so any such file is an orphan.
    """
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def save_torch_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` into a temporary file, then rename it over ``path``.

    A reader never sees half a file: ``path`` holds either the previous complete file or the new
    one, whatever moment the writer is killed at.
    """
    remove_stale_temps(path)
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def torch_load_safe(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)``; a file that needs arbitrary unpickling is refused.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file holds Python objects that only full unpickling could rebuild (which
            can run any code), with the reason and what to do instead.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refusing to load {path}: it holds Python objects that only arbitrary unpickling can "
            f"restore, which can run code. Save plain tensors (state_dict) or use safetensors. "
            f"Detail: {str(err).splitlines()[0]}"
        ) from err


def load_tensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint or weights file without running arbitrary pickled code.

    ``.safetensors`` files go through safetensors; ``.pt``/``.pth``/``.ckpt`` through
    :func:`torch_load_safe`. A file that needs arbitrary unpickling is refused with a message
    saying why.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not a mapping of tensors, or needs unsafe unpickling.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    data = torch_load_safe(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, expected a dict of tensors")
    return data
