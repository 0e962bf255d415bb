"""``python -m cvtasks list backbones|necks|heads|tasks|datasets|plugins [PATTERN] [plugins=…]``.

``plugins=[./my_net.py]`` loads plugins first, as ``train.py`` does, so their names are listed
(each registered backbone is also a ``backbone=<name>`` choice of ``train.py``).

Every line is a registered name and the first line of its docstring (backbones also show
parameters, GFLOPs, input size and stages; plugins their module). reStructuredText markup of the
docstrings (````x````, ``:class:`X```) is shown as plain text.
"""

from __future__ import annotations

import inspect
import re

from cvtasks import plugins
from cvtasks.cli.summary import HEADER, backbone_info
from cvtasks.generated_configs import plugin_specs
from cvtasks.registry import REGISTRIES

#: ``:role:`text``` (Sphinx cross-references) and ````literal````, shown as their text.
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def describe(obj: object) -> str:
    """The first line of an object's docstring as plain text (empty when it has none)."""
    doc = inspect.getdoc(obj) or ""
    first = doc.splitlines()[0] if doc else ""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", first))


def _aligned(pairs: list[tuple[str, str]]) -> list[str]:
    """``left  description`` lines with the descriptions in one column."""
    width = max((len(left) for left, _ in pairs), default=0)
    return [f"{left:{width}s}  {text}".rstrip() for left, text in pairs]


def plugin_lines() -> list[str]:
    """One line per installed entry point (name, module, module docstring), then failures."""
    report = plugins.load_entry_points()
    pairs = []
    for ep in plugins.plugin_entry_points():
        failed = any(ep.value in key for key in report.failed)
        pairs.append((f"{ep.name:24s} {ep.value}", "" if failed else describe(ep.load())))
    lines = _aligned(pairs)
    lines += [f"{name:24s} FAILED: {err}" for name, err in report.failed.items()]
    return lines or ["(no installed plugins)"]


def list_lines(kind: str, pattern: str | None = None) -> list[str]:
    """One line per registered name of ``kind`` (``backbones``, …, or ``plugins``).

    Raises:
        KeyError: ``kind`` is not a registry; the message lists the kinds.
    """
    if kind == "plugins":
        return plugin_lines()
    if kind not in REGISTRIES:
        raise KeyError(f"nothing to list as {kind!r}; choose one of {[*REGISTRIES, 'plugins']}")
    registry = REGISTRIES[kind]
    if kind == "backbones":
        pairs = [(HEADER, "description")]
        pairs += [
            (backbone_info(name).line(), describe(registry.get(name)))
            for name in registry.names(pattern)
        ]
        lines = _aligned(pairs)
        lines.append(f"{'timm/<model_name>':20s} any timm model, e.g. timm/resnet18")
        return lines
    return [f"{name:24s} {describe(registry.get(name))}" for name in registry.names(pattern)]


def list_command(args: list[str]) -> list[str]:
    """The lines of ``list KIND [PATTERN] [plugins=[...]]``, after loading those plugins.

    Raises:
        KeyError: no kind, or one that is not a registry (the message lists the kinds).
        ValueError: a ``plugins=`` value that is not a list of plugins.
    """
    listed = [a for a in args if not a.lstrip("+").startswith("plugins=")]
    plugins.load(plugin_specs(args))
    if not listed:
        raise KeyError(f"nothing to list; choose one of {[*REGISTRIES, 'plugins']}")
    return list_lines(listed[0], listed[1] if len(listed) > 1 else None)
