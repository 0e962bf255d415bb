"""ckpt_path=last / PATH resolve to a checkpoint file and the run folder it belongs to."""

import logging
import os
import time

import pytest
import torch

from cvtasks.config import ConfigError
from cvtasks.training.resume import resolve_overrides, resumable_in, run_dir_of


def write_checkpoint(path, mtime=None, epoch=1, step=10):
    """A small checkpoint written by torch.save, with the given modification time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.ones(4)}, "epoch": epoch, "global_step": step}, path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def make_run(root, name, mtime, file="last.ckpt"):
    return write_checkpoint(root / "classification" / "runs" / name / "checkpoints" / file, mtime)


def cut_short(path):
    """What a full disk or a killed copy leaves: the first half of the file."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def test_last_is_the_newest_run_and_resumes_into_its_folder(tmp_path):
    now = time.time()
    make_run(tmp_path, "old", now - 100)
    new = make_run(tmp_path, "new", now)
    out = resolve_overrides(["ckpt_path=last", "seed=1"], tmp_path, "classification")
    assert out[-2:] == [f"ckpt_path={new.resolve()}", f"hydra.run.dir={new.parent.parent}"]


def test_a_path_resumes_into_its_run_folder(tmp_path):
    ckpt = make_run(tmp_path, "r1", time.time())
    out = resolve_overrides([f"ckpt_path={ckpt}"], tmp_path, "classification")
    assert f"hydra.run.dir={ckpt.parent.parent.resolve()}" in out
    assert run_dir_of(ckpt) == ckpt.parent.parent.resolve()


def test_last_in_a_stable_folder_is_resolved_by_the_run_in_that_folder(tmp_path):
    stable = tmp_path / "slurm" / "123"
    args = ["ckpt_path=last", f"hydra.run.dir={stable}"]
    assert resolve_overrides(args, tmp_path, "x") == args  # the run holds the folder first
    assert resumable_in(stable) is None  # a first start
    write_checkpoint(stable / "checkpoints" / "last.ckpt")
    assert resumable_in(stable) == stable / "checkpoints" / "last.ckpt"


def test_nothing_to_resume_names_the_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"ckpt_path=last: no checkpoints/last.ckpt under .*runs"):
        resolve_overrides(["ckpt_path=last"], tmp_path, "classification")
    with pytest.raises(ConfigError, match=r"ckpt_path=nope.ckpt: no such checkpoint file"):
        resolve_overrides(["ckpt_path=nope.ckpt"], tmp_path, "classification")


def test_last_skips_a_corrupt_newest_checkpoint_and_says_which_it_uses(tmp_path, caplog):
    now = time.time()
    good = make_run(tmp_path, "old", now - 100)
    bad = cut_short(make_run(tmp_path, "new", now))
    with caplog.at_level(logging.WARNING, logger="cvtasks.training.resume"):
        out = resolve_overrides(["ckpt_path=last"], tmp_path, "classification")
    assert out[-2:] == [f"ckpt_path={good.resolve()}", f"hydra.run.dir={good.parent.parent}"]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"ckpt_path=last: skipped {bad} (corrupt, ")
    assert "the zip archive is cut short" in warning
    assert warning.endswith(f"resuming from {good}")


def test_a_stable_folder_falls_back_to_a_slurm_checkpoint_then_to_best(tmp_path, caplog):
    stable = tmp_path / "slurm" / "7"
    now = time.time()
    last = cut_short(write_checkpoint(stable / "checkpoints" / "last.ckpt", now))
    hpc = write_checkpoint(stable / "hpc_ckpt_3.ckpt", now - 50)
    best = write_checkpoint(stable / "checkpoints" / "epoch=2-step=30.ckpt", now - 100, 2, 30)
    with caplog.at_level(logging.WARNING, logger="cvtasks.training.resume"):
        assert resumable_in(stable) == hpc
        hpc.write_bytes(b"")
        os.utime(hpc, (now - 50, now - 50))
        assert resumable_in(stable) == best
    assert [r.getMessage() for r in caplog.records][-1] == (
        f"ckpt_path=last: skipped {last} (corrupt, {last.stat().st_size:,} bytes: the zip archive "
        "is cut short or damaged (no readable directory: File is not a zip file)); "
        f"{hpc} (corrupt, 0 bytes: the file is empty); resuming from {best} (not a last/hpc "
        "checkpoint: training rewinds to epoch 2, step 30)"
    )


def test_quoted_fallback_path_composes_back_to_the_file(tmp_path, compose_train):
    best = write_checkpoint(tmp_path / "a,b" / "checkpoints" / "epoch=2-step=30.ckpt")
    out = resolve_overrides([f"ckpt_path='{best}'"], tmp_path, "classification")
    cfg = compose_train(*[a for a in out if not a.startswith("hydra.")], return_hydra_config=True)
    assert cfg.ckpt_path == str(best.resolve())
    hydra_dir = next(a for a in out if a.startswith("hydra.run.dir="))
    cfg = compose_train(hydra_dir, return_hydra_config=True)
    assert cfg.hydra.run.dir == str(best.parent.parent.resolve())


def test_no_loadable_checkpoint_lists_what_was_tried(tmp_path):
    stable = tmp_path / "run"
    last = cut_short(write_checkpoint(stable / "checkpoints" / "last.ckpt"))
    best = write_checkpoint(stable / "checkpoints" / "best.ckpt")
    best.write_bytes(b"")
    with pytest.raises(ConfigError) as info:
        resumable_in(stable)
    message = str(info.value)
    assert message.startswith("ckpt_path=last: no checkpoint loads: ")
    assert (
        f"{last} (corrupt, " in message
        and f"{best} (corrupt, 0 bytes: the file is empty)" in message
    )
    assert message.endswith("or start a new run without ckpt_path.") and "\n" not in message


