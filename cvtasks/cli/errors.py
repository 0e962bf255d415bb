"""How a command ends on an error it expected: one line on stderr, the traceback in the log file.

A wrong config value, a missing dataset folder or a corrupt image is the user's to fix, and the
message says how; a stack trace on the terminal only hides that line. The trace still matters to
whoever debugs the toolkit, so it goes to the run's log file (Hydra's ``<job>.log``), where there
is one.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf

from cvtasks.config import ConfigError
from cvtasks.registry import BACKBONES, DATASETS, HEADS, TASKS

log = logging.getLogger(__name__)


class SetupError(ValueError):
    """The data or a file the run was pointed at cannot be used; the message says which and why."""


#: config nodes built by a registered factory, and the registry of each node's ``name``
GROUPS = ("data", "backbone", "task")
REGISTRY_OF = {"data": DATASETS, "backbone": BACKBONES, "task": TASKS, "head": HEADS}

_UNEXPECTED = re.compile(r"got an unexpected keyword argument '(\w+)'")


def one_line(err: BaseException) -> str:
    """The message of ``err`` without a DataLoader worker's traceback.

    An error raised in a DataLoader worker comes back as ``Caught X in DataLoader worker process
    N. Original Traceback (most recent call last): ...``; its own message is the last line.
    """
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    text = text.strip() or type(err).__name__
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text


def log_trace_to_files(err: BaseException) -> list[str]:
    """Write ``err``'s traceback to every file handler of the root logger; return their paths."""
    record = logging.LogRecord(
        log.name,
        logging.ERROR,
        __file__,
        0,
        "%s",
        (one_line(err),),
        (type(err), err, err.__traceback__),
    )
    paths = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename != os.devnull:
            handler.handle(record)
            paths.append(handler.baseFilename)
    return paths


def exit_with(err: BaseException, code: int) -> NoReturn:
    """Print ``error: <message>`` (and where the traceback went) and exit with ``code``."""
    paths = log_trace_to_files(err)
    # a config error's trace shows only where it was found; any other's may show a bug
    where = f" (traceback in {paths[0]})" if paths and not isinstance(err, ConfigError) else ""
    print(f"error: {one_line(err)}{where}", file=sys.stderr)
    raise SystemExit(code) from None


def accepted_keywords(factory: Callable[..., Any]) -> list[str] | None:
    """The keyword arguments ``factory`` takes, following ``**kwargs`` up a class's bases.

    Returns ``None`` when a ``**kwargs`` leads somewhere that cannot be read (a plain function
    passing them on), so the caller lists no alternatives rather than wrong ones.
    """
    targets: Iterable[Any] = (
        [c.__init__ for c in inspect.getmro(factory) if "__init__" in vars(c)]
        if inspect.isclass(factory)
        else [factory]
    )
    names: list[str] = []
    for target in targets:
        try:
            params = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):
            return None
        names += [
            p.name
            for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return sorted(set(names))
    return None


def unknown_key_error(err: TypeError, cfg: DictConfig) -> ConfigError | None:
    """A :class:`ConfigError` for ``TypeError: ... unexpected keyword argument 'x'``, else ``None``.

    The key is looked up under ``data``, ``backbone`` and ``task`` (and their sub-nodes, so
    ``task.head.foo`` is named as such); the keys the node's registered factory takes are listed,
    or, for a node without one, the keys the config gives it.

    Args:
        err: the error a factory raised while the run was being built.
        cfg: the composed config.
    """
    match = _UNEXPECTED.search(str(err))
    if match is None:
        return None
    key = match.group(1)
    paths = [p for group in GROUPS for p in _paths_of(cfg.get(group), key, f"{group}.")]
    if not paths:
        return None
    parent_path = paths[0].rpartition(".")[0]
    parent = OmegaConf.select(cfg, parent_path)
    registry = REGISTRY_OF.get(parent_path.rpartition(".")[2])
    allowed = None
    if registry is not None and parent.get("name"):
        allowed = accepted_keywords(registry.get(str(parent.name)))
    if allowed is None:
        allowed = sorted(str(k) for k in parent if k not in (key, "name"))
    close = difflib.get_close_matches(key, allowed, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    what = f"{parent_path} {parent.get('name')!r}" if parent.get("name") else parent_path
    return ConfigError(
        f"{' or '.join(paths)}: unknown key {key!r} ({what} takes no such argument).{hint} "
        f"Allowed keys: {', '.join(allowed) or 'none'}"
    )


def _paths_of(node: Any, key: str, prefix: str = "") -> list[str]:
    """Dotted paths below ``node`` whose last part is ``key``."""
    if not isinstance(node, DictConfig):
        return []
    found = []
    for name in node:
        path = f"{prefix}{name}"
        if name == key:
            found.append(path)
        found += _paths_of(node.get(name), key, f"{path}.")
    return found
