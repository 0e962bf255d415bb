"""Loading a checkpoint runs no code it names: plugins, ``_target_`` entries, odd names."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from cvtasks import plugins
from cvtasks.cli.common import CONFIG_KEY, CheckpointError, load_trained, run_command
from cvtasks.registry import BACKBONES, TASKS

#: a module that leaves a marker file when imported, and registers a backbone
MARKED = textwrap.dedent(
    """
    from pathlib import Path
    from cvtasks.backbones.lenet import lenet5
    from cvtasks.registry import BACKBONES

    Path({marker!r}).write_text("imported")
    BACKBONES.register({backbone!r})(lenet5)

    def boom(*args, **kwargs):
        Path({marker!r}).write_text("called")
    """
)


@pytest.fixture
def folder(monkeypatch, tmp_path):
    """A fresh plugin state, the backbone registry restored afterwards, ``tmp_path`` as the
    current folder (importable, as with ``python -m cvtasks``)."""
    monkeypatch.setattr(plugins, "_loaded", {})
    monkeypatch.setattr(plugins, "_entry_point_report", None)
    monkeypatch.setattr(BACKBONES, "_entries", dict(BACKBONES._entries))
    monkeypatch.setattr(BACKBONES, "_origins", dict(BACKBONES._origins))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith(("cvt_", "cvtasks_plugin_model_"))]:
        del sys.modules[name]


def write_marked(path: Path, backbone: str) -> Path:
    """A plugin file that writes ``<path>.ran`` when imported; returns that marker's path."""
    marker = path.with_suffix(".ran")
    path.write_text(MARKED.format(marker=str(marker), backbone=backbone))
    return marker


def save_checkpoint(path: Path, config: dict[str, Any], **hparams: Any) -> Path:
    """A LeNet-5 classification checkpoint in train.py's format, with extra config/hparams."""
    task = TASKS.build("classification", backbone={"name": "lenet5"}, num_classes=3)
    base = {"task": {"name": "classification"}, "data": {"image_size": 32}}
    torch.save(
        {
            "state_dict": task.state_dict(),
            "hyper_parameters": {**dict(task.hparams), **hparams},
            CONFIG_KEY: {**base, **config},
        },
        path,
    )
    return path


def test_checkpoint_plugins_are_not_imported_and_the_error_names_the_override(folder, capsys):
    file_marker = write_marked(folder / "model_helpers.py", "helper_net")
    module_marker = write_marked(folder / "cvt_helper_mod.py", "helper_mod_net")
    ckpt = save_checkpoint(
        folder / "model.ckpt", {"plugins": ["model_helpers.py", "cvt_helper_mod"]}
    )
    with pytest.raises(CheckpointError) as info:
        load_trained(ckpt)
    assert str(info.value) == (
        f"{ckpt} was trained with plugins that are not loaded: model_helpers.py, cvt_helper_mod. "
        "A checkpoint never imports code by itself; if you trust the plugins, load them on "
        "purpose with 'plugins=[model_helpers.py,cvt_helper_mod]' (a module name, or the path "
        "of your copy of the .py file)."
    )
    assert not file_marker.exists() and not module_marker.exists()
    assert "cvt_helper_mod" not in sys.modules and "helper_net" not in BACKBONES.names()

    # the commands: one line and exit 2 without the override, a model with it
    cfg = OmegaConf.create({"ckpt": str(ckpt), "plugins": []})
    with pytest.raises(SystemExit) as exit_info:
        run_command(lambda c: load_trained(c.ckpt), cfg)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {info.value}\n"
    assert not file_marker.exists() and not module_marker.exists()
    cfg.plugins = ["model_helpers.py", "cvt_helper_mod"]
    trained = run_command(lambda c: load_trained(c.ckpt), cfg)
    assert trained.task_name == "classification" and "helper_net" in BACKBONES.names()
    assert file_marker.read_text() == "imported" and module_marker.read_text() == "imported"


def test_one_missing_plugin_file_loaded_from_another_folder(folder):
    (folder / "dl").mkdir()
    marker = write_marked(folder / "dl" / "model_helpers.py", "helper_net")
    ckpt = save_checkpoint(folder / "dl" / "model.ckpt", {"plugins": ["model_helpers.py"]})
    with pytest.raises(CheckpointError, match=r"on purpose with plugins=\[model_helpers\.py\] "):
        load_trained(ckpt)
    assert not marker.exists()
    plugins.load(["dl/model_helpers.py"])  # the user's copy, named on the command line
    assert load_trained(ckpt).task_name == "classification"


