"""Plugin discovery: installed entry points, module names and local ``.py`` files.

A plugin is a Python module that registers backbones, heads, tasks or datasets when imported.
It is found three ways:

* an installed package declaring an entry point in group ``cvtasks.plugins``
  (``[project.entry-points."cvtasks.plugins"] my_net = "my_pkg"``), loaded the first time any
  registry is read;
* a module name under ``plugins: [...]`` in the config (``my_pkg.models``);
* a path to a ``.py`` file under ``plugins: [...]`` (``plugins: [./my_net.py]``).

A plugin package may ship Hydra configs in a ``conf/`` folder next to its ``__init__.py``
(``conf/backbone/my_net.yaml``); :func:`config_dirs` lists them so that ``backbone=my_net``
works after ``pip install`` with no other step.

A plugin that fails to import is reported by name with its exception; the others still load.

Plugins are imported only on the user's word (the command's ``plugins`` or an installed entry
point), never because a checkpoint names them: :func:`not_loaded` tells which of a checkpoint's
plugins are missing without importing anything.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "cvtasks.plugins"


@dataclass
class PluginReport:
    """What a call to :func:`load` imported and what failed."""

    loaded: list[str] = field(default_factory=list)
    failed: dict[str, BaseException] = field(default_factory=dict)

    def raise_if_failed(self) -> None:
        """Raise one ``ImportError`` naming every plugin that failed, with its exception."""
        if self.failed:
            raise ImportError(_failure_text(self.failed))


_loaded: dict[str, ModuleType] = {}
_entry_point_report: PluginReport | None = None


def _failure_text(failed: dict[str, BaseException]) -> str:
    lines = [f"{len(failed)} cvtasks plugin(s) failed to load:"]
    lines += [f"  {name}: {type(err).__name__}: {err}" for name, err in failed.items()]
    return "\n".join(lines)


def plugin_entry_points() -> list[EntryPoint]:
    """The installed entry points of group ``cvtasks.plugins``, sorted by name."""
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def load_entry_points() -> PluginReport:
    """Import every installed ``cvtasks.plugins`` entry point, once per process."""
    global _entry_point_report
    if _entry_point_report is None:
        _entry_point_report = PluginReport()
        for ep in plugin_entry_points():
            _try(_entry_point_report, f"entry point {ep.name!r} ({ep.value})", ep.load)
        _warn(_entry_point_report)
    return _entry_point_report


def load(specs: list[str] | tuple[str, ...] | None = None) -> PluginReport:
    """Import installed entry-point plugins, then each module name or ``.py`` path in ``specs``.

    Args:
        specs: module names (``"my_pkg.models"``) or file paths (``"nets/my_net.py"``).

    Returns:
        A :class:`PluginReport` over both; each failure is also logged with its exception.
    """
    installed = load_entry_points()
    listed = PluginReport()
    for spec in map(str, specs or ()):
        _try(listed, spec, lambda spec=spec: import_plugin(spec))
    _warn(listed)
    return PluginReport(
        loaded=installed.loaded + listed.loaded, failed={**installed.failed, **listed.failed}
    )


def is_file_spec(spec: str) -> bool:
    """True when a plugin is given as a ``.py`` path rather than a module name."""
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def not_loaded(specs: list[str] | tuple[str, ...]) -> list[str]:
    """Those of ``specs`` that this process has not imported; nothing is imported here.

    A module name counts as loaded when :func:`load` imported it or it is imported already (an
    installed entry point's package, cvtasks' own modules: importing them again runs nothing). A
    ``.py`` path counts when a plugin file at the same resolved path, or with the same file name
    (the user's copy of it), was loaded through :func:`load`.

    Args:
        specs: module names or ``.py`` paths, e.g. the ``plugins`` a checkpoint's config names.

    Returns:
        The specs, as given, that are not loaded.
    """
    load_entry_points()
    files = {Path(key) for key in _loaded if Path(key).is_absolute()}
    missing = []
    for spec in map(str, specs):
        if is_file_spec(spec):
            path = Path(spec).expanduser().resolve()
            loaded = path in files or any(f.name == path.name for f in files)
        else:
            loaded = spec in _loaded or spec in sys.modules
        if not loaded:
            missing.append(spec)
    return missing


def import_plugin(spec: str) -> ModuleType:
    """Import one plugin given as a module name or a ``.py`` path; a second call is a no-op."""
    if is_file_spec(spec):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"plugin file not found: {path} (from plugins: [{spec}])")
        key = str(path)
        if key not in _loaded:
            _loaded[key] = _import_file(path)
        return _loaded[key]
    if spec not in _loaded:
        _loaded[spec] = importlib.import_module(spec)
    return _loaded[spec]


def _import_file(path: Path) -> ModuleType:
    # A stable, unique module name per file lets pickling (DDP spawn) and re-imports find it.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    name = f"cvtasks_plugin_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _try(report: PluginReport, key: str, load_one: Callable[[], object]) -> None:
    try:
        load_one()
    except Exception as err:  # a broken plugin must not stop the others
        report.failed[key] = err
    else:
        report.loaded.append(key)


def _warn(report: PluginReport) -> None:
    if report.failed:
        log.error(_failure_text(report.failed))


def config_dirs() -> list[Path]:
    """Hydra config folders shipped by installed plugins (``<package>/conf``), not importing them.

    Only the top-level package of each entry point is located (``importlib.util.find_spec``), so a
    plugin that is broken on import still cannot break config composition.
    """
    dirs: list[Path] = []
    for ep in plugin_entry_points():
        top = ep.value.split(":")[0].split(".")[0]
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            conf = Path(location) / "conf"
            if conf.is_dir() and conf not in dirs:
                dirs.append(conf)
    return dirs
