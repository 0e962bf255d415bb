"""Per-task views of predictions: a JSON record and a picture of one image's result.

Each task registers a :class:`View` under its registry name; a plugin task adds its own with
:func:`register_view`. A task without a view still gets JSON records (tensors become lists) and
its images are copied unchanged as pictures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cvtasks.data.image_masks import write_mask
from cvtasks.viz import draw_box, draw_keypoints, draw_prediction, draw_segmentation
from cvtasks.viz.pairs import draw_pair

#: side in pixels that small images are enlarged towards (nearest neighbour) so drawings read.
TARGET_SIDE = 256


def enlarge_factor(size: tuple[int, int], target: int = TARGET_SIDE) -> int:
    """A whole factor that brings the longer side of ``size`` near ``target`` (at least 1)."""
    return max(1, target // max(1, max(size)))


def jsonable(value: Any) -> Any:
    """``value`` with tensors, arrays and tuples turned into JSON lists and numbers."""
    if isinstance(value, torch.Tensor | np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class RecordContext:
    """Where a record may write side files (e.g. mask PNGs) and what to name them."""

    output: Path
    name: str


def plain_record(result: Mapping[str, Any], ctx: RecordContext) -> dict[str, Any]:
    """The result as JSON values."""
    return jsonable(dict(result))


def plain_picture(image: Image.Image, result: Mapping[str, Any], task: Any) -> Image.Image:
    """The image itself (for tasks without a drawing)."""
    return image.convert("RGB")


@dataclass
class View:
    """How one task's results are written (``record``) and drawn (``picture``)."""

    record: Callable[[Mapping[str, Any], RecordContext], dict[str, Any]] = plain_record
    picture: Callable[[Image.Image, Mapping[str, Any], Any], Image.Image] = plain_picture


VIEWS: dict[str, View] = {}


def register_view(task_name: str, view: View) -> None:
    """Use ``view`` for the results of the task registered as ``task_name``."""
    VIEWS[task_name] = view


def view_for(task_name: str) -> View:
    """The view of ``task_name``; the plain one when the task registered none."""
    return VIEWS.get(task_name, View())


# -- the built-in tasks --------------------------------------------------------------------------
def _classification_picture(
    image: Image.Image, result: Mapping[str, Any], task: Any
) -> Image.Image:
    label = f"{result['class_name']} {float(result['probability']):.2f}"
    return draw_box(image, None, label, scale=enlarge_factor(image.size))


def _localization_picture(image: Image.Image, result: Mapping[str, Any], task: Any) -> Image.Image:
    return draw_prediction(image, result, scale=enlarge_factor(image.size))


def _landmarks_picture(image: Image.Image, result: Mapping[str, Any], task: Any) -> Image.Image:
    scale = enlarge_factor(image.size)
    big = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    points = np.asarray(result["keypoints"], dtype=np.float64) * scale
    return draw_keypoints(big, points, result.get("confidence"), getattr(task, "skeleton", ()))


def _segmentation_record(result: Mapping[str, Any], ctx: RecordContext) -> dict[str, Any]:
    """The class map goes to ``masks/<name>.png`` (palette PNG); the record names it."""
    mask = np.asarray(result["mask"].cpu() if torch.is_tensor(result["mask"]) else result["mask"])
    mask_file = Path("masks") / f"{ctx.name}.png"
    (ctx.output / mask_file).parent.mkdir(parents=True, exist_ok=True)
    write_mask(ctx.output / mask_file, mask.astype(np.uint8))
    counts = np.bincount(mask.reshape(-1), minlength=1)
    record = {k: jsonable(v) for k, v in result.items() if k not in ("mask", "probabilities")}
    record["mask_file"] = mask_file.as_posix()
    record["class_pixels"] = {str(k): int(c) for k, c in enumerate(counts) if c}
    if "probabilities" in result:  # per-class maps are too big for a JSON line: their means
        record["mean_probabilities"] = result["probabilities"].float().mean(dim=(1, 2)).tolist()
    return record


def _segmentation_picture(image: Image.Image, result: Mapping[str, Any], task: Any) -> Image.Image:
    names = getattr(task, "class_names", None)
    return draw_segmentation(image, result["mask"], None, names, scale=enlarge_factor(image.size))


def _siamese_picture(image: Image.Image, result: Mapping[str, Any], task: Any) -> Image.Image:
    """A pair: both images with distance and verdict (``other`` is the second image)."""
    return draw_pair(
        image,
        result["other"],
        float(result["distance"]),
        result.get("threshold"),
        scale=enlarge_factor(image.size, 128),
    )


register_view("classification", View(picture=_classification_picture))
register_view("localization", View(picture=_localization_picture))
register_view("landmarks", View(picture=_landmarks_picture))
register_view("segmentation", View(record=_segmentation_record, picture=_segmentation_picture))
register_view("siamese", View(picture=_siamese_picture))
