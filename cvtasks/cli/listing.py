"""``python -m cvtasks list backbones|heads|tasks|datasets|plugins [PATTERN]``."""

from __future__ import annotations

import inspect

from cvtasks import plugins
from cvtasks.cli.summary import HEADER, backbone_info
from cvtasks.registry import REGISTRIES


def describe(obj: object) -> str:
    """The first line of an object's docstring (empty when it has none)."""
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""


def list_lines(kind: str, pattern: str | None = None) -> list[str]:
    """One line per registered name of ``kind`` (``backbones``, …, or ``plugins``).

    Raises:
        KeyError: ``kind`` is not a registry; the message lists the kinds.
    """
    if kind == "plugins":
        report = plugins.load_entry_points()
        lines = [f"{ep.name:24s} {ep.value}" for ep in plugins.plugin_entry_points()]
        lines += [f"{name:24s} FAILED: {err}" for name, err in report.failed.items()]
        return lines or ["(no installed plugins)"]
    if kind not in REGISTRIES:
        raise KeyError(f"nothing to list as {kind!r}; choose one of {[*REGISTRIES, 'plugins']}")
    registry = REGISTRIES[kind]
    if kind == "backbones":
        lines = [HEADER, *(backbone_info(name).line() for name in registry.names(pattern))]
        lines.append(f"{'timm/<model_name>':20s} any timm model, e.g. timm/resnet18")
        return lines
    return [f"{name:24s} {describe(registry.get(name))}" for name in registry.names(pattern)]
