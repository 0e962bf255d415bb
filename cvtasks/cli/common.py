"""What the after-training commands share: the config a checkpoint carries, and reading it back.

``train.py`` stores the composed, resolved run config in every checkpoint under
:data:`CONFIG_KEY` (through :class:`ConfigInCheckpoint`); with Lightning's ``hyper_parameters``
(the task's constructor arguments) that is all predict, evaluate and export need to rebuild the
model and its pre-processing (image size, mean, std, class and keypoint names). Checkpoints are
read with ``torch.load(weights_only=True)``. A checkpoint written without the config falls back
to the ``config.yaml`` of its run folder (``<run>/checkpoints/<name>.ckpt``).
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

from cvtasks import plugins
from cvtasks.data.transforms import build_pipeline, parse_image_size
from cvtasks.io import atomic_open, load_tensors
from cvtasks.registry import TASKS
from cvtasks.tasks.base import TaskModule

log = logging.getLogger(__name__)

#: the checkpoint entry holding the run's resolved config.
CONFIG_KEY = "cvtasks_config"


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

    def transform(self) -> Callable[..., dict[str, Any]]:
        """The evaluation pipeline of training: resize, normalize, to tensor."""
        return build_pipeline(None, self.image_size, self.mean, self.std, train=False)

    def preprocessing(self) -> dict[str, Any]:
        """What a deployed model needs besides its weights (stored beside exported models)."""
        task = self.task
        meta: dict[str, Any] = {
            "task": self.task_name,
            "backbone": self.config.get("backbone", {}).get("name"),
            "image_size": list(self.image_size),
            "mean": self.mean,
            "std": self.std,
            "input": "float32 [N, 3, H, W], RGB, (pixel / 255 - mean) / std",
        }
        for key in ("class_names", "label_names", "keypoint_names", "skeleton", "distance"):
            if hasattr(task, key):
                meta[key] = [list(v) if isinstance(v, tuple) else v for v in getattr(task, key)]
        if hasattr(task, "threshold"):
            threshold = float(task.threshold)
            meta["threshold"] = threshold if math.isfinite(threshold) else None
        return meta


def read_config(path: Path, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The run config stored in ``checkpoint``, else the run folder's ``config.yaml``."""
    if CONFIG_KEY in checkpoint:
        return dict(checkpoint[CONFIG_KEY])
    beside = path.resolve().parent.parent / "config.yaml"
    if beside.is_file():
        log.info("checkpoint has no stored config; using %s", beside)
        return yaml.safe_load(beside.read_text())
    raise CheckpointError(
        f"{path} carries no run config ({CONFIG_KEY!r}) and has no config.yaml in its run folder "
        f"({beside}); train it with this version of cvtasks, or put the run's config.yaml there."
    )


def load_trained(path: str | Path, expect_task: str | None = None) -> TrainedModel:
    """Rebuild the task module of a training checkpoint (``weights_only=True``).

    Args:
        path: a ``.ckpt`` written by ``train.py``.
        expect_task: the task the command was asked for; ``None`` accepts any.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the checkpoint holds another task, or lacks what rebuilds it.
    """
    path = Path(path).expanduser()
    checkpoint = load_tensors(path)
    if "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise CheckpointError(
            f"{path} is not a cvtasks training checkpoint (no state_dict / hyper_parameters); "
            "give a checkpoints/best.ckpt or last.ckpt of a train.py run."
        )
    config = read_config(path, checkpoint)
    plugins.load(list(config.get("plugins") or []))
    name = str(config["task"]["name"])
    if expect_task and expect_task != name:
        raise CheckpointError(
            f"{path} holds a {name!r} model, but expect_task={expect_task} was asked for: give "
            f"a {expect_task} checkpoint, or drop expect_task= to use this one as {name}."
        )
    hparams = dict(checkpoint["hyper_parameters"])
    backbone = dict(hparams.get("backbone") or {})
    backbone["pretrained"] = None  # the checkpoint holds the weights
    hparams.update(backbone=backbone, compile=False)
    task = TASKS.build(name, **hparams)
    task.load_state_dict(checkpoint["state_dict"])
    log.info("loaded %s model (%s) from %s", name, backbone.get("name"), path)
    return TrainedModel(task=task.eval(), config=config, path=path)


def run_command(main: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Load ``cfg.plugins``, call ``main(cfg)``; an expected failure becomes one error line and
    exit code 2."""
    try:
        plugins.load(list(cfg.get("plugins") or []))
        return main(cfg)
    except (CheckpointError, FileNotFoundError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def save_picture(picture: Image.Image, path: Path) -> None:
    """Write a PNG, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="PNG")


def write_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Write one JSON object per line, atomically."""
    with atomic_open(path) as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
