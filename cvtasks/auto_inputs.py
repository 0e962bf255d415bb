"""``auto`` input settings, replaced by values read from the backbone, its weights and the data.

A run's config may leave these keys ``auto`` (the folder readers' and the backbones' defaults):

* ``data.image_size``: the pretrained entry's crop size (torchvision's weights table, timm's
  ``pretrained_cfg``), else the size the backbone is defined for
  (:func:`~cvtasks.backbones.input_size.native_input_size`: LeNet-5 32, EfficientNet-B3 300),
  rounded up to a multiple of the deepest feature reduction for tasks with dense outputs;
* ``data.mean`` / ``data.std``: the pretrained weights' normalization, else ImageNet's;
* ``data.crop_pct`` / ``data.interpolation``: how evaluation resizes, from the pretrained entry
  (torchvision's ``resize_size``/``crop_size``, timm's ``crop_pct``), else a plain resize;
* ``backbone.in_chans``: the data's channels, 1 when the sampled images of a folder are all
  grayscale, else 3. With one channel the pipelines convert images to gray and a 3-value
  normalization becomes its average (pretrained stems are adapted the way timm adapts them).

:func:`resolve_inputs` writes the values into the config before anything is built, so the run's
``config.yaml`` and checkpoints hold numbers that ``predict``, ``evaluate`` and ``export`` reuse.
Reading a pretrained entry's settings needs no download: torchvision's tables and timm's default
configs are part of the packages.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

AUTO = "auto"
#: PIL modes of single-channel images
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
#: images sampled from a folder to tell grayscale data from colour data
CHANNEL_SAMPLE = 32


@dataclass(frozen=True)
class PretrainedInputs:
    """What a pretrained entry says about its inputs (``None``: it says nothing)."""

    size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_pct: float | None = None
    interpolation: str | None = None


def pretrained_inputs(backbone: Mapping[str, Any] | None) -> PretrainedInputs:
    """The input settings of the weights ``backbone.pretrained`` names, without downloading.

    ``torchvision[:ENTRY]`` reads torchvision's weights table; a ``timm/<model>[.tag]``
    backbone with ``pretrained`` true reads timm's ``pretrained_cfg``. A local weights file, no
    weights, or a name the backbone's build will refuse (with its own message) say nothing.
    """
    from cvtasks.backbones.named_weights import (
        is_torchvision_name,
        pretrained_cfg,
        torchvision_weights,
    )
    from cvtasks.backbones.timm_adapter import PREFIX

    if not backbone:
        return PretrainedInputs()
    name, pretrained = backbone.get("name"), backbone.get("pretrained")
    if isinstance(name, str) and is_torchvision_name(pretrained):
        try:
            cfg = pretrained_cfg(torchvision_weights(name, pretrained))
        except (ValueError, KeyError):
            return PretrainedInputs()
        crop, resize = cfg["crop_size"], cfg["resize_size"]
        return PretrainedInputs(
            size=(int(crop[0]), int(crop[-1])) if crop else None,
            mean=tuple(cfg["mean"]) or None,
            std=tuple(cfg["std"]) or None,
            crop_pct=min(crop) / min(resize) if crop and resize else None,
            interpolation=cfg["interpolation"] or None,
        )
    if isinstance(name, str) and name.startswith(PREFIX) and pretrained is True:
        import timm

        cfg = timm.get_pretrained_cfg(name[len(PREFIX) :])
        if cfg is None:
            return PretrainedInputs()
        _, height, width = cfg.input_size
        return PretrainedInputs(
            size=(int(height), int(width)),
            mean=tuple(cfg.mean),
            std=tuple(cfg.std),
            crop_pct=float(cfg.crop_pct),
            interpolation=str(cfg.interpolation),
        )
    return PretrainedInputs()


def resolve_inputs(cfg: DictConfig) -> DictConfig:
    """Replace every ``auto`` input setting of ``cfg`` by its value, in place (see the module).

    Args:
        cfg: a composed run config; keys it lacks, or that hold values, are left as they are.

    Returns:
        ``cfg``.
    """
    data = _select(cfg, "data")
    if not isinstance(data, DictConfig):
        return cfg
    if data.get("name") == "shards":
        from cvtasks.data.shards import source_settings

        with open_dict(cfg):
            for key, value in source_settings(data).items():
                data[key] = value
    backbone = _select(cfg, "backbone")
    backbone_dict = _container(backbone)
    from cvtasks.data.datamodule import IMAGENET_MEAN, IMAGENET_STD

    weights = pretrained_inputs(backbone_dict)
    in_chans = backbone_dict.get("in_chans") if backbone_dict else None
    channels = data_channels(data) if in_chans in (None, AUTO) else in_chans
    with open_dict(cfg):
        if isinstance(backbone, DictConfig) and in_chans == AUTO:
            backbone.in_chans = channels
        if data.get("image_size") == AUTO:
            data.image_size = _image_size(cfg, weights)
        for key, value in (("mean", weights.mean), ("std", weights.std)):
            if data.get(key) == AUTO:
                imagenet = IMAGENET_MEAN if key == "mean" else IMAGENET_STD
                data[key] = _per_channel(value or imagenet, channels)
        if data.get("crop_pct") == AUTO:
            data.crop_pct = weights.crop_pct or 1.0
        if data.get("interpolation") == AUTO:
            data.interpolation = weights.interpolation or "bilinear"
    return cfg


def _select(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)


def _container(node: Any) -> dict[str, Any] | None:
    if not isinstance(node, DictConfig):
        return None
    # unresolved is enough here, and a `???` left for the build to report must not raise
    return {k: _select(node, k) for k in node}


def _per_channel(values: tuple[float, ...] | list[float], channels: Any) -> list[float]:
    """The normalization for ``channels``: one channel takes the average of RGB values."""
    values = [float(v) for v in values]
    if channels == 1 and len(values) == 3:
        return [round(sum(values) / 3, 6)]
    return values


def _image_size(cfg: DictConfig, weights: PretrainedInputs) -> int | list[int]:
    """The pretrained crop, else the backbone's native size; multiples for dense tasks."""
    from cvtasks.backbones.input_size import DEFAULT_INPUT_SIZE, native_input_size

    name = _select(cfg, "backbone.name")
    multiple = _dense_multiple(cfg)
    if weights.size is not None:
        height, width = (_round_up(side, multiple) for side in weights.size)
        return height if height == width else [height, width]
    if not isinstance(name, str):
        return DEFAULT_INPUT_SIZE  # a config without a backbone (evaluate's data alone)
    try:
        return native_input_size(name, multiple)
    except KeyError:
        return DEFAULT_INPUT_SIZE  # the build reports the unknown name, with close matches


