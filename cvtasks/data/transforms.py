"""Albumentations pipelines built from plain config: a list of ``{"name": ..., **kwargs}``."""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

from cvtasks.data.augment_presets import STRENGTHS, named_augment

# Abstract bases that A exports beside the real transforms; never useful in a config.
_ABSTRACT = frozenset(
    {"BasicTransform", "DualTransform", "ImageOnlyTransform", "BaseCompose", "Transform3D"}
)


@functools.cache
def transform_names() -> tuple[str, ...]:
    """Albumentations transforms and compositions (``OneOf``, ...) that a config may name."""
    return tuple(
        name
        for name, obj in vars(A).items()
        if isinstance(obj, type)
        and issubclass(obj, (A.BasicTransform, A.BaseCompose))
        and name not in _ABSTRACT
        and not name.startswith("_")
    )


def build_pipeline(
    augment: str | Sequence[Mapping[str, Any]] | None,
    image_size: int | Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    *,
    crop_pct: float = 1.0,
    interpolation: str = "bilinear",
    **compose_kwargs: Any,
) -> A.Compose:
    """Build the image pipeline for one split.

    Train: the augmentations in order, then ``Resize``, ``Normalize``, ``ToTensorV2``.
    Eval (``train=False``): ``Resize``, ``Normalize``, ``ToTensorV2`` — ``augment`` is ignored,
    but still checked so that a typo fails however the run starts. A transform that needs an
    output ``size`` and is given none (``RandomResizedCrop``, ``RandomSizedCrop``) gets
    ``image_size``, so a crop follows the size the data is read at.

    Args:
        augment: transform specs, e.g. ``[{"name": "Affine", "scale": [0.9, 1.1], "p": 0.5}]``.
            ``name`` is an albumentations class; the other keys are its keyword arguments.
            Compositions take nested specs: ``{"name": "OneOf", "transforms": [...]}``.
            Or a named strength, ``"light"``, ``"medium"`` or ``"heavy"``: the specs of
            :func:`~cvtasks.data.augment_presets.named_augment` for what the pipeline carries
            (boxes with ``bbox_params``, points with ``keypoint_params``, masks with
            ``mask_interpolation``, else the image alone).
        image_size: output size, an int for square images or ``(height, width)``.
        mean: per-channel mean of pixel values scaled to [0, 1].
        std: per-channel standard deviation, same scale.
        train: whether to include the augmentations.
        crop_pct: evaluation only: below 1, resize to ``image_size / crop_pct`` and take the
            central ``image_size`` (torchvision's and timm's evaluation transform: 0.875 is a
            256 resize and a 224 crop); 1 resizes to ``image_size``.
        interpolation: how ``Resize`` samples: one of :data:`INTERPOLATIONS`.
        **compose_kwargs: forwarded to ``A.Compose`` (``bbox_params``, ``keypoint_params``,
            ``additional_targets``, ...), so tasks with boxes, points or masks reuse this.

    Returns:
        A pipeline called as ``pipeline(image=uint8 HxWx3, ...)`` whose ``"image"`` is a
        ``float32`` tensor ``[C, H, W]`` equal to ``(x / 255 - mean) / std``, ``C`` the length
        of ``mean``: a one-value normalization makes the pipeline convert images to gray.

    Raises:
        ValueError: an unknown transform name (with close matches), a bad value or a bad size.
        TypeError: a keyword the transform does not take.
    """
    height, width = parse_image_size(image_size)
    if isinstance(augment, str):
        augment = named_augment(augment, pipeline_targets(compose_kwargs))
    if augment is not None and (
        isinstance(augment, (Mapping, str)) or not isinstance(augment, Sequence)
    ):
        raise ValueError(
            f"data.augment must be one of {', '.join(STRENGTHS)} or a list of transform specs "
            f"like [{{name: HorizontalFlip}}], got {augment!r}"
        )
    augmentations = [
        _build_one(spec, f"data.augment[{i}]", (height, width))
        for i, spec in enumerate(_plain(augment or []))
    ]
    mean, std = _floats(mean, "data.mean"), _floats(std, "data.std")
    if len(mean) not in (1, 3) or len(std) != len(mean):
        raise ValueError(
            f"data.mean and data.std need 1 value (grayscale) or 3 (RGB) each, alike; got "
            f"{len(mean)} and {len(std)}"
        )
    gray = [A.ToGray(num_output_channels=1, p=1.0)] if len(mean) == 1 else []
    tail = [
        *_resize((height, width), 1.0 if train else crop_pct, interpolation),
        *gray,
        A.Normalize(mean=mean, std=std, max_pixel_value=255.0),
        ToTensorV2(),
    ]
    return A.Compose([*(augmentations if train else []), *tail], **compose_kwargs)


#: ``data.interpolation`` names and their OpenCV flags
INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}


