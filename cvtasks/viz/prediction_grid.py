"""A grid of validation predictions drawn into TensorBoard once per epoch.

:class:`PredictionGrid` takes the first validation batch of each epoch, runs the task on its
first ``max_images`` images, turns the outputs into the task's per-image predictions
(``predict_outputs``, in pixels of the network input) and draws each one with the pictures of
:mod:`cvtasks.viz`, next to the truth where the batch has it:

* a class (``class_name``): the predicted class and probability, and the true class; the tag is
  green when they agree and red when not;
* a box (``box``): the predicted box in red, the true box in green (:func:`draw_prediction`);
* points (``keypoints``): the predicted points, rings where the confidence is low;
* a mask (``mask``): image, prediction and truth side by side (:func:`draw_segmentation`);
* a pair (``distance``, siamese pair batches): both images, the distance and the verdict, framed
  green or red against the truth ``same`` (:func:`draw_pair`).

Tasks whose predictions hold none of these (siamese embeddings of single images) add no image.
The callback does nothing unless a TensorBoard logger is attached (``logger=tensorboard``), and
only rank zero draws, from its own share of the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import TensorBoardLogger

from cvtasks.viz.boxes import PREDICTION_COLOUR, TRUTH_COLOUR, draw_box, draw_prediction
from cvtasks.viz.keypoints import draw_keypoints
from cvtasks.viz.masks import draw_segmentation
from cvtasks.viz.pairs import draw_pair, to_picture

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: pictures of small inputs are enlarged (nearest neighbour) towards this side so labels read.
CELL_SIDE = 128


def tensorboard_writer(trainer: pl.Trainer) -> Any | None:
    """The ``SummaryWriter`` of the trainer's first TensorBoard logger, or ``None``."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def _xyxy_pixels(box: torch.Tensor, width: int, height: int) -> list[float]:
    """A normalized ``(cx, cy, w, h)`` box as ``[x0, y0, x1, y1]`` pixels."""
    cx, cy, w, h = (float(v) for v in box)
    return [
        (cx - w / 2) * width,
        (cy - h / 2) * height,
        (cx + w / 2) * width,
        (cy + h / 2) * height,
    ]


def draw_one(
    picture: Image.Image,
    result: Mapping[str, Any],
    truth: Mapping[str, Any],
    task: pl.LightningModule,
    other: Image.Image | None = None,
) -> Image.Image | None:
    """One prediction (and its truth) drawn on its input picture; ``None`` if nothing to draw.

    Args:
        picture: the network input as an RGB picture (predictions are in its pixels).
        result: one entry of ``task.predict_outputs``.
        truth: this image's slice of the batch (``label``, ``box``, ``mask``, ... when present).
        task: the task module (for ``class_names``, ``label_names``, ``skeleton``).
        other: the second image of a pair, for pair predictions.
    """
    scale = max(1, CELL_SIDE // max(picture.size))
    if "distance" in result and other is not None:
        same = bool(truth["same"]) if "same" in truth else None
        threshold = result.get("threshold")
        return draw_pair(picture, other, float(result["distance"]), threshold, same, scale=scale)
    if "mask" in result:
        mask = truth.get("mask")
        names = getattr(task, "class_names", None)
        return draw_segmentation(picture, result["mask"], mask, names, scale=scale)
    if "keypoints" in result:
        size = (picture.width * scale, picture.height * scale)
        big = picture.resize(size, Image.Resampling.NEAREST)
        points = np.asarray(result["keypoints"], dtype=np.float64) * scale
        return draw_keypoints(big, points, result.get("confidence"), getattr(task, "skeleton", ()))
    if "box" in result:
        true_box = truth.get("box")
        label = int(truth["label"]) if "label" in truth else None
        boxed = label is not None and label > 0 and true_box is not None
        known = {"box": _xyxy_pixels(true_box, *picture.size) if boxed else None}
        return draw_prediction(picture, result, known if label is not None else None, scale=scale)
    if "class_name" in result:
        text = f"{result['class_name']} {float(result['probability']):.2f}"
        names = getattr(task, "class_names", None)
        right = True
        if "label" in truth:
            right = int(truth["label"]) == int(result["label"])
            text += f" | {names[int(truth['label'])] if names else int(truth['label'])}"
        colour = TRUTH_COLOUR if right else PREDICTION_COLOUR
        return draw_box(picture, None, text, colour=colour, scale=scale)
    return None


def tile(pictures: Sequence[Image.Image], columns: int) -> Image.Image:
    """Pictures in a grid of ``columns``, each in a cell the size of the largest, on white."""
    if not pictures:
        raise ValueError("no pictures to tile")
    columns = max(1, min(columns, len(pictures)))
    rows = -(-len(pictures) // columns)
    cell_w = max(p.width for p in pictures) + 2
    cell_h = max(p.height for p in pictures) + 2
    grid = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    for i, picture in enumerate(pictures):
        grid.paste(picture, ((i % columns) * cell_w + 1, (i // columns) * cell_h + 1))
    return grid


def _truths(batch: Mapping[str, Any], count: int) -> list[dict[str, Any]]:
    """Per image, the batch's tensors of that image (targets such as ``label``, ``mask``)."""
    keys = [k for k, v in batch.items() if torch.is_tensor(v) and v.ndim and k != "image"]
    return [{k: batch[k][i].cpu() for k in keys if batch[k].shape[0] > i} for i in range(count)]


class PredictionGrid(pl.Callback):
    """Draws a grid of validation predictions into TensorBoard each epoch (see module doc).

    Args:
        max_images: images taken from the first validation batch.
        columns: pictures per row.
        tag: the TensorBoard image tag.
    """

    def __init__(
        self, max_images: int = 16, columns: int = 4, tag: str = "val/predictions"
    ) -> None:
        if max_images < 1 or columns < 1:
            raise ValueError(f"max_images and columns must be >= 1, got {max_images}, {columns}")
        self.max_images, self.columns, self.tag = max_images, columns, tag

    def draw(
        self,
        task: pl.LightningModule,
        batch: Mapping[str, Any],
        mean: Sequence[float],
        std: Sequence[float],
    ) -> Image.Image | None:
        """The grid for one batch, or ``None`` when the task's predictions have no picture."""
        # only the images (and a pair's second images): without orig_size/offset the
        # predictions come back in pixels of the network input, which is what is drawn
        inputs = {k: batch[k][: self.max_images] for k in ("image", "image_b") if k in batch}
        with torch.no_grad():
            results = task.predict_outputs(task(inputs["image"]), inputs)
        count = len(results)
        pictures = [to_picture(x, mean, std) for x in inputs["image"]]
        others = [to_picture(x, mean, std) for x in inputs.get("image_b", ())]
        others += [None] * (count - len(others))
        drawn = [
            draw_one(picture, result, truth, task, other)
            for picture, result, truth, other in zip(
                pictures, results, _truths(batch, count), others
            )
        ]
        drawn = [d for d in drawn if d is not None]
        return tile(drawn, self.columns) if drawn else None

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Draw the first batch of the epoch's first validation loader (not in sanity checks)."""
        if batch_idx or dataloader_idx or trainer.sanity_checking or not trainer.is_global_zero:
            return
        writer = tensorboard_writer(trainer)
        if writer is None or not isinstance(batch, Mapping) or "image" not in batch:
            return
        data = trainer.datamodule
        mean = getattr(data, "mean", IMAGENET_MEAN)
        std = getattr(data, "std", IMAGENET_STD)
        grid = self.draw(pl_module, batch, mean, std)
        if grid is not None:
            writer.add_image(self.tag, np.asarray(grid), trainer.global_step, dataformats="HWC")
