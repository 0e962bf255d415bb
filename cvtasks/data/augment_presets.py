"""Named augmentation strengths: ``data.augment=light|medium|heavy``.

Each strength is a list of transform specs in the same form as an explicit ``data.augment`` list
(``{"name": <albumentations class>, **kwargs}``), so a user can print one, copy it into a config
and edit it. The list depends on what the pipeline carries besides the image, because not every
transform keeps every target exact:

=========  ==========================================================================
targets    what the strengths hold back, and why
=========  ==========================================================================
image      nothing (classification, siamese identities); heavy adds random erasing
boxes      no resizing crop (it can cut an object out) and no rotation (a rotated
           box is looser than the object); no erasing (it can hide a small object)
keypoints  no resizing crop (points off by up to half a pixel); flips swap the left/right
           points of each flip pair (:class:`~cvtasks.data.keypoint_dataset.KeypointTransform`)
masks      padding from ``Affine`` is filled with the ignore index 255, not a class
=========  ==========================================================================

Every strength flips horizontally: for data where a mirror changes the meaning (digits, text),
keep an explicit list instead.
"""

from __future__ import annotations

import copy
from typing import Any

STRENGTHS = ("light", "medium", "heavy")
TARGETS = ("image", "boxes", "keypoints", "masks")

_FLIP = {"name": "HorizontalFlip", "p": 0.5}


def _affine(scale: float, shift: float, rotate: float, p: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": "Affine",
        "scale": [1.0 - scale, 1.0 + scale],
        "translate_percent": [-shift, shift],
        "rotate": [-rotate, rotate],
        "p": p,
        **extra,
    }


def _color(amount: float, hue: float, p: float) -> dict[str, Any]:
    return {
        "name": "ColorJitter",
        "brightness": amount,
        "contrast": amount,
        "saturation": amount,
        "hue": hue,
        "p": p,
    }


# Blur or sensor noise, one of them at a time; GaussNoise's std is a fraction of 255.
_DEGRADE = {
    "name": "OneOf",
    "transforms": [
        {"name": "GaussianBlur", "blur_limit": [3, 5]},
        {"name": "GaussNoise", "std_range": [0.02, 0.08]},
    ],
    "p": 0.3,
}
# Random erasing as timm's RandomErasing: up to 4 holes of 5-20% of each side.
_ERASE = {
    "name": "CoarseDropout",
    "num_holes_range": [1, 4],
    "hole_height_range": [0.05, 0.2],
    "hole_width_range": [0.05, 0.2],
    "p": 0.5,
}


def _image(strength: str) -> list[dict[str, Any]]:
    if strength == "light":
        return [{"name": "RandomResizedCrop", "scale": [0.8, 1.0]}, _FLIP]
    if strength == "medium":
        return [
            {"name": "RandomResizedCrop", "scale": [0.5, 1.0]},
            _FLIP,
            _affine(0.0, 0.0, 15, 0.5),
            _color(0.2, 0.02, 0.5),
        ]
    return [
        {"name": "RandomResizedCrop", "scale": [0.25, 1.0]},
        _FLIP,
        _affine(0.0, 0.0, 20, 0.5, shear=[-8, 8]),
        _color(0.4, 0.1, 0.8),
        _DEGRADE,
        _ERASE,
    ]


def _boxes(strength: str) -> list[dict[str, Any]]:
    if strength == "light":
        return [_FLIP, _affine(0.1, 0.05, 0, 0.5)]
    if strength == "medium":
        return [_FLIP, _affine(0.2, 0.1, 0, 0.7), _color(0.2, 0.02, 0.5)]
    return [_FLIP, _affine(0.4, 0.15, 0, 0.8), _color(0.4, 0.1, 0.8), _DEGRADE]


def _keypoints(strength: str) -> list[dict[str, Any]]:
    if strength == "light":
        return [_FLIP, _affine(0.1, 0.05, 10, 0.5)]
    if strength == "medium":
        return [_FLIP, _affine(0.2, 0.1, 25, 0.7), _color(0.2, 0.02, 0.5)]
    return [_FLIP, _affine(0.3, 0.15, 40, 0.8), _color(0.4, 0.1, 0.8), _DEGRADE]


def _masks(strength: str) -> list[dict[str, Any]]:
    ignore = {"fill_mask": 255}  # padded pixels belong to no class: the loss skips them
    if strength == "light":
        return [_FLIP, _affine(0.1, 0.05, 0, 0.5, **ignore)]
    if strength == "medium":
        return [
            {"name": "RandomResizedCrop", "scale": [0.5, 1.0]},
            _FLIP,
            _affine(0.0, 0.0, 15, 0.5, **ignore),
            _color(0.2, 0.02, 0.5),
        ]
    return [
        {"name": "RandomResizedCrop", "scale": [0.25, 1.0]},
        _FLIP,
        _affine(0.0, 0.0, 25, 0.7, shear=[-8, 8], **ignore),
        _color(0.4, 0.1, 0.8),
        _DEGRADE,
    ]


_BUILDERS = {"image": _image, "boxes": _boxes, "keypoints": _keypoints, "masks": _masks}


def named_augment(strength: str, targets: str = "image") -> list[dict[str, Any]]:
    """The transform specs of a named strength for a pipeline carrying ``targets``.

    Args:
        strength: ``"light"``, ``"medium"`` or ``"heavy"``.
        targets: what travels with the image: ``"image"`` (nothing: classification, siamese),
            ``"boxes"`` (localization, detection), ``"keypoints"`` (landmarks) or ``"masks"``
            (segmentation).

    Returns:
        A fresh list of ``{"name": ..., **kwargs}`` specs, as ``data.augment`` takes them.

    Raises:
        ValueError: an unknown strength (naming the allowed ones) or unknown targets.
    """
    if strength not in STRENGTHS:
        raise ValueError(
            f"data.augment: {strength!r} is not a named strength; use one of "
            f"{', '.join(STRENGTHS)}, or a list of transforms like [{{name: HorizontalFlip}}]"
        )
    if targets not in TARGETS:
        raise ValueError(
            f"augmentation targets must be one of {', '.join(TARGETS)}, got {targets!r}"
        )
    return copy.deepcopy(_BUILDERS[targets](strength))
