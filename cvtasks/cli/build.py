"""Build the pieces of a run from a composed config: data, task, callbacks, loggers, trainer."""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor

from cvtasks.config import ConfigError
from cvtasks.registry import DATASETS, TASKS
from cvtasks.tasks.base import TaskModule
from cvtasks.training.checkpoint_io import AtomicCheckpointIO

log = logging.getLogger(__name__)

#: what a data module may tell the task it feeds (when the task's constructor takes it).
DATA_TO_TASK_KEYS = (
    "num_classes",
    "class_names",
    "num_keypoints",
    "keypoint_names",
    "skeleton",
    "flip_pairs",
)
#: the annotations a task learns from and a data module gives (their ``target_kind``), in words
TARGET_KINDS = {
    "class": "one label per image",
    "label_set": "a set of labels per image",
    "box": "one object's class and box per image",
    "objects": "a class and a box for every object",
    "keypoints": "keypoints per image",
    "mask": "a class for every pixel",
    "identity": "an identity per image",
}


def to_dict(cfg: DictConfig | dict | None) -> dict[str, Any]:
    """A resolved plain-``dict`` copy of a config node (``{}`` for ``None``)."""
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def named(cfg: DictConfig | dict, key: str) -> tuple[str, dict[str, Any]]:
    """Split ``{"name": n, **kw}`` into ``(n, kw)``; a missing name says which key to set."""
    kwargs = to_dict(cfg)
    name = kwargs.pop("name", None)
    if not name:
        raise ValueError(f"{key}.name is not set: name a registered {key} (e.g. {key}.name=...)")
    return name, kwargs


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """The data module named by ``cfg.data.name``, prepared and set up for fitting.

    Data that cannot feed ``cfg.task`` is refused (:func:`check_target_kind`) before it is
    prepared: nothing is written or scanned for a run that could not train.
    """
    name, kwargs = named(cfg.data, "data")
    datamodule = DATASETS.build(name, **kwargs)
    check_target_kind(OmegaConf.select(cfg, "task.name"), name, datamodule)
    datamodule.prepare_data()
    datamodule.setup("fit")
    log.info("data: %s (%s)", name, type(datamodule).__name__)
    return datamodule


def check_target_kind(task: str | None, data: str, datamodule: object) -> None:
    """Refuse data whose annotations are not those the task learns from; name what fits.

    The task class and the data module each declare a ``target_kind`` (see
    :class:`~cvtasks.tasks.base.TaskModule`); either left ``None`` (a plugin's, say) passes.

    Args:
        task: the task's registry name (``cfg.task.name``).
        data: the data set's registry name (``cfg.data.name``).
        datamodule: the data module built from it.

    Raises:
        ConfigError: one line with what the task needs, what the data gives, the data sets
            that give what the task needs and the tasks that learn from this data.
    """
    needs = _kind(TASKS.get(task)) if task else None
    gives = _kind(datamodule)
    if needs is None or gives is None or needs == gives:
        return
    fits = [f"data={n}" for n in DATASETS.names() if _made_kind(DATASETS.get(n)) == needs]
    takes = [f"task={n}" for n in TASKS.names() if _kind(TASKS.get(n)) == gives]
    fixes = ([f"use {_either(fits)}"] if fits else []) + (
        [f"{_either(takes)} for data={data}"] if takes else []
    )
    raise ConfigError(
        f"task={task} needs data with {TARGET_KINDS.get(needs, needs)}, but data={data} gives "
        f"{TARGET_KINDS.get(gives, gives)}" + (": " + ", or ".join(fixes) if fixes else "")
    )


def _made_kind(factory: Callable[..., Any]) -> str | None:
    """The ``target_kind`` of what a data set factory builds: a class's own, or the class its
    return annotation names; ``None`` when neither says (a module that learns its kind when
    built, from the files it reads)."""
    made: Any = factory
    if not isinstance(factory, type):
        try:
            made = typing.get_type_hints(factory).get("return")
        except (NameError, TypeError):  # an annotation its module cannot resolve at run time
            return None
    return _kind(made) if isinstance(made, type) else None


def _kind(obj: object) -> str | None:
    return getattr(obj, "target_kind", None)


def _either(choices: list[str]) -> str:
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def build_task(cfg: DictConfig, datamodule: pl.LightningDataModule) -> TaskModule:
    """The task module named by ``cfg.task.name``, with the backbone config and data facts."""
    name, kwargs = named(cfg.task, "task")
    backbone_name, backbone_kwargs = named(cfg.backbone, "backbone")
    factory = TASKS.get(name)
    accepted = inspect.signature(factory).parameters
    for key in DATA_TO_TASK_KEYS:
        if key in accepted and key not in kwargs and hasattr(datamodule, key):
            kwargs[key] = getattr(datamodule, key)
    module = factory(
        backbone={"name": backbone_name, **backbone_kwargs},
        compile=cfg.get("compile", False),
        channels_last=cfg.get("channels_last", False),
        **kwargs,
    )
    params = sum(p.numel() for p in module.parameters())
    log.info("task: %s, backbone: %s, %s parameters", name, backbone_name, f"{params:,}")
    return module


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a group such as ``callbacks`` or ``logger``.

    An entry with ``enabled: false`` is left out (a switch for what is off by default, e.g.
    ``callbacks.ema.enabled=true``); ``enabled`` itself is not passed on.
    """
    if not cfg:
        return []
    built = []
    for node in cfg.values():
        if not node or "_target_" not in node:
            continue
        if "enabled" in node:
            if not node.enabled:
                continue
            node = OmegaConf.masked_copy(node, [key for key in node if key != "enabled"])
        built.append(instantiate(node))
    return built


def build_trainer(cfg: DictConfig) -> pl.Trainer:
    """The Lightning Trainer of ``cfg.trainer`` with the configured callbacks and loggers.

    Checkpoints always go through :class:`AtomicCheckpointIO` (temp file + rename, loading with
    ``weights_only=True``), added to the trainer's ``plugins`` (e.g. a ``SLURMEnvironment``).
    """
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    if not loggers:  # the learning-rate monitor writes through a logger and refuses to run without
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    plugins = [instantiate(node) for node in cfg.trainer.get("plugins") or []]
    plugins.append(AtomicCheckpointIO())
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins)
