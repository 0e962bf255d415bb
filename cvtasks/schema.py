"""Check a composed config's values before anything is built; name key, value and what is allowed.

Hydra composes whatever it is given; a negative learning rate or a misspelled precision would
otherwise surface minutes later as a NaN or a stack trace from deep inside Lightning.
:func:`validate_config` runs on the composed config and raises :class:`~cvtasks.config.ConfigError`
with one line per bad value: ``key=value: what is allowed``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, get_args

from lightning_fabric.plugins.precision.precision import (
    _PRECISION_INPUT_INT,
    _PRECISION_INPUT_STR,
    _PRECISION_INPUT_STR_ALIAS,
)
from omegaconf import DictConfig, ListConfig, OmegaConf

from cvtasks.config import ConfigError

PRECISIONS: tuple[Any, ...] = (
    *get_args(_PRECISION_INPUT_STR),
    *get_args(_PRECISION_INPUT_STR_ALIAS),
    *get_args(_PRECISION_INPUT_INT),
)
#: the largest seed NumPy (and so ``seed_everything``) accepts
MAX_SEED = 2**32 - 1

log = logging.getLogger(__name__)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# (key, test, what is allowed); a missing key or a null value is not checked
RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("seed", lambda v: _int(v) and 0 <= v <= MAX_SEED, f"an integer from 0 to {MAX_SEED}"),
    ("task.optimizer.lr", lambda v: _number(v) and v > 0, "a number > 0"),
    ("task.optimizer.weight_decay", lambda v: _number(v) and v >= 0, "a number >= 0"),
    ("task.scheduler.warmup_epochs", lambda v: _number(v) and v >= 0, "a number >= 0"),
    ("trainer.precision", lambda v: v in PRECISIONS, f"one of {', '.join(map(str, PRECISIONS))}"),
    ("trainer.max_epochs", lambda v: _int(v) and (v >= 1 or v == -1), "an integer >= 1, or -1"),
    ("trainer.num_nodes", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    ("trainer.accumulate_grad_batches", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    ("trainer.gradient_clip_val", lambda v: _number(v) and v >= 0, "a number >= 0, or null"),
    (
        "trainer.devices",
        lambda v: v == "auto" or (_int(v) and (v >= 1 or v == -1)) or isinstance(v, (list, str)),
        "auto, -1 (all), a count >= 1, or a list of device ids",
    ),
    ("task.freeze_backbone_epochs", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    ("task.backbone_lr_scale", lambda v: _number(v) and v > 0, "a number > 0"),
    ("task.freeze_bn", lambda v: isinstance(v, bool), "true or false"),
    ("callbacks.ema.decay", lambda v: _number(v) and 0 < v < 1, "a number between 0 and 1"),
    ("data.batch_size", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    ("data.num_workers", lambda v: v == "auto" or (_int(v) and v >= 0), "auto or an integer >= 0"),
    ("data.on_bad_image", lambda v: v in ("error", "skip"), "error or skip"),
    (
        "callbacks.nonfinite_loss.action",
        lambda v: v in ("stop", "skip"),
        "stop (end the run, keep the last good checkpoint) or skip (drop that batch's update)",
    ),
]


def _get(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)


def _image_size(value: Any) -> tuple[int, int] | None:
    if _int(value):
        return value, value
    if isinstance(value, ListConfig):  # a size given as [h, w] in a config
        value = list(value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_int(v) for v in value):
        return int(value[0]), int(value[1])
    return None


def deepest_reduction(backbone_cfg: DictConfig) -> int:
    """The backbone's largest feature ``reduction``, read from a copy built on the meta device."""
    import torch

    from cvtasks.registry import BACKBONES

    kwargs = OmegaConf.to_container(backbone_cfg, resolve=True)
    assert isinstance(kwargs, dict)
    name = kwargs.pop("name")
    kwargs.pop("pretrained", None)  # no weights are needed to know the shapes
    with torch.device("meta"):
        net = BACKBONES.build(name, **kwargs)
    return max(int(info["reduction"]) for info in net.feature_info)