def _resize(size: tuple[int, int], crop_pct: float, interpolation: str) -> list[A.BasicTransform]:
    """``Resize`` to ``size``, or to ``size / crop_pct`` and a centre crop of ``size``."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"data.interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}"
        )
    if isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float)):
        raise ValueError(f"data.crop_pct must be a number in (0, 1], got {crop_pct!r}")
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"data.crop_pct must be in (0, 1], got {crop_pct!r}")
    flag = INTERPOLATIONS[interpolation]
    height, width = size
    if crop_pct == 1.0:
        return [A.Resize(height=height, width=width, interpolation=flag)]
    # timm's eval transform: scale = floor(size / crop_pct), the shorter side for squares
    # (the epsilon keeps torchvision's 240 / (240 / 255) at 255, not 254.99...)
    scaled = (math.floor(height / crop_pct + 1e-6), math.floor(width / crop_pct + 1e-6))
    resize: A.BasicTransform = (
        A.SmallestMaxSize(max_size=scaled[0], interpolation=flag)
        if height == width
        else A.Resize(height=scaled[0], width=scaled[1], interpolation=flag)
    )
    return [resize, A.CenterCrop(height=height, width=width)]


def pipeline_targets(compose_kwargs: Mapping[str, Any]) -> str:
    """What a pipeline carries besides the image, read from its ``A.Compose`` keywords.

    Returns:
        ``"boxes"``, ``"keypoints"``, ``"masks"`` or ``"image"`` (see
        :func:`~cvtasks.data.augment_presets.named_augment`).
    """
    if compose_kwargs.get("bbox_params") is not None:
        return "boxes"
    if compose_kwargs.get("keypoint_params") is not None:
        return "keypoints"
    # segmentation pipelines resize masks with nearest-neighbour interpolation, and only they
    if "mask_interpolation" in compose_kwargs:
        return "masks"
    return "image"


def _build_one(spec: Any, key: str, size: tuple[int, int]) -> A.BasicTransform | A.BaseCompose:
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(
            f"{key} must be a mapping with a 'name' key, e.g. {{name: HorizontalFlip, p: 0.5}}; "
            f"got {spec!r}"
        )
    kwargs = dict(spec)
    name = kwargs.pop("name")
    if name == "ToTensorV2":
        raise ValueError(
            f"{key}.name: ToTensorV2 ends every pipeline already; remove it from data.augment "
            "(transforms after it would receive tensors instead of arrays)."
        )
    cls = getattr(A, name, None) if isinstance(name, str) else None
    if name not in transform_names() or cls is None:
        close = difflib.get_close_matches(str(name), transform_names(), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"{key}.name: {name!r} is not an albumentations transform.{hint} List them with: "
            "python -c 'from cvtasks.data.transforms import transform_names as t; print(*t())'"
        )
    _check_keywords(cls, kwargs, key)
    if "size" not in kwargs and _needs_size(cls):
        kwargs["size"] = size
    if issubclass(cls, A.BaseCompose) and isinstance(kwargs.get("transforms"), list):
        kwargs["transforms"] = [
            _build_one(sub, f"{key}.transforms[{j}]", size)
            for j, sub in enumerate(kwargs["transforms"])
        ]
    # Without strict=True albumentations only warns on a bad value and silently falls back to the
    # defaults for every argument.
    strict = {"strict": True} if _validates_strictly(cls) else {}
    try:
        return cls(**kwargs, **strict)
    except (TypeError, ValueError) as err:
        error = TypeError if isinstance(err, TypeError) else ValueError
        raise error(f"{key} ({name}): invalid arguments {kwargs!r}: {err}") from err


def _check_keywords(cls: type, kwargs: dict[str, Any], key: str) -> None:
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n in params if n != "strict"]
    for kw in kwargs:
        if kw not in accepted:
            close = difflib.get_close_matches(kw, accepted, n=5, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise TypeError(
                f"{key}: {cls.__name__} takes no argument {kw!r}.{hint} "
                f"It takes: {', '.join(accepted)}."
            )


def _needs_size(cls: type) -> bool:
    # a required `size`: the (height, width) that a resizing crop outputs
    param = inspect.signature(cls).parameters.get("size")
    return param is not None and param.default is inspect.Parameter.empty


def _validates_strictly(cls: type) -> bool:
    # albumentations accepts `strict` exactly where the class defining __init__ declares an
    # InitSchema (checked over every transform of 2.0.8); Lambda and compositions do not.
    owner = next(k for k in cls.__mro__ if "__init__" in k.__dict__)
    return "InitSchema" in owner.__dict__


def _plain(obj: Any) -> Any:
    """Turn mappings and sequences (OmegaConf containers included) into dicts and lists.

    albumentations' validators expect built-in types, not ``ListConfig``/``DictConfig``.
    """
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        return [_plain(v) for v in obj]
    return obj


def parse_image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from an int (square) or a pair; anything else raises ``ValueError``."""
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        size = (image_size, image_size)
    elif (
        isinstance(image_size, Sequence)
        and len(image_size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in image_size)
    ):
        size = (image_size[0], image_size[1])
    else:
        raise ValueError(
            f"data.image_size must be an int or [height, width] of ints, got {image_size!r}"
        )
    if min(size) < 1:
        raise ValueError(f"data.image_size must be positive, got {image_size!r}")
    return size


def _floats(values: Sequence[float], key: str) -> tuple[float, ...]:
    try:
        result = tuple(float(v) for v in values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{key} must be a list of numbers, got {values!r}") from err
    if len(result) not in (1, 3):
        raise ValueError(
            f"{key} must have 3 values (one per RGB channel) or 1 (grayscale), got {values!r}"
        )
    if key == "data.std" and min(result) <= 0:
        raise ValueError(f"{key} must be positive, got {values!r}")
    return result