def _round_up(side: int, multiple: int) -> int:
    return -(-side // multiple) * multiple


def _dense_multiple(cfg: DictConfig) -> int:
    """The deepest feature reduction for a task with dense outputs, else 1."""
    from cvtasks.registry import TASKS
    from cvtasks.schema import deepest_reduction

    task, backbone = _select(cfg, "task.name"), _select(cfg, "backbone")
    if not isinstance(task, str) or not isinstance(backbone, DictConfig) or task not in TASKS:
        return 1
    if not getattr(TASKS.get(task), "dense_output", False):
        return 1
    try:
        return deepest_reduction(backbone)
    except Exception:  # a backbone that cannot be built is reported by the build itself
        return 32


def data_channels(data: DictConfig) -> int:
    """1 when the sampled images under ``data.root`` are all grayscale, else 3.

    Built-in data sets (no ``root``, or ``null``) are colour images; so is a root that does not
    exist yet (its reader reports it).
    """
    root = _select(data, "root")
    if not isinstance(root, (str, os.PathLike)) or root == "???":
        return 3
    folder = Path(root).expanduser()
    if folder.is_file():  # a CSV or JSON reader's root is a folder; be lenient with a file
        folder = folder.parent
    modes = list(_sample_modes(folder))
    if modes and all(mode in GRAY_MODES for mode in modes):
        log.info("data.root=%s holds grayscale images: backbone.in_chans=1", root)
        return 1
    return 3


def _sample_modes(folder: Path) -> Iterator[str]:
    """The PIL modes of up to :data:`CHANNEL_SAMPLE` images under ``folder`` (headers only)."""
    from cvtasks.data.images import BadImageError, image_mode

    seen = 0
    for path in _image_files(folder):
        try:
            yield image_mode(path)
        except BadImageError:
            continue  # the reader names a bad file when it reads it
        seen += 1
        if seen >= CHANNEL_SAMPLE:
            return


def _image_files(folder: Path) -> Iterator[Path]:
    from cvtasks.data.images import is_image_file

    if not folder.is_dir():
        return
    for current, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if is_image_file(name):
                yield Path(current) / name
