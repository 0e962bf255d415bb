"""``ckpt_path=last`` or ``ckpt_path=PATH``: which checkpoint to resume, and into which folder.

A resumed run writes into the run folder of its checkpoint (``<run>/checkpoints/x.ckpt`` →
``<run>``), so its checkpoints, logs and ``metrics.json`` continue where they were. ``last`` means:

* with ``hydra.run.dir`` given (a stable folder, e.g. one per SLURM job id): that folder's newest
  ``checkpoints/last.ckpt`` or Lightning ``hpc_ckpt_*.ckpt``, and a fresh start when it has none
  (so one command serves the first start and every requeue);
* otherwise the newest ``last.ckpt`` among ``<paths.log_dir>/<task>/runs/*/checkpoints/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cvtasks.config import ConfigError


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to (the parent of ``checkpoints/``)."""
    checkpoint = checkpoint.resolve()
    parent = checkpoint.parent
    return parent.parent if parent.name == "checkpoints" else parent


def checkpoints_in(run_dir: Path) -> list[Path]:
    """Resumable checkpoints of one run folder: ``last.ckpt`` and Lightning's SLURM ones."""
    found = [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")]
    return [p for p in found if p.is_file()]


def newest(paths: Sequence[Path]) -> Path | None:
    """The most recently written of ``paths`` (``None`` when empty)."""
    return max(paths, key=lambda p: p.stat().st_mtime_ns) if paths else None


def find_last(log_dir: Path, task: str) -> Path:
    """The newest ``last.ckpt`` of any run of ``task`` under ``log_dir``.

    Raises:
        ConfigError: there is none, naming the folder searched.
    """
    runs = log_dir / task / "runs"
    found = newest([p for p in runs.glob("*/checkpoints/last.ckpt") if p.is_file()])
    if found is None:
        raise ConfigError(
            f"ckpt_path=last: no checkpoints/last.ckpt under {runs.resolve()}/*; give a "
            f"checkpoint file (ckpt_path=PATH) or start without ckpt_path"
        )
    return found


def _value(overrides: Sequence[str], key: str) -> str | None:
    for arg in reversed(overrides):
        name, sep, value = arg.partition("=")
        if sep and name.lstrip("+") == key:
            return value.strip("'\"")
    return None


def resolve_overrides(overrides: Sequence[str], log_dir: Path, task: str) -> list[str]:
    """Rewrite command-line overrides so Hydra runs a resumed job in its checkpoint's folder.

    Args:
        overrides: the command line after ``train.py``.
        log_dir: ``paths.log_dir`` of the composed config (where ``last`` is searched).
        task: ``task.name`` of the composed config.

    Returns:
        ``overrides`` with ``ckpt_path`` made absolute (or ``null`` for a first start in a stable
        folder) and ``hydra.run.dir`` set to the checkpoint's run folder.

    Raises:
        ConfigError: a given checkpoint file does not exist, or ``last`` finds none.
    """
    ckpt = _value(overrides, "ckpt_path")
    if ckpt in (None, "", "null", "None"):
        return list(overrides)
    run_dir = _value(overrides, "hydra.run.dir")
    if ckpt == "last":
        if run_dir is not None:
            found = newest(checkpoints_in(Path(run_dir)))
            resolved = "null" if found is None else str(found.resolve())
            return [*overrides, f"ckpt_path={resolved}"]
        path = find_last(log_dir, task)
    else:
        path = Path(ckpt).expanduser()
        if not path.is_file():
            raise ConfigError(f"ckpt_path={ckpt}: no such checkpoint file ({path.resolve()})")
    extra = [f"ckpt_path={path.resolve()}"]
    if run_dir is None:
        extra.append(f"hydra.run.dir={run_dir_of(path)}")
    return [*overrides, *extra]
