"""Where cvtasks keeps files it generates once and reuses (built-in datasets)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def default_cache_dir() -> Path:
    """The folder for cvtasks' generated files.

    ``$CVTASKS_CACHE`` when set, else ``$XDG_CACHE_HOME/cvtasks``, else ``~/.cache/cvtasks``.
    The folder is not created here: callers create what they write into.

    Returns:
        The cache folder, with ``~`` expanded.
    """
    explicit = os.environ.get("CVTASKS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "cvtasks"
    return Path.home() / ".cache" / "cvtasks"


def write_once(final: str | os.PathLike[str], fill: Callable[[Path], None]) -> Path:
    """Create the folder ``final`` with ``fill(tmp)`` unless it exists already.

    ``fill`` writes into a temporary folder beside ``final`` that is then renamed into place in
    one step, so a reader never sees half a dataset; when two processes race, the first rename
    wins and the other's files are dropped.

    Args:
        final: the folder to create.
        fill: writes the contents into the folder it is given.

    Returns:
        ``final``, with ``~`` expanded.
    """
    final = Path(final).expanduser()
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        fill(tmp)
        try:
            tmp.rename(final)
        except OSError:
            if not final.is_dir():  # not a lost race with another process: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when the rename succeeded
    return final
