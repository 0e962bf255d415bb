"""Where cvtasks keeps files it generates once and reuses (built-in datasets)."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    one step, so a reader never sees half a dataset. Writers take turns on a lock file beside
    it (``.<name>.lock``): a process that finds another one writing waits, then uses what that
    one wrote, instead of generating the data a second time. Whoever holds the lock also deletes
    the temporary folders of writers that were killed (no live writer can own them).

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
    lock = final.parent / f".{final.name}.lock"
    with _locked(lock):
        if final.is_dir():  # written by the process we waited for
            return final
        for stale in final.parent.glob(f".{final.name}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        try:
            fill(tmp)
            try:
                tmp.rename(final)
            except OSError:
                if not final.is_dir():  # not a writer outside the lock finishing first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already when the rename succeeded
        # Whoever takes the lock from now on finds the folder first; nobody needs the file.
        lock.unlink(missing_ok=True)
    return final


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``, waiting for it; the kernel frees it if we die."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock
