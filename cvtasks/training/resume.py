"""``ckpt_path=last`` or ``ckpt_path=PATH``: which checkpoint to resume, and into which folder.

A resumed run writes into the run folder of its checkpoint (``<run>/checkpoints/x.ckpt`` →
``<run>``), so its checkpoints, logs and ``metrics.json`` continue where they were. ``last`` means:

* with ``hydra.run.dir`` given (a stable folder, e.g. one per SLURM job id): that folder's newest
  ``checkpoints/last.ckpt`` or Lightning ``hpc_ckpt_*.ckpt``, and a fresh start when it has none
  (so one command serves the first start and every requeue);
* otherwise the newest ``last.ckpt`` (or ``hpc_ckpt_*.ckpt``) among
  ``<paths.log_dir>/<task>/runs/*/``.

Only a checkpoint that loads is chosen. A damaged one (cut short by a full disk, a half copy) is
skipped with a warning naming it, why, and the file used instead; when no ``last``/``hpc``
checkpoint loads, the run folder's ``best.ckpt`` or other ``*.ckpt`` is the last resort (which
rewinds training to where that file was saved). Checking a file maps it instead of reading it
(:func:`cvtasks.io.probe_checkpoint`), so it costs milliseconds whatever the checkpoint's size.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from cvtasks.config import ConfigError
from cvtasks.io import CorruptFileError, probe_checkpoint
from cvtasks.training.checkpoint_io import CONFIG_KEY, check_callback_paths

log = logging.getLogger(__name__)

#: override values Hydra reads as they are; anything else is quoted (``epoch=3-step=90.ckpt``)
_PLAIN = re.compile(r"[\w./@%+-]+")


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to (the parent of ``checkpoints/``)."""
    checkpoint = checkpoint.resolve()
    parent = checkpoint.parent
    return parent.parent if parent.name == "checkpoints" else parent


def checkpoints_in(run_dir: Path) -> list[Path]:
    """Resumable checkpoints of one run folder: ``last.ckpt`` and Lightning's SLURM ones."""
    found = [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")]
    return [p for p in found if p.is_file()]


def other_checkpoints_in(run_dir: Path) -> list[Path]:
    """The run folder's other checkpoints (``best.ckpt``, ``epoch=…``): resuming one rewinds."""
    resumable = set(checkpoints_in(run_dir))
    found = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    return [p for p in found if p.is_file() and p not in resumable]


def newest(paths: Sequence[Path]) -> Path | None:
    """The most recently written of ``paths`` (``None`` when empty)."""
    return max(paths, key=lambda p: p.stat().st_mtime_ns) if paths else None


def load_problem(path: Path) -> str | None:
    """Why ``path`` cannot be resumed from (corrupt, refused), or ``None`` when it loads."""
    return _probe(path)[1]


def probe_resumable(path: str | Path) -> dict[str, Any]:
    """The checkpoint memory-mapped (:func:`cvtasks.io.probe_checkpoint`), with the file names
    in its ``ModelCheckpoint`` state checked (:func:`.checkpoint_io.check_callback_paths`).

    Raises:
        FileNotFoundError, CorruptFileError, ValueError: missing, damaged, refused.
    """
    state = probe_checkpoint(path)
    check_callback_paths(state, path)
    return state


def _probe(path: Path) -> tuple[Mapping[str, Any], str | None]:
    try:
        return probe_resumable(path), None
    except CorruptFileError as err:
        return {}, f"corrupt, {err.size}: {err.reason}"
    except (ValueError, OSError) as err:  # refused as unsafe, unreadable
        return {}, str(err).split(". ")[0]


def choose_loadable(candidates: Sequence[Path], fallbacks: Sequence[Path] = ()) -> Path | None:
    """The newest of ``candidates`` that loads, else the newest of ``fallbacks`` that loads.

    Each skipped file, and falling back (which rewinds training), is logged as a warning that
    names the file used instead. ``fallbacks`` are tried only after a candidate failed.

    Returns:
        The checkpoint to resume, or ``None`` when there are no candidates at all.

    Raises:
        ConfigError: files were tried and none loads; lists each with why.
    """
    tried: list[tuple[Path, str]] = []
    ordered = sorted(candidates, key=lambda p: p.stat().st_mtime_ns, reverse=True)
    rest = sorted(fallbacks, key=lambda p: p.stat().st_mtime_ns, reverse=True) if ordered else []
    for path in [*ordered, *rest]:
        state, problem = _probe(path)
        if problem is not None:
            tried.append((path, problem))
            continue
        if tried:
            skipped = "; ".join(f"{p} ({why})" for p, why in tried)
            rewinds = ""
            if path not in candidates:
                where = f"epoch {state.get('epoch', '?')}, step {state.get('global_step', '?')}"
                rewinds = f" (not a last/hpc checkpoint: training rewinds to {where})"
            log.warning("ckpt_path=last: skipped %s; resuming from %s%s", skipped, path, rewinds)
        return path
    if tried:
        listed = "; ".join(f"{p} ({why})" for p, why in tried)
        raise ConfigError(
            f"ckpt_path=last: no checkpoint loads: {listed}. Give a good checkpoint file "
            "(ckpt_path=PATH), or start a new run without ckpt_path."
        )
    return None


def resumable_in(run_dir: Path) -> Path | None:
    """The checkpoint ``ckpt_path=last`` resumes in one run folder (``None``: there is none).

    Raises:
        ConfigError: checkpoints are there but none loads.
    """
    return choose_loadable(checkpoints_in(run_dir), other_checkpoints_in(run_dir))


def find_last(log_dir: Path, task: str) -> Path:
    """The newest loadable ``last.ckpt`` (or ``hpc_ckpt_*.ckpt``) of any run of ``task``.

    Raises:
        ConfigError: there is none, naming the folder searched; or none of them loads.
    """
    runs = log_dir / task / "runs"
    run_dirs = sorted(p for p in runs.glob("*") if p.is_dir())
    candidates = [c for run in run_dirs for c in checkpoints_in(run)]
    found = choose_loadable(candidates, [c for run in run_dirs for c in other_checkpoints_in(run)])
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


def override(key: str, value: str) -> str:
    """``key=value`` as Hydra parses it back to ``value``: quoted unless plainly safe.

    Lightning names checkpoints ``epoch=3-step=90.ckpt``; a ``,`` would start a sweep and ``${``
    an interpolation. In a quoted value only a quote, and backslashes before a quote or at the
    end, are escaped.
    """
    if _PLAIN.fullmatch(value):
        return f"{key}={value}"
    escaped = re.sub(r"(\\*)('|$)", lambda m: m[1] * 2 + ("\\'" if m[2] else ""), value)
    escaped = escaped.replace("${", "\\${")
    return f"{key}='{escaped}'"


def resolve_overrides(overrides: Sequence[str], log_dir: Path, task: str) -> list[str]:
    """Rewrite command-line overrides so Hydra runs a resumed job in its checkpoint's folder.

    Args:
        overrides: the command line after ``train.py``.
        log_dir: ``paths.log_dir`` of the composed config (where ``last`` is searched).
        task: ``task.name`` of the composed config.

    Returns:
        ``overrides`` with ``ckpt_path`` made absolute and ``hydra.run.dir`` set to the
        checkpoint's run folder; with ``hydra.run.dir`` given, ``ckpt_path=last`` is left for
        the run to resolve in that folder (a first start when it holds no checkpoint).

    Raises:
        ConfigError: a given checkpoint file does not exist or does not load, or ``last`` finds
            none that loads.
    """
    ckpt = _value(overrides, "ckpt_path")
    if ckpt in (None, "", "null", "None"):
        return list(overrides)
    run_dir = _value(overrides, "hydra.run.dir")
    if ckpt == "last":
        if run_dir is not None:  # train() resolves it in that folder, once it holds the folder
            return list(overrides)
        path = find_last(log_dir, task)
    else:
        path = Path(ckpt).expanduser()
        if not path.is_file():
            raise ConfigError(f"ckpt_path={ckpt}: no such checkpoint file ({path.resolve()})")
        try:
            probe_resumable(path)
        except ValueError as err:  # corrupt, or refused as unsafe: the message says which
            raise ConfigError(f"ckpt_path={ckpt}: {err}") from err
    extra = [override("ckpt_path", str(path.resolve()))]
    if run_dir is None:
        extra.append(override("hydra.run.dir", str(run_dir_of(path))))
    return [*overrides, *extra]


# -- resuming into the same model ---------------------------------------------------------------
#: hyper-parameters that may change on a resume without changing the weights' layout
_FREE_HPARAMS = ("compile", "channels_last", "optimizer", "scheduler", "backbone.pretrained")


def check_resume_compatible(
    checkpoint: str | Path, cfg: Mapping[str, Any], module: nn.Module | None = None
) -> None:
    """Stop before ``trainer.fit`` when ``checkpoint`` holds another model than ``cfg`` builds.

    The checkpoint's stored run config and ``hyper_parameters`` name its task, backbone and head;
    they are compared with ``cfg``'s. Given the built ``module``, the weights' names and shapes
    are compared too (what ``load_state_dict`` would reject: another ``num_classes``, backbone
    width, ...). The file is memory-mapped, not read (:func:`cvtasks.io.probe_checkpoint`).

    Args:
        checkpoint: the file ``trainer.fit(ckpt_path=...)`` will load.
        cfg: the run's composed config (``task.name``, ``backbone.name``, ``task.head.name``).
        module: the task module about to be trained, if built.

    Raises:
        ConfigError: the checkpoint is corrupt or refused, or holds another model; the message
            names both models, what differs and the fix.
    """
    try:
        state = probe_resumable(checkpoint)
    except ValueError as err:  # CorruptFileError, or refused as unsafe
        raise ConfigError(f"ckpt_path={checkpoint}: {err}") from err
    saved_hparams = _plain(state.get("hyper_parameters"))
    saved = _model_names(_plain(state.get(CONFIG_KEY)), saved_hparams)
    new_hparams = _plain(getattr(module, "hparams", None))
    wanted = _model_names(_config_names(cfg), new_hparams)
    renamed = [k for k in saved if saved[k] and wanted[k] and saved[k] != wanted[k]]
    weights = _weights_mismatch(state.get("state_dict"), module) if module is not None else []
    if not renamed and not weights:
        return
    changes = [f"{k}.name: {saved[k]} -> {wanted[k]}" for k in renamed]
    if module is not None and not renamed:  # the same parts, built otherwise: say how
        changes = _changed(_flatten(saved_hparams), _flatten(new_hparams))[:6] + weights
    keys = ", ".join(c.split(":")[0] for c in changes if " weights " not in c) or "the model"
    differs = "; ".join(changes)
    raise ConfigError(
        f"ckpt_path={checkpoint} cannot resume this run: the checkpoint holds {_describe(saved)}, "
        f"this run builds {_describe(wanted)} ({differs}). Resume with the checkpoint's model "
        f"(drop the overrides that change {keys}), or start a new run without ckpt_path."
    )


def _plain(value: Any) -> dict[str, Any]:
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True)  # type: ignore[return-value]
    return dict(value) if isinstance(value, Mapping) else {}


def _config_names(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a run config that name the model (never resolving the rest: ``paths`` may
    interpolate Hydra's runtime, absent outside a Hydra run)."""
    task = _plain(cfg.get("task"))
    return {"task": task, "backbone": _plain(cfg.get("backbone"))}


def _model_names(config: Mapping[str, Any], hparams: Mapping[str, Any]) -> dict[str, str | None]:
    """``task``, ``backbone`` and ``head`` names from a run config and task hyper-parameters."""
    task = _plain(config.get("task"))
    backbone = _plain(hparams.get("backbone")) or _plain(config.get("backbone"))
    head = _plain(hparams.get("head")) or _plain(task.get("head"))
    names = {"task": task.get("name"), "backbone": backbone.get("name"), "head": head.get("name")}
    return {k: None if v is None else str(v) for k, v in names.items()}


def _describe(names: Mapping[str, str | None]) -> str:
    return " ".join(f"{k}={v}" for k, v in names.items() if v is not None) or "an unnamed model"


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if name in _FREE_HPARAMS:
            continue
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    unset = "(unset)"
    return [
        f"{k}: {old.get(k, unset)} -> {new.get(k, unset)}"
        for k in sorted(old.keys() | new.keys())
        if old.get(k, unset) != new.get(k, unset)
    ]


def _weights_mismatch(saved: Any, module: nn.Module) -> list[str]:
    """What ``module.load_state_dict(saved)`` would reject: missing, unexpected, reshaped."""
    if not isinstance(saved, Mapping):
        return ["the checkpoint has no state_dict"]
    own = module.state_dict()
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    reshaped = [
        f"{k} {tuple(saved[k].shape)} -> {tuple(own[k].shape)}"
        for k in own
        if k in saved and hasattr(saved[k], "shape") and saved[k].shape != own[k].shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("reshaped", reshaped)):
        if items:
            problems.append(f"{len(items)} weights {label}, e.g. {items[0]}")
    return problems
