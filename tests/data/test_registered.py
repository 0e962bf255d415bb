"""The data package's registry entries, built from the shipped data configs."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cvtasks.data import ImageFolderDataModule
from cvtasks.registry import DATASETS


def _config(compose_train, name: str) -> dict:
    # as a run composes it: image_folder's image size follows the (default) backbone
    data = compose_train(f"data={name}", "data.root=.").data
    cfg = OmegaConf.to_container(data, resolve=True)
    assert cfg.pop("name") == name
    return cfg


def test_names() -> None:
    assert {"digits", "image_folder"} <= set(DATASETS.names())


def test_every_dataset_lives_in_the_module_of_its_name() -> None:
    own = [name for name in DATASETS.names() if DATASETS.origin(name).startswith("cvtasks.")]
    assert len(own) >= 13
    misplaced = {
        name: DATASETS.origin(name)
        for name in own
        if DATASETS.origin(name).rpartition(".")[2] != name
    }
    assert not misplaced, f"registry name and module differ: {misplaced}"


def test_digits_config_builds(tmp_path: Path, compose_train) -> None:
    cfg = _config(compose_train, "digits")
    module = DATASETS.build("digits", **{**cfg, "root": str(tmp_path)})
    assert isinstance(module, ImageFolderDataModule)
    module.prepare_data()
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (cfg["batch_size"], 3, cfg["image_size"], cfg["image_size"])
    assert module.num_classes == 10


def test_image_folder_config_builds(tmp_path: Path, make_folder, compose_train) -> None:
    make_folder(tmp_path, {"a": 4, "b": 4})
    shipped = _config(compose_train, "image_folder")
    cfg = {**shipped, "root": str(tmp_path), "num_workers": 0, "image_size": 24}
    module = DATASETS.build("image_folder", **cfg)
    module.setup("fit")
    assert module.class_names == ["a", "b"]
    assert next(iter(module.train_dataloader()))["image"].shape[1:] == (3, 24, 24)


def test_unknown_keyword_is_not_swallowed(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="batchsize"):
        DATASETS.build("digits", root=str(tmp_path), batchsize=8)
