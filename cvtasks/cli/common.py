"""What the after-training commands share: the config a checkpoint carries, and reading it back.

``train.py`` stores the composed, resolved run config in every checkpoint under
:data:`CONFIG_KEY` (through :class:`ConfigInCheckpoint`); with Lightning's ``hyper_parameters``
(the task's constructor arguments) that is all predict, evaluate and export need to rebuild the
model and its pre-processing (image size, mean, std, class and keypoint names). Checkpoints are
read with ``torch.load(weights_only=True)``. A checkpoint written without the config falls back
to the ``config.yaml`` of its run folder (``<run>/checkpoints/<name>.ckpt``). The plugins the config
names are never imported from it: the command loads them (``plugins=[...]``), or it stops.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from pytorch_lightning.utilities.exceptions import SIGTERMException

from cvtasks import plugins
from cvtasks.cli.errors import exit_with
from cvtasks.data.transforms import build_pipeline, parse_image_size
from cvtasks.io import atomic_open, load_tensors
from cvtasks.registry import TASKS
from cvtasks.tasks.base import TaskModule
from cvtasks.training.checkpoint_io import CONFIG_KEY
from cvtasks.training.signals import SIGTERM_EXIT, PreemptionError, SigtermWatch

log = logging.getLogger(__name__)

#: timm keywords that name a file to read weights from; the checkpoint's own weights replace them
TIMM_FILE_KEYS = ("checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay")


class CheckpointError(ValueError):
    """A checkpoint that cannot serve the command: missing, wrong task, nothing to rebuild from."""


class ConfigInCheckpoint(pl.Callback):
    """Stores the run's resolved config in every checkpoint Lightning writes.

    Args:
        cfg: the composed config (resolved here, once, while Hydra's resolvers are live).
    """

    def __init__(self, cfg: DictConfig | Mapping[str, Any]) -> None:
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        self.config = dict(cfg)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Add the config under :data:`CONFIG_KEY`."""
        checkpoint[CONFIG_KEY] = self.config


@dataclass
class TrainedModel:
    """A task module rebuilt from a checkpoint, with the config it was trained under."""

    task: TaskModule
    config: dict[str, Any]
    path: Path

    @property
    def task_name(self) -> str:
        """The registered task name (``classification``, ``segmentation``, ...)."""
        return str(self.config["task"]["name"])

    @property
    def data(self) -> dict[str, Any]:
        """The data config of the training run."""
        return dict(self.config.get("data") or {})

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the network input."""
        return parse_image_size(self.data.get("image_size", 224))

    @property
    def mean(self) -> list[float]:
        """Per-channel mean of [0, 1] pixels used for normalization."""
        return [float(m) for m in self.data.get("mean", (0.485, 0.456, 0.406))]

    @property
    def std(self) -> list[float]:
        """Per-channel standard deviation used for normalization."""
        return [float(s) for s in self.data.get("std", (0.229, 0.224, 0.225))]

    @property
    def channels(self) -> int:
        """Channels of the network input: 1 for a model trained on gray images, else 3."""
        return len(self.mean)

    def transform(self) -> Callable[..., dict[str, Any]]:
        """The evaluation pipeline of training: resize (and crop), normalize, to tensor."""
        return build_pipeline(
            None,
            self.image_size,
            self.mean,
            self.std,
            train=False,
            crop_pct=float(self.data.get("crop_pct", 1.0)),
            interpolation=str(self.data.get("interpolation", "bilinear")),
        )

    def preprocessing(self) -> dict[str, Any]:
        """What a deployed model needs besides its weights (stored beside exported models)."""
        task = self.task
        meta: dict[str, Any] = {
            "task": self.task_name,
            "backbone": self.config.get("backbone", {}).get("name"),
            "image_size": list(self.image_size),
            "mean": self.mean,
            "std": self.std,
            "crop_pct": float(self.data.get("crop_pct", 1.0)),
            "interpolation": str(self.data.get("interpolation", "bilinear")),
            "input": (
                "float32 [N, 3, H, W], RGB, (pixel / 255 - mean) / std"
                if self.channels == 3
                else "float32 [N, 1, H, W], gray (0.299 R + 0.587 G + 0.114 B), "
                "(pixel / 255 - mean) / std"
            ),
        }
        for key in ("class_names", "label_names", "keypoint_names", "skeleton", "distance"):
            if hasattr(task, key):
                meta[key] = [list(v) if isinstance(v, tuple) else v for v in getattr(task, key)]
        if hasattr(task, "threshold"):
            threshold = float(task.threshold)
            meta["threshold"] = threshold if math.isfinite(threshold) else None
        return meta


def read_config(path: Path, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The run config stored in ``checkpoint``, else the run folder's ``config.yaml``.

    Raises:
        CheckpointError: there is none, or it is not a mapping with a ``task.name``.
    """
    if CONFIG_KEY in checkpoint:
        config, source = checkpoint[CONFIG_KEY], f"{path} ({CONFIG_KEY!r})"
    else:
        beside = path.resolve().parent.parent / "config.yaml"
        if not beside.is_file():
            raise CheckpointError(
                f"{path} carries no run config ({CONFIG_KEY!r}) and has no config.yaml in its run "
                f"folder ({beside}); train it with this version of cvtasks, or put the run's "
                "config.yaml there."
            )
        log.info("checkpoint has no stored config; using %s", beside)
        config, source = yaml.safe_load(beside.read_text()), str(beside)
    task = config.get("task") if isinstance(config, Mapping) else None
    if not isinstance(task, Mapping) or not isinstance(task.get("name"), str):
        raise CheckpointError(
            f"the run config of {source} names no task (task.name); give a checkpoint of a "
            "train.py run."
        )
    return dict(config)


def check_plugins(path: Path, config: Mapping[str, Any]) -> None:
    """Stop when the run config names plugins this process has not loaded.

    A checkpoint's plugins are never imported on its say-so: a plugin is code, and a downloaded
    checkpoint beside a ``.py`` file would run it. The user loads them on purpose
    (``plugins=[...]`` of the command, or an installed entry point).

    Raises:
        CheckpointError: naming the plugins that are not loaded and the override that loads them.
    """
    listed = config.get("plugins") or []
    specs = [str(p) for p in ([listed] if isinstance(listed, str) else listed)]
    missing = plugins.not_loaded(specs)
    if not missing:
        return
    override = f"plugins=[{','.join(specs)}]"
    if len(specs) > 1:
        override = f"'{override}'"
    raise CheckpointError(
        f"{path} was trained with plugins that are not loaded: {', '.join(missing)}. A checkpoint "
        f"never imports code by itself; if you trust the plugins, load them on purpose with "
        f"{override} (a module name, or the path of your copy of the .py file)."
    )


def load_trained(path: str | Path, expect_task: str | None = None) -> TrainedModel:
    """Rebuild the task module of a training checkpoint (``weights_only=True``).

    Nothing the checkpoint says is imported or instantiated: its task, backbone and head names go
    through the registries, its plugins must already be loaded (:func:`check_plugins`), and its
    optimizer config is only stored (it is built by ``configure_optimizers``, in training).

    Args:
        path: a ``.ckpt`` written by ``train.py``.
        expect_task: the task the command was asked for; ``None`` accepts any.

    Raises:
        FileNotFoundError: no such file.
        CorruptFileError: the file is damaged (a ``ValueError``).
        CheckpointError: the checkpoint holds another task, lacks what rebuilds it, names
            plugins that are not loaded, or its hyper-parameters do not fit its task.
    """
    path = Path(path).expanduser()
    checkpoint = load_tensors(path)
    if "state_dict" not in checkpoint or not isinstance(checkpoint.get("hyper_parameters"), dict):
        raise CheckpointError(
            f"{path} is not a cvtasks training checkpoint (no state_dict / hyper_parameters); "
            "give a checkpoints/best.ckpt or last.ckpt of a train.py run."
        )
    config = read_config(path, checkpoint)
    check_plugins(path, config)
    name = str(config["task"]["name"])
    if expect_task and expect_task != name:
        raise CheckpointError(
            f"{path} holds a {name!r} model, but expect_task={expect_task} was asked for: give "
            f"a {expect_task} checkpoint, or drop expect_task= to use this one as {name}."
        )
    hparams = dict(checkpoint["hyper_parameters"])
    backbone = dict(hparams.get("backbone") or {})
    backbone["pretrained"] = None  # the checkpoint holds the weights
    for key in TIMM_FILE_KEYS:  # nor may it make timm read a file it names
        backbone.pop(key, None)
    hparams.update(backbone=backbone, compile=False)
    try:
        task = TASKS.build(name, **hparams)
    except TypeError as err:  # a keyword the task (or its backbone, head) does not take
        raise CheckpointError(
            f"{path}: its hyper_parameters do not fit the {name!r} task of this cvtasks version "
            f"({err}); give a checkpoint of a train.py run of this version."
        ) from err
    task.load_state_dict(checkpoint["state_dict"])
    log.info("loaded %s model (%s) from %s", name, backbone.get("name"), path)
    return TrainedModel(task=task.eval(), config=config, path=path)


def run_command(main: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Load ``cfg.plugins``, call ``main(cfg)``; an expected failure becomes one error line and
    exit code 2, SIGTERM (at any moment, inside Lightning's test loop too) exit code 143."""
    with SigtermWatch() as sigterm:
        try:
            sigterm.enter("the command")
            plugins.load(list(cfg.get("plugins") or []))
            return main(cfg)
        except (CheckpointError, FileNotFoundError, ValueError, KeyError) as err:
            exit_with(err, 2)
        except (SIGTERMException, PreemptionError):
            print("error: stopped by SIGTERM; run the command again", file=sys.stderr)
            raise SystemExit(SIGTERM_EXIT) from None


def save_picture(picture: Image.Image, path: Path) -> None:
    """Write a PNG atomically, creating its folder."""
    with atomic_open(path, "wb") as f:
        picture.save(f, format="PNG")


def write_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Write one JSON object per line, atomically."""
    with atomic_open(path) as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
