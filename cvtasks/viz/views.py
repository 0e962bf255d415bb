"""How a task's results are shown to people: a JSON record and a picture of one image's result.

A task names its view in its class (``view = SegmentationView`` on the
:class:`~cvtasks.tasks.base.TaskModule` subclass), so ``python -m cvtasks predict`` and the
worst-sample grid of ``evaluate`` find it through the task the registry built, plugin tasks
included. The base :class:`View` is what a task without its own view gets: its results as JSON
values and no picture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

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


class View:
    """How one task's results are written (:meth:`record`) and drawn (:meth:`picture`).

    Subclass it beside a task and override either method; the task module it is built with
    (``self.task``) supplies names such as ``class_names`` or ``skeleton``.

    Args:
        task: the task module whose results are shown.
    """

    def __init__(self, task: Any) -> None:
        self.task = task

    def record(self, result: Mapping[str, Any], ctx: RecordContext) -> dict[str, Any]:
        """One line of ``predictions.jsonl``: here the result as JSON values.

        Args:
            result: one image's entry of the task's ``predict_outputs``.
            ctx: the output folder and the image's unique name, for side files.
        """
        return jsonable(dict(result))

    def picture(self, image: Image.Image, result: Mapping[str, Any]) -> Image.Image | None:
        """The result drawn on its image (in the image's pixels); ``None``: no picture."""
        return None


def view_for(task: Any) -> View:
    """The view the task declares (its class attribute ``view``), built for ``task``; the plain
    :class:`View` for a task that declares none."""
    return getattr(task, "view", View)(task)