def test_a_plugin_installed_as_an_entry_point_counts_as_loaded(folder, monkeypatch):
    marker = write_marked(folder / "cvt_ep_mod.py", "ep_net")
    eps = [EntryPoint(name="ep", value="cvt_ep_mod", group=plugins.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(plugins, "plugin_entry_points", lambda: eps)
    ckpt = save_checkpoint(folder / "model.ckpt", {"plugins": ["cvt_ep_mod"]})
    assert load_trained(ckpt).task_name == "classification"
    assert marker.read_text() == "imported"  # by the entry point, installed on purpose


def batches() -> DataLoader:
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    samples = [{"image": image, "label": torch.tensor(k % 3)} for k, image in enumerate(images)]
    return DataLoader(samples, batch_size=2)


def test_optimizer_target_in_a_checkpoint_is_not_instantiated_by_loading_or_testing(folder):
    marker = write_marked(folder / "cvt_target_mod.py", "target_net")
    optimizer = {"_target_": "cvt_target_mod.boom", "_partial_": True, "lr": 0.1}
    ckpt = save_checkpoint(folder / "model.ckpt", {}, optimizer=optimizer)
    trained = load_trained(ckpt)
    assert trained.task.optimizer_cfg["_target_"] == "cvt_target_mod.boom"  # only stored
    with torch.no_grad():  # predict's path: the network's forward
        assert trained.task(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(trained.task, dataloaders=batches(), verbose=False)  # evaluate's path
    assert "test/acc" in trainer.callback_metrics
    assert not marker.exists() and "cvt_target_mod" not in sys.modules


@pytest.mark.parametrize(
    ("config", "hparams", "error", "match"),
    [
        ({}, {"_target_": "cvt_target_mod.boom"}, CheckpointError, "unexpected keyword.*_target_"),
        (
            {},
            {"backbone": {"name": "lenet5", "_target_": "cvt_target_mod.boom"}},
            CheckpointError,
            "_target_",
        ),
        ({"task": {"name": "cvt_target_mod"}}, {}, KeyError, "Unknown task 'cvt_target_mod'"),
        ({"task": {"name": "cvt_target_mod.boom"}}, {}, KeyError, "Unknown task"),
        ({}, {"backbone": {"name": "cvt_target_mod.boom"}}, KeyError, "Unknown backbone"),
        ({}, {"backbone": {"name": "timm/cvt_target_mod"}}, KeyError, "Unknown timm model"),
        ({}, {"head": {"name": "cvt_target_mod"}}, KeyError, "Unknown head 'cvt_target_mod'"),
    ],
    ids=["hparams", "backbone", "task", "task-dotted", "backbone-dotted", "timm", "head"],
)
def test_names_and_targets_in_a_checkpoint_never_import_anything(
    folder, config, hparams, error, match
):
    marker = write_marked(folder / "cvt_target_mod.py", "target_net")
    ckpt = save_checkpoint(folder / "model.ckpt", config, **hparams)
    with pytest.raises(error, match=match):
        load_trained(ckpt)
    assert not marker.exists() and "cvt_target_mod" not in sys.modules


def test_a_corrupt_checkpoint_is_one_error_line_for_the_commands(folder, capsys):
    ckpt = save_checkpoint(folder / "model.ckpt", {})
    ckpt.write_bytes(ckpt.read_bytes()[:2000])  # a download cut short
    cfg = OmegaConf.create({"ckpt": str(ckpt), "plugins": []})
    with pytest.raises(SystemExit) as info:
        run_command(lambda c: load_trained(c.ckpt), cfg)
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        f"error: corrupt file {ckpt} (2,000 bytes): the zip archive is cut short or damaged (no "
        "readable directory: File is not a zip file); expected a PyTorch checkpoint (zip archive) "
        "written by torch.save. Copy or download it again, or use another checkpoint.\n"
    )


def test_a_timm_weights_file_named_in_a_checkpoint_is_not_read(tiny_checkpoint, tmp_path):
    path = tiny_checkpoint("classification")
    checkpoint = torch.load(path, weights_only=True)
    named = tmp_path / "elsewhere.pth"  # timm would open it (and fail: it does not exist)
    checkpoint["hyper_parameters"]["backbone"]["checkpoint_path"] = str(named)
    torch.save(checkpoint, path)
    model = load_trained(path)
    assert model.task.hparams["backbone"]["name"] == "timm/resnet10t"
    assert not named.exists()
