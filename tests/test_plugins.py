"""Plugin discovery: entry points, module names, .py files, broken plugins, plugin configs."""

from __future__ import annotations

import logging
import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

from cvtasks import plugins
from cvtasks.registry import BACKBONES

PLUGIN_SOURCE = textwrap.dedent(
    """
    from torch import nn
    from cvtasks.registry import BACKBONES

    @BACKBONES.register("{name}")
    def build(**kw):
        return nn.Identity()
    """
)


@pytest.fixture
def fresh_plugins(monkeypatch, tmp_path):
    """Isolate the plugin state and the backbone registry from other tests."""
    monkeypatch.setattr(plugins, "_loaded", {})
    monkeypatch.setattr(plugins, "_entry_point_report", None)
    monkeypatch.setattr(BACKBONES, "_entries", dict(BACKBONES._entries))
    monkeypatch.setattr(BACKBONES, "_origins", dict(BACKBONES._origins))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith(("cvt_plug_", "cvtasks_plugin_"))]:
        del sys.modules[name]


def write_module(folder, module: str, backbone: str) -> None:
    (folder / f"{module}.py").write_text(PLUGIN_SOURCE.format(name=backbone))


def test_py_file_plugin_registers_once(fresh_plugins):
    path = fresh_plugins / "my_net.py"
    path.write_text(PLUGIN_SOURCE.format(name="file_net"))
    report = plugins.load([str(path)])
    assert str(path) in report.loaded and not report.failed
    assert "file_net" in BACKBONES.names()
    plugins.load([str(path)])  # a second load neither re-imports nor trips duplicate checks


def test_module_name_plugin(fresh_plugins):
    write_module(fresh_plugins, "cvt_plug_a", "module_net")
    report = plugins.load(["cvt_plug_a"])
    assert report.loaded[-1] == "cvt_plug_a"
    assert BACKBONES.origin("module_net") == "cvt_plug_a"


def test_broken_plugin_is_named_and_the_others_still_load(fresh_plugins, caplog):
    (fresh_plugins / "cvt_plug_broken.py").write_text("raise RuntimeError('boom at import')\n")
    write_module(fresh_plugins, "cvt_plug_ok", "ok_net")
    with caplog.at_level(logging.ERROR, logger="cvtasks.plugins"):
        report = plugins.load(["cvt_plug_broken", "cvt_plug_ok", "no_such_module_xyz"])
    assert "cvt_plug_ok" in report.loaded and "ok_net" in BACKBONES.names()
    assert set(report.failed) == {"cvt_plug_broken", "no_such_module_xyz"}
    assert "cvt_plug_broken: RuntimeError: boom at import" in caplog.text
    assert "no_such_module_xyz: ModuleNotFoundError" in caplog.text
    with pytest.raises(ImportError, match="cvt_plug_broken"):
        report.raise_if_failed()


def test_missing_plugin_file_is_named(fresh_plugins):
    report = plugins.load([str(fresh_plugins / "absent.py")])
    assert "absent.py" in str(next(iter(report.failed.values())))


def test_entry_points_load_once_and_broken_ones_are_reported(fresh_plugins, monkeypatch):
    write_module(fresh_plugins, "cvt_plug_ep", "ep_net")
    (fresh_plugins / "cvt_plug_ep_bad.py").write_text("import not_a_real_dependency_123\n")
    eps = [
        EntryPoint(name="good", value="cvt_plug_ep", group=plugins.ENTRY_POINT_GROUP),
        EntryPoint(name="bad", value="cvt_plug_ep_bad", group=plugins.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(plugins, "plugin_entry_points", lambda: eps)
    report = plugins.load_entry_points()
    assert "ep_net" in BACKBONES.names()
    assert report.loaded == ["entry point 'good' (cvt_plug_ep)"]
    assert "not_a_real_dependency_123" in str(report.failed["entry point 'bad' (cvt_plug_ep_bad)"])
    assert plugins.load_entry_points() is report  # once per process


def test_config_dirs_found_without_importing(fresh_plugins, monkeypatch):
    pkg = fresh_plugins / "cvt_plug_pkg"
    (pkg / "conf" / "backbone").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "conf" / "backbone" / "pkg_net.yaml").write_text("name: pkg_net\n")
    eps = [
        EntryPoint(name="pkg", value="cvt_plug_pkg.models:thing", group=plugins.ENTRY_POINT_GROUP)
    ]
    monkeypatch.setattr(plugins, "plugin_entry_points", lambda: eps)
    assert plugins.config_dirs() == [pkg / "conf"]
    assert "cvt_plug_pkg" not in sys.modules


def test_not_loaded_imports_nothing_and_names_what_is_missing(fresh_plugins, monkeypatch):
    (fresh_plugins / "cvt_plug_marker.py").write_text(
        "raise RuntimeError('must not be imported')\n"
    )
    helper = fresh_plugins / "helpers.py"
    helper.write_text(PLUGIN_SOURCE.format(name="helper_net"))
    monkeypatch.chdir(fresh_plugins)
    specs = ["cvt_plug_marker", "helpers.py", "json", "cvtasks.backbones"]
    assert plugins.not_loaded(specs) == ["cvt_plug_marker", "helpers.py"]
    assert "cvt_plug_marker" not in sys.modules and "helper_net" not in BACKBONES.names()
    plugins.load([str(helper)])
    assert plugins.not_loaded(specs) == ["cvt_plug_marker"]
    assert plugins.not_loaded(["elsewhere/helpers.py"]) == []  # the user's copy, by file name
    assert plugins.not_loaded(["elsewhere/other.py"]) == ["elsewhere/other.py"]
