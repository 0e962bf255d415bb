"""Where the tools write: never over one of their inputs, never over a training run's results."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def refuse_overwriting_inputs(
    outputs: Iterable[str | os.PathLike[str]], inputs: dict[str, str | os.PathLike[str]]
) -> None:
    """Raise ``ValueError`` when a file about to be written is one of the command's inputs.

    Args:
        outputs: the files the command will write.
        inputs: config key → the input file it names (``{"ckpt": ..., "image": ...}``).
    """
    for output in map(Path, outputs):
        for key, given in inputs.items():
            if given is not None and _same_file(output, Path(given)):
                raise ValueError(
                    f"refusing to write {output}: it is the input {key}={given}; give output= "
                    "another path"
                )


def refuse_output_inside_input(output: str | os.PathLike[str], key: str, given: str) -> None:
    """Raise ``ValueError`` when the output folder is the input folder ``given`` or inside it.

    Pictures written there would overwrite same-named inputs and be read as inputs next time.
    """
    folder = Path(given).expanduser()
    if not folder.is_dir():
        return
    out = Path(output).expanduser().resolve()
    if out == folder.resolve() or folder.resolve() in out.parents:
        raise ValueError(
            f"output={output} is inside the input folder {key}={given}: its files would mix with "
            "the inputs (and be read as inputs next time); give output= a folder outside it"
        )


def refuse_run_folder(output: str | os.PathLike[str]) -> None:
    """Raise ``ValueError`` when ``output`` is a training run's folder (its results would go)."""
    out = Path(output).expanduser()
    if (out / "config.yaml").is_file() and (out / "checkpoints").is_dir():
        raise ValueError(
            f"output={output} is the folder of a training run: its metrics.json would be "
            "replaced; give output= another folder (e.g. output=evaluation)"
        )


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that takes a file name; on success it is
    renamed over ``path`` in one step, so a killed export never leaves half a model file.

    The temporary name is the one :func:`cvtasks.io.atomic_open` uses, so the same clean-up
    finds what a killed writer left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
