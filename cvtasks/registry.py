"""Name → factory registries for backbones, necks, heads, tasks and datasets.

A registry maps a name (``"lenet5"``) to a function or class that builds the thing. Entries come
from cvtasks' own modules (imported lazily the first time a registry is read) and from plugins
(entry points of group ``cvtasks.plugins``, loaded at the same moment), so that "not registered"
never depends on import order.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

PLUGIN_HINT = (
    "Plugins add names: install a package with a 'cvtasks.plugins' entry point, or list a module "
    "or a .py file under 'plugins: [...]' in the config."
)


class Registry:
    """A flat mapping of names to factories.

    Args:
        kind: what the entries are, in the singular ("backbone"); used in messages.
        builtin_module: module imported on first read that registers cvtasks' own entries.
    """

    def __init__(self, kind: str, builtin_module: str | None = None) -> None:
        self.kind = kind
        self._builtin_module = builtin_module
        self._entries: dict[str, Callable[..., Any]] = {}
        self._origins: dict[str, str] = {}
        self._prefixes: dict[str, Callable[..., Any]] = {}
        self._ready = False

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str | None = None, *, override: bool = False) -> Callable[[F], F]:
        """Decorator registering a function or class under ``name`` (default: its ``__name__``).

        Registering a name twice raises ``KeyError`` naming the module that holds it, unless
        ``override=True``.
        """

        def decorator(obj: F) -> F:
            self.add(name or obj.__name__, obj, override=override)
            return obj

        return decorator

    def add(self, name: str, obj: Callable[..., Any], *, override: bool = False) -> None:
        """Register ``obj`` under ``name`` (the non-decorator form of :meth:`register`)."""
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")
        origin = getattr(obj, "__module__", "?")
        if name in self._entries and not override:
            raise KeyError(
                f"{self.kind} {name!r} is already registered by module {self._origins[name]!r}; "
                f"pass override=True to replace it (attempted from {origin!r})."
            )
        self._entries[name] = obj
        self._origins[name] = origin

    def register_prefix(self, prefix: str, factory: Callable[..., Any]) -> None:
        """Resolve every name starting with ``prefix`` through ``factory(rest_of_name, **kw)``.

        Used for open-ended families such as ``timm/<model_name>``, which are never enumerated.
        """
        self._prefixes[prefix] = factory

    # -- look-up ------------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._ready:
            return
        self._ready = True  # set first: the imports below register into this registry
        try:
            if self._builtin_module:
                importlib.import_module(self._builtin_module)
            from cvtasks import plugins  # plugins import the registries, so import late

            plugins.load_entry_points()
        except BaseException:
            self._ready = False
            raise

    def get(self, name: str) -> Callable[..., Any]:
        """Return the factory registered as ``name``; unknown names raise a helpful ``KeyError``."""
        self._ensure_loaded()
        if name in self._entries:
            return self._entries[name]
        for prefix, factory in self._prefixes.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                rest = name[len(prefix) :]
                return lambda **kw: factory(rest, **kw)
        raise KeyError(self._unknown_message(name))

    def build(self, name: str, **kwargs: Any) -> Any:
        """Build the entry ``name`` with ``kwargs``; keys whose value is ``None`` are dropped."""
        factory = self.get(name)
        return factory(**{k: v for k, v in kwargs.items() if v is not None})

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted registered names, optionally filtered by a shell-style ``pattern``."""
        self._ensure_loaded()
        names = sorted(self._entries)
        if pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return names

    def origin(self, name: str) -> str:
        """The module that registered ``name``."""
        self.get(name)
        return self._origins.get(name, "?")

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"

    def _unknown_message(self, name: str) -> str:
        known = sorted(self._entries)
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        parts = [f"Unknown {self.kind} {name!r} in the {self.kind} registry."]
        if close:
            parts.append(f"Did you mean: {', '.join(close)}?")
        shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        parts.append(f"Registered {self.kind}s: {shown or '(none)'}.")
        if self._prefixes:
            parts.append(
                "Also accepted: " + ", ".join(f"'{p}<name>'" for p in sorted(self._prefixes)) + "."
            )
        parts.append(f"List them with: python -m cvtasks list {self.kind}s.")
        parts.append(PLUGIN_HINT)
        return " ".join(parts)


BACKBONES = Registry("backbone", "cvtasks.backbones")
NECKS = Registry("neck", "cvtasks.necks")
HEADS = Registry("head", "cvtasks.heads")
TASKS = Registry("task", "cvtasks.tasks")
DATASETS = Registry("dataset", "cvtasks.data")

REGISTRIES: dict[str, Registry] = {
    "backbones": BACKBONES,
    "necks": NECKS,
    "heads": HEADS,
    "tasks": TASKS,
    "datasets": DATASETS,
}
