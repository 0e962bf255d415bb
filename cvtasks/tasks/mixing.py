"""Mixup and CutMix for classification batches, through timm's :class:`timm.data.Mixup`.

Mixup (Zhang et al. 2018) blends two images, ``lam · a + (1 - lam) · b``; CutMix (Yun et al.
2019) pastes a box of ``b`` into ``a``. Either way the target becomes the same blend of the two
(label-smoothed) one-hot vectors, and the loss is the cross-entropy against that soft target
(timm's :class:`~timm.loss.SoftTargetCrossEntropy`). timm pairs each image with the batch
reversed, so a batch must have an even size: in an odd one the last image stays as it is, with
its smoothed one-hot target.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import torch
from timm.data import Mixup
from timm.data.mixup import mixup_target

#: the keywords of ``timm.data.Mixup`` that ``task.mixup`` may set (the task sets the rest).
MIXUP_KEYS = (
    "mixup_alpha",
    "cutmix_alpha",
    "cutmix_minmax",
    "prob",
    "switch_prob",
    "mode",
    "correct_lam",
    "label_smoothing",
)
MODES = ("batch", "pair", "elem")


def build_mixup(
    cfg: Mapping[str, Any] | None, num_classes: int, label_smoothing: float
) -> Mixup | None:
    """timm's ``Mixup`` from ``task.mixup``, or ``None`` (off).

    Args:
        cfg: ``{mixup_alpha, cutmix_alpha, cutmix_minmax, prob, switch_prob, mode, correct_lam,
            label_smoothing}``, each optional (an alpha left out is 0, as in timm's
            ``train.py``). Mixing is on when an alpha is above 0 or ``cutmix_minmax`` is set;
            ``None`` or nothing to mix turns it off.
        num_classes: classes of the one-hot targets.
        label_smoothing: the smoothing of the mixed targets unless ``cfg`` sets its own
            (``task.label_smoothing``, as timm's ``train.py`` passes ``--smoothing``).

    Returns:
        The ``Mixup`` object, or ``None``.

    Raises:
        ValueError: an unknown key (with close matches) or a bad value.
    """
    if cfg is None:
        return None
    if not isinstance(cfg, Mapping):
        raise ValueError(
            f"task.mixup must be a mapping like {{mixup_alpha: 0.8, cutmix_alpha: 1.0}} or null, "
            f"got {cfg!r}"
        )
    kwargs = {str(k): _plain(v) for k, v in cfg.items()}
    for key in kwargs:
        if key not in MIXUP_KEYS:
            close = difflib.get_close_matches(key, MIXUP_KEYS, n=5, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(
                f"task.mixup.{key} is not a mixup setting.{hint} It takes: {', '.join(MIXUP_KEYS)}."
            )
    kwargs.setdefault("mixup_alpha", 0.0)
    kwargs.setdefault("cutmix_alpha", 0.0)
    if kwargs.get("label_smoothing") is None:
        kwargs["label_smoothing"] = label_smoothing
    _check(kwargs)
    if (
        kwargs["mixup_alpha"] <= 0
        and kwargs["cutmix_alpha"] <= 0
        and not kwargs.get("cutmix_minmax")
    ):
        return None  # nothing to mix: off, as timm's train.py decides
    return Mixup(num_classes=num_classes, **kwargs)


def _check(kwargs: dict[str, Any]) -> None:
    for key in ("mixup_alpha", "cutmix_alpha"):
        if kwargs[key] < 0:
            raise ValueError(f"task.mixup.{key} must be >= 0, got {kwargs[key]!r}")
    minmax = kwargs.get("cutmix_minmax")
    if minmax is not None and (len(minmax) != 2 or not 0 < minmax[0] <= minmax[1] <= 1):
        raise ValueError(
            "task.mixup.cutmix_minmax must be [low, high] with 0 < low <= high <= 1, "
            f"got {minmax!r}"
        )
    for key in ("prob", "switch_prob"):
        if key in kwargs and not 0.0 <= kwargs[key] <= 1.0:
            raise ValueError(f"task.mixup.{key} must be in [0, 1], got {kwargs[key]!r}")
    if not 0.0 <= kwargs["label_smoothing"] < 1.0:
        raise ValueError(
            f"task.mixup.label_smoothing must be in [0, 1), got {kwargs['label_smoothing']!r}"
        )
    if kwargs.get("mode", "batch") not in MODES:
        raise ValueError(
            f"task.mixup.mode must be one of {', '.join(MODES)}, got {kwargs['mode']!r}"
        )


def mix_batch(
    mixup: Mixup, images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix a batch: ``(mixed images, soft targets [B, num_classes])``.

    The images are mixed in place, as timm does. In a batch of odd size the last image is left
    out of the mixing and gets its label-smoothed one-hot target.

    Args:
        mixup: timm's ``Mixup`` (see :func:`build_mixup`).
        images: ``float[B, C, H, W]``.
        labels: ``int64[B]``.
    """
    size = images.shape[0] - images.shape[0] % 2
    if size == 0:
        soft = mixup_target(labels, mixup.num_classes, 1.0, mixup.label_smoothing)
        return images, soft
    _, soft = mixup(images[:size], labels[:size])  # mixes the view, so `images`, in place
    if size < images.shape[0]:
        rest = mixup_target(labels[size:], mixup.num_classes, 1.0, mixup.label_smoothing)
        soft = torch.cat([soft, rest])
    return images, soft


def _plain(value: Any) -> Any:
    # OmegaConf lists become lists: timm checks len() and indexes them
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return value
    return [float(v) for v in value]
