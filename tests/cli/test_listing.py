from importlib.metadata import EntryPoint

import pytest

from cvtasks import plugins
from cvtasks.cli.listing import describe, list_lines


def test_backbone_lines_carry_params_flops_and_stages():
    lines = list_lines("backbones")
    assert lines[0].split()[:4] == ["name", "params", "GFLOPs", "input"]
    lenet = next(line for line in lines if line.startswith("lenet5"))
    assert "146,156" in lenet and "120@4" in lenet
    assert any(line.startswith("timm/<model_name>") for line in lines)


def test_heads_lines_carry_the_docstring_summary():
    linear = next(line for line in list_lines("heads") if line.startswith("linear"))
    assert "one linear layer" in linear


def test_pattern_filters():
    assert [line.split()[0] for line in list_lines("heads", "ml*")] == ["mlp"]


def test_plugins_listing_shows_installed_and_failed(monkeypatch, tmp_path):
    (tmp_path / "cvt_list_bad.py").write_text("raise ImportError('missing dependency')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [EntryPoint(name="bad", value="cvt_list_bad", group=plugins.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(plugins, "plugin_entry_points", lambda: eps)
    monkeypatch.setattr(plugins, "_entry_point_report", None)
    lines = list_lines("plugins")
    assert lines[0].startswith("bad") and "cvt_list_bad" in lines[0]
    assert "FAILED: missing dependency" in lines[1]


def test_unknown_kind():
    with pytest.raises(KeyError, match="plugins"):
        list_lines("bakbones")


def test_describe_without_docstring():
    assert describe(lambda: None) == ""
