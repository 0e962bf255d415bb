from importlib.metadata import EntryPoint

import pytest

from cvtasks import plugins
from cvtasks.cli.listing import describe, list_command, list_lines
from cvtasks.registry import BACKBONES


def test_backbone_lines_carry_params_flops_and_stages():
    lines = list_lines("backbones")
    assert lines[0].split()[:4] == ["name", "params", "GFLOPs", "input"]
    lenet = next(line for line in lines if line.startswith("lenet5"))
    assert "146,156" in lenet and "120@4" in lenet
    assert any(line.startswith("timm/<model_name>") for line in lines)


def test_heads_lines_carry_the_docstring_summary():
    linear = next(line for line in list_lines("heads") if line.startswith("linear"))
    assert "one linear layer" in linear


def test_necks_are_listed_with_their_docstring_summary():
    fpn = next(line for line in list_lines("necks") if line.startswith("fpn"))
    assert fpn == f"{'fpn':24s} Feature Pyramid Network: 1x1 laterals, nearest top-down " + (
        "upsampling + add, 3x3 smoothing."
    )


def test_pattern_filters():
    assert [line.split()[0] for line in list_lines("heads", "ml*")] == ["mlp"]


def fake_entry_point(monkeypatch, folder, name: str, module: str, source: str) -> None:
    """Make ``module`` (written from ``source``) the one installed entry point, as ``name``."""
    (folder / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    eps = [EntryPoint(name=name, value=module, group=plugins.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(plugins, "plugin_entry_points", lambda: eps)
    monkeypatch.setattr(plugins, "_entry_point_report", None)


def test_plugins_listing_shows_installed_and_failed(monkeypatch, tmp_path):
    source = "raise ImportError('missing dependency')\n"
    fake_entry_point(monkeypatch, tmp_path, "bad", "cvt_list_bad", source)
    lines = list_lines("plugins")
    assert lines[0].startswith("bad") and "cvt_list_bad" in lines[0]
    assert "FAILED: missing dependency" in lines[1]


def test_unknown_kind():
    with pytest.raises(KeyError, match="plugins"):
        list_lines("bakbones")


def test_describe_without_docstring():
    assert describe(lambda: None) == ""


def test_backbone_lines_end_with_the_docstring_summary():
    lines = list_lines("backbones", "resnet1*")
    assert lines[0].rstrip().endswith("description")
    resnet18 = next(line for line in lines if line.startswith("resnet18"))
    assert resnet18.endswith(
        "ResNet-18: BasicBlock x (2, 2, 2, 2), 11.7M parameters with 1000 classes."
    )
    starts = {line.index("ResNet-1") for line in lines if line.startswith("resnet1")}
    assert len(starts) == 1  # one description column


def test_describe_shows_rst_markup_as_text():
    def documented():
        """``K`` points from :class:`AttentionBoxHead` and :func:`~cvtasks.ops.pool`."""

    assert describe(documented) == "K points from AttentionBoxHead and cvtasks.ops.pool."


def test_plugins_listing_shows_the_module_summary(monkeypatch, tmp_path):
    source = '"""Adds the good_net backbone."""\n'
    fake_entry_point(monkeypatch, tmp_path, "good", "cvt_list_good", source)
    assert list_lines("plugins") == [f"{'good':24s} cvt_list_good  Adds the good_net backbone."]


def test_list_loads_the_plugins_named_on_its_command_line(monkeypatch, tmp_path):
    monkeypatch.setattr(BACKBONES, "_entries", dict(BACKBONES._entries))
    plugin = tmp_path / "listed_net.py"
    plugin.write_text(
        "from cvtasks.backbones.lenet import LeNet5\n"
        "from cvtasks.registry import BACKBONES\n\n\n"
        "@BACKBONES.register('listed_net', override=True)\n"
        "def listed_net(**kwargs):\n"
        '    """LeNet-5 under another name."""\n'
        "    return LeNet5(**kwargs)\n"
    )
    lines = list_command(["backbones", "listed_*", f"plugins=[{plugin}]"])
    assert len(lines) == 3  # header, the plugin's backbone, the timm line
    assert lines[1].startswith("listed_net") and "LeNet-5 under another name" in lines[1]
    with pytest.raises(KeyError, match="nothing to list"):
        list_command([f"plugins=[{plugin}]"])
    with pytest.raises(ValueError, match="not a plugin list"):
        list_command(["backbones", "plugins=[x.py"])
