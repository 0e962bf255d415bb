"""Guards around a run folder: one writer at a time, no silent replacement of a finished run.

A run folder holds what a training run produced (``config.yaml``, ``checkpoints/``, the loggers'
files, ``metrics.json``). Three things must never happen to it:

* two runs writing into it at once, mixing one run's config with another's checkpoints:
  :class:`RunFolderLock` takes an exclusive ``flock`` on ``<run>/.lock`` for the life of the
  process (the kernel drops it when the process dies, even by SIGKILL, so it never goes stale);
* a new run silently replacing a finished one's results: :func:`check_new_run` refuses unless
  the user asks to overwrite (or resumes with ``ckpt_path``);
* leftovers of a killed atomic write (``.<name>.<random>.tmp``) piling up:
  :func:`remove_stale_temps_in` deletes them once the lock is held (no other writer can own them).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import time
from pathlib import Path
from types import TracebackType

from cvtasks.config import ConfigError

LOCK_NAME = ".lock"

#: what a run leaves in its folder; any of these means the folder holds a run's results
RESULT_PATTERNS = (
    "config.yaml",
    "config.resumed-*.yaml",
    "metrics.json",
    "checkpoints/*.ckpt",
    "hpc_ckpt_*.ckpt",
    "csv/metrics.csv",
)

#: the temporary names ``cvtasks.io.atomic_open`` and ``cvtasks.data.cache.write_once`` use
_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


class RunFolderBusyError(ConfigError):
    """Another process holds the run folder's lock."""


class RunFolderLock:
    """An exclusive, non-blocking lock on a run folder, held until :meth:`release` or exit.

    Args:
        run_dir: the run folder (created if missing).

    Raises:
        RunFolderBusyError: on entering, when another process holds the lock; the message names
            that process and the fix.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunFolderLock:
        """Take the lock and write this process's id and start time into the lock file."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_holder(fd)
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise RunFolderBusyError(
                f"{self.run_dir} is in use by another run ({holder}): wait for it to finish, or "
                "give this run another folder (hydra.run.dir=PATH)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the file stays; an unlocked file means nobody holds the folder)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"


def run_results(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The result files of an earlier run in ``run_dir`` (see :data:`RESULT_PATTERNS`)."""
    run_dir = Path(run_dir)
    found = {p for pattern in RESULT_PATTERNS for p in run_dir.glob(pattern) if p.is_file()}
    return sorted(found)


def check_new_run(run_dir: str | os.PathLike[str], overwrite: bool) -> None:
    """Refuse to start a new run in a folder that holds another run's results.

    Args:
        run_dir: the folder the run is about to write into.
        overwrite: the user asked to replace that run (``overwrite=true``): its results are
            deleted here, so that nothing of it (a ``best.ckpt``, a ``metrics.csv``) is mistaken
            for the new run's.

    Raises:
        ConfigError: the folder holds a run and ``overwrite`` is false; the message names the
            folder, what it holds, and the three ways on.
    """
    run_dir = Path(run_dir)
    found = run_results(run_dir)
    if not found:
        return
    if overwrite:
        for path in found:
            path.unlink(missing_ok=True)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        return
    shown = ", ".join(p.relative_to(run_dir).as_posix() for p in found[:4])
    more = f" and {len(found) - 4} more" if len(found) > 4 else ""
    raise ConfigError(
        f"{run_dir} already holds a run ({shown}{more}): resume it with ckpt_path=last, "
        "choose another folder (hydra.run.dir=PATH), or replace it with overwrite=true"
    )


def remove_stale_temps_in(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files and folders that killed atomic writes left under ``folder``.

    Call it only while holding the folder's :class:`RunFolderLock`: then no live writer owns
    them. Returns what was deleted.
    """
    removed = []
    for path in sorted(Path(folder).rglob(".*.tmp")):
        if not _TEMP.match(path.name) or not path.exists():
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