def test_a_corrupt_or_unsafe_ckpt_path_is_one_config_error(tmp_path):
    path = cut_short(make_run(tmp_path, "r1", time.time()))
    with pytest.raises(ConfigError) as info:
        resolve_overrides([f"ckpt_path={path}"], tmp_path, "classification")
    assert str(info.value).startswith(f"ckpt_path={path}: corrupt file {path} (")
    assert "expected a PyTorch checkpoint (zip archive) written by torch.save" in str(info.value)
    torch.save({"state_dict": {}, "x": RunsCode()}, path)
    with pytest.raises(ConfigError, match=r"ckpt_path=.*: refusing to load .*can run code"):
        resolve_overrides([f"ckpt_path={path}"], tmp_path, "classification")


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo ran > /dev/null",))


# -- resuming into another model -----------------------------------------------------------------
def run_config(backbone="lenet5", head="linear"):
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {
            "task": {"name": "classification", "head": {"name": head}},
            "backbone": {"name": backbone},
            "paths": {"output_dir": "${hydra:runtime.output_dir}"},  # unresolvable here
        }
    )


def classifier(backbone="lenet5", num_classes=10, **backbone_kwargs):
    from cvtasks.registry import TASKS

    return TASKS.build(
        "classification",
        backbone={"name": backbone, **backbone_kwargs},
        num_classes=num_classes,
        head={"name": "linear"},
    )


@pytest.fixture(scope="module")
def lenet_checkpoint(tmp_path_factory):
    """A classification checkpoint of LeNet-5 on 10 classes, as train.py writes it."""
    from cvtasks.training.checkpoint_io import CONFIG_KEY

    task = classifier()
    path = tmp_path_factory.mktemp("run") / "last.ckpt"
    config = {"task": {"name": "classification", "head": {"name": "linear"}}}
    torch.save(
        {
            "state_dict": task.state_dict(),
            "hyper_parameters": dict(task.hparams),
            CONFIG_KEY: {**config, "backbone": {"name": "lenet5"}},
        },
        path,
    )
    return path


def test_resuming_with_another_backbone_names_both_models_and_the_fix(lenet_checkpoint):
    from cvtasks.training.resume import check_resume_compatible

    with pytest.raises(ConfigError) as info:
        check_resume_compatible(lenet_checkpoint, run_config(backbone="resnet18"))
    assert str(info.value) == (
        f"ckpt_path={lenet_checkpoint} cannot resume this run: the checkpoint holds "
        "task=classification backbone=lenet5 head=linear, this run builds task=classification "
        "backbone=resnet18 head=linear (backbone.name: lenet5 -> resnet18). Resume with the "
        "checkpoint's model (drop the overrides that change backbone.name), or start a new run "
        "without ckpt_path."
    )


def test_with_the_built_module_weight_shapes_are_compared(lenet_checkpoint):
    from cvtasks.training.resume import check_resume_compatible

    with pytest.raises(ConfigError) as info:  # same names, another number of classes
        check_resume_compatible(lenet_checkpoint, run_config(), classifier(num_classes=5))
    message = str(info.value)
    assert "holds task=classification backbone=lenet5 head=linear" in message
    assert "(num_classes: 10 -> 5; 2 weights reshaped, e.g. net.head." in message
    assert "drop the overrides that change num_classes" in message
    with pytest.raises(ConfigError) as info:  # same names, another input: the first conv differs
        check_resume_compatible(lenet_checkpoint, run_config(), classifier(in_chans=1))
    assert "(backbone.in_chans: (unset) -> 1; 1 weights reshaped, e.g. net.backbone." in str(
        info.value
    )
    with pytest.raises(ConfigError) as info:  # another backbone: its name says it all
        check_resume_compatible(lenet_checkpoint, run_config("resnet18"), classifier("resnet18"))
    assert "backbone=resnet18 head=linear (backbone.name: lenet5 -> resnet18). " in str(info.value)


def test_the_same_model_resumes(lenet_checkpoint):
    from cvtasks.training.resume import check_resume_compatible

    check_resume_compatible(lenet_checkpoint, run_config(), classifier())
    check_resume_compatible(lenet_checkpoint, run_config())
    # another activation changes no weight: resuming with it is the user's choice
    check_resume_compatible(lenet_checkpoint, run_config(), classifier(act_layer="tanh"))


def test_compatibility_check_of_a_corrupt_file_is_one_config_error(tmp_path):
    from cvtasks.training.resume import check_resume_compatible

    path = cut_short(write_checkpoint(tmp_path / "last.ckpt"))
    with pytest.raises(ConfigError, match=rf"^ckpt_path={path}: corrupt file {path} \("):
        check_resume_compatible(path, run_config())


def test_a_checkpoint_naming_files_outside_its_folder_is_not_resumed(tmp_path):
    path = make_run(tmp_path, "r1", time.time())
    folder = str(path.parent)
    state = {"dirpath": folder, "best_model_path": f"{folder}/../../../victim.txt"}
    torch.save({"state_dict": {}, "callbacks": {"ModelCheckpoint{}": state}}, path)
    with pytest.raises(ConfigError) as info:
        resolve_overrides([f"ckpt_path={path}"], tmp_path, "classification")
    assert str(info.value).startswith(f"ckpt_path={path}: refusing to load {path}: the state of ")
    with pytest.raises(ConfigError, match=r"no checkpoint loads: .*last\.ckpt \(refusing to load"):
        resolve_overrides(["ckpt_path=last"], tmp_path, "classification")