def check_image_size(cfg: DictConfig) -> str | None:
    """The image size against the backbone's deepest feature reduction.

    Dense-output tasks need a size that divides by it (returned as a problem). Any task fed a
    size smaller than it gets a warning here: the deepest stages then see maps of one pixel of
    padding and learn little (ResNet-18 takes 1x1 images without complaint).
    """
    from cvtasks.registry import TASKS

    task = _get(cfg, "task.name")
    size = _image_size(_get(cfg, "data.image_size"))
    if task is None or size is None or _get(cfg, "backbone.name") is None:
        return None
    reduction = deepest_reduction(cfg.backbone)
    backbone = _get(cfg, "backbone.name")
    if min(size) < reduction:
        log.warning(
            "data.image_size=%s is smaller than backbone %s can use: its deepest features are "
            "%dx smaller than the input; use data.image_size=%d or more",
            _get(cfg, "data.image_size"),
            backbone,
            reduction,
            reduction,
        )
    dense = getattr(TASKS.get(task), "dense_output", False)  # declared by the task class
    if not dense or all(s % reduction == 0 for s in size):
        return None
    fix = tuple(max(reduction, round(s / reduction) * reduction) for s in size)
    return (
        f"data.image_size={_get(cfg, 'data.image_size')}: task {task} needs a size divisible by "
        f"{reduction} (the deepest feature reduction of backbone {backbone}); "
        f"try data.image_size={fix[0] if fix[0] == fix[1] else list(fix)}"
    )


def check_channels(cfg: DictConfig) -> str | None:
    """The backbone's input channels against what the data pipeline gives (one per mean value).

    Images are read as RGB; a one-value ``data.mean``/``data.std`` makes the pipeline convert
    them to gray. Any other ``backbone.in_chans`` has no images to feed it.
    """
    in_chans, mean = _get(cfg, "backbone.in_chans"), _get(cfg, "data.mean")
    if not _int(in_chans) or not isinstance(mean, (ListConfig, list, tuple)):
        return None  # auto (resolved before the build), or nothing to compare
    if in_chans not in (1, 3):
        return (
            f"backbone.in_chans={in_chans}: images give 3 channels (RGB) or 1 (gray); use "
            "backbone.in_chans=auto, 1 or 3"
        )
    if len(mean) != in_chans:
        values = "one value, e.g. [0.5]" if in_chans == 1 else "three values, e.g. [0.5,0.5,0.5]"
        return (
            f"data.mean={list(mean)} has {len(mean)} value(s) but backbone.in_chans={in_chans}: "
            f"give data.mean and data.std {values}, or set them to auto"
        )
    return None


def missing_values(cfg: DictConfig) -> list[str]:
    """One problem line per required value the config leaves unset (``???``).

    Read from the unresolved config: resolving would need Hydra's runtime values, which a
    composed config (in tests, benchmarks) does not have.
    """
    raw = OmegaConf.to_container(cfg, resolve=False)
    return [
        f"{key} is not set and has no default: add {key}=... to the command line"
        for key in _missing_keys(raw)
        if not key.startswith("hydra.")
    ]


def _missing_keys(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return []
    found = []
    for key, value in items:
        path = f"{prefix}{key}"
        found += [path] if value == "???" else _missing_keys(value, f"{path}.")
    return found


def validate_config(cfg: DictConfig, check_backbone: bool = True) -> None:
    """Raise :class:`ConfigError` listing every value of ``cfg`` that is not allowed.

    Args:
        cfg: the composed ``train.yaml`` config (plugins already loaded when ``check_backbone``).
        check_backbone: also build the backbone on the meta device to check the image size.
    """
    problems = missing_values(cfg)
    for key, test, allowed in RULES:
        value = _get(cfg, key)
        if value is not None and not test(value):
            problems.append(f"{key}={value!r}: must be {allowed}")
    channel_problem = check_channels(cfg)
    if channel_problem:
        problems.append(channel_problem)
    if check_backbone and not problems:
        size_problem = check_image_size(cfg)
        if size_problem:
            problems.append(size_problem)
    if problems:
        raise ConfigError("invalid config value(s):\n  " + "\n  ".join(problems))
