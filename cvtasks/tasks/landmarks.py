"""Landmark detection: ``K`` named points per image (eyes, nose, mouth corners, joints, ...).

Seed 001 §6.6 (Fig 6.16 (c)): the output is "a list of coordinates of the locations of landmarks",
handled in the spirit of localization: a head on the backbone's features and a regression loss on
the coordinates. The head is either direct regression or heatmaps decoded by soft-argmax
(:mod:`cvtasks.heads.landmarks`); the loss is MSE, L1 or wing on the decoded points, plus MSE to
Gaussian heatmaps for the heatmap head (or a visibility cross-entropy for the regression head's
confidence) (:mod:`cvtasks.losses.landmarks`). Metrics are NME and PCK@alpha
(:mod:`cvtasks.metrics.landmarks`), measured in pixels of the image before resizing
(``batch["orig_size"]``) so that anisotropic resizes do not bend them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import MetricCollection

from cvtasks import tta
from cvtasks.losses.landmarks import POINT_LOSSES, heatmap_loss, point_loss, visibility_loss
from cvtasks.metrics.landmarks import NME, PCK, landmark_normalizer
from cvtasks.registry import TASKS
from cvtasks.tasks.base import TaskModule
from cvtasks.tasks.landmarks_report import LandmarksReport, LandmarksView

DEFAULT_HEAD: dict[str, Any] = {"name": "keypoint_heatmap"}
DEFAULT_LOSS: dict[str, Any] = {
    "points": "l1",  # loss on the decoded points, in pixels of the network input
    "points_weight": 1.0,
    "heatmap_weight": 100.0,  # heatmap head: MSE to Gaussians of std `sigma` heatmap cells
    "sigma": 2.0,
    "visibility_weight": 0.1,  # regression head: cross-entropy of the confidence logits
    "wing_width": 10.0,
    "wing_curvature": 2.0,
}


@TASKS.register("landmarks")
class LandmarksTask(TaskModule):
    """``K`` points per image with a per-point confidence.

    Args:
        backbone: backbone module or config (see :class:`TaskModule`).
        num_keypoints: ``K`` (from the dataset).
        head: ``{"name": "keypoint_heatmap" | "keypoint_regression", ...}``.
        loss: keys of :data:`DEFAULT_LOSS`: ``points`` (mse | l1 | wing | None) and its weight,
            ``heatmap_weight`` and ``sigma`` (heatmap head), ``visibility_weight`` (regression
            head), ``wing_width`` / ``wing_curvature``.
        keypoint_names: names of the points (from the dataset), for predictions and for NME.
        skeleton: index pairs of points joined in drawings (from the dataset).
        eye_points: the two point names NME divides by the distance of (when the dataset has
            both); otherwise NME and PCK divide by the diagonal of the object's box.
        pck_alpha: PCK threshold as a share of that normalizer.
        flip_pairs: ``(left, right)`` index pairs of points that trade places in a mirror
            image (from the dataset, as its flip augmentation swaps them); ``None``: the pairs
            of names equal but for ``left``/``right``. Test-time flips swap them back.
        **kwargs: optimizer, scheduler, compile, channels_last (see :class:`TaskModule`).
    """

    monitor = "val/nme"
    monitor_mode = "min"
    view = LandmarksView
    report = LandmarksReport
    target_kind = "keypoints"
    tta_modes = ("flip",)

    def __init__(
        self,
        backbone: nn.Module | Mapping[str, Any],
        num_keypoints: int | None = None,
        head: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        keypoint_names: Sequence[str] | None = None,
        skeleton: Sequence[Sequence[int]] | None = None,
        eye_points: Sequence[str] = ("left_eye", "right_eye"),
        pck_alpha: float = 0.1,
        flip_pairs: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> None:
        if num_keypoints is None:
            raise ValueError(
                "task=landmarks needs a keypoint dataset (data=synthetic_faces or "
                "data=coco_keypoints): the data module gives no num_keypoints"
            )
        if keypoint_names is not None and len(keypoint_names) != num_keypoints:
            raise ValueError(f"{len(keypoint_names)} keypoint names for {num_keypoints} points")
        if not pck_alpha > 0:
            raise ValueError(f"task.pck_alpha must be > 0, got {pck_alpha}")
        self.num_keypoints = int(num_keypoints)
        self.pck_alpha = float(pck_alpha)
        head = dict(head or DEFAULT_HEAD)
        super().__init__(backbone, head, head_kwargs={"num_keypoints": num_keypoints}, **kwargs)
        self.save_hyperparameters(ignore=["backbone"] if isinstance(backbone, nn.Module) else None)
        self.keypoint_names = (
            list(keypoint_names) if keypoint_names else [str(i) for i in range(num_keypoints)]
        )
        self.skeleton = [tuple(int(i) for i in pair) for pair in skeleton or []]
        if flip_pairs is None:
            flip_pairs = pairs_by_name(self.keypoint_names)
        self.flip_pairs = tta.check_flip_pairs(flip_pairs, self.num_keypoints)
        eyes = list(eye_points)
        found = len(eyes) == 2 and all(n in self.keypoint_names for n in eyes)
        self.eyes = tuple(self.keypoint_names.index(n) for n in eyes) if found else None
        self.loss_cfg = {**DEFAULT_LOSS, **dict(loss or {})}
        unknown = sorted(set(self.loss_cfg) - set(DEFAULT_LOSS))
        if unknown:
            raise ValueError(f"task.loss has unknown keys {unknown}; it takes {list(DEFAULT_LOSS)}")
        points = self.loss_cfg["points"]
        if points is not None and points not in POINT_LOSSES:
            raise ValueError(
                f"task.loss.points must be one of {', '.join(POINT_LOSSES)} or null, got {points!r}"
            )

    def make_metrics(self) -> MetricCollection:
        """NME and PCK@``pck_alpha`` (logged as ``nme`` and ``pck``)."""
        return MetricCollection({"nme": NME(), "pck": PCK(alpha=self.pck_alpha)})

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _input_scale(batch: Mapping[str, Any]) -> torch.Tensor:
        """``(width, height)`` of the network input, to turn normalized points into its pixels."""
        image = batch["image"]
        height, width = image.shape[-2:]
        # Filled on the device. A tensor made from Python numbers (torch.tensor, new_tensor, or
        # scale[1] = height) is a blocking host-to-device copy in every step.
        width_t, height_t = (
            image.new_full((1,), float(n), dtype=torch.float32) for n in (width, height)
        )
        return torch.cat([width_t, height_t])

    @staticmethod
    def _original_scale(batch: Mapping[str, Any]) -> torch.Tensor:
        """Per image ``[B, 1, 2]`` ``(width, height)`` of the frame before resizing."""
        if "orig_size" in batch:
            return batch["orig_size"].flip(-1).float()[:, None, :]
        return LandmarksTask._input_scale(batch).expand(batch["image"].shape[0], 1, 2)

    # -- TaskModule ------------------------------------------------------------------------------
    def compute_loss(
        self, outputs: Mapping[str, torch.Tensor], batch: dict[str, Any]
    ) -> torch.Tensor:
        """Point loss on the decoded points plus the head's own term (heatmaps or visibility)."""
        cfg = self.loss_cfg
        target, visible = batch["keypoints"].float(), batch["visible"].bool()
        pred, _ = self.head.decode(outputs)
        terms = []
        if cfg["points"] is not None and cfg["points_weight"] > 0:
            scale = self._input_scale(batch)
            points = point_loss(
                pred * scale,
                target * scale,
                visible,
                cfg["points"],
                cfg["wing_width"],
                cfg["wing_curvature"],
            )
            terms.append(cfg["points_weight"] * points)
        if "heatmaps" in outputs and cfg["heatmap_weight"] > 0:
            maps = heatmap_loss(outputs["heatmaps"], target, visible, cfg["sigma"])
            terms.append(cfg["heatmap_weight"] * maps)
        if not terms:
            raise ValueError(
                "task.loss leaves the point positions without a loss: set task.loss.points to "
                f"one of {', '.join(POINT_LOSSES)} (or heatmap_weight > 0 with a heatmap head)"
            )
        if "visibility" in outputs and cfg["visibility_weight"] > 0:
            terms.append(cfg["visibility_weight"] * visibility_loss(outputs["visibility"], visible))
        return torch.stack(terms).sum()

    def points_in_pixels(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predicted and true points in pixels of the original frame, as NME measures them.

        Returns:
            ``(pred [B, K, 2], target [B, K, 2], visible [B, K], normalizer [B])``; the
            normalizer is the inter-ocular distance or the box size (``landmark_normalizer``).
        """
        pred, _ = self.decode_points(outputs, self._original_scale(batch))
        return self._with_truth(pred, batch)

    def _with_truth(
        self, pred: torch.Tensor, batch: Mapping[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``pred`` (pixels of the original frame) and the truth in the same pixels."""
        scale = self._original_scale(batch)
        target, visible = batch["keypoints"].float() * scale, batch["visible"].bool()
        box = batch["box"][:, 2:].float() * scale[:, 0] if "box" in batch else None
        norm = landmark_normalizer(target, visible, box, self.eyes)
        return pred, target, visible, norm

    def decode_points(
        self, outputs: Mapping[str, torch.Tensor], scale: torch.Tensor | Sequence[float]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Points ``[N, K, 2]`` in pixels of a frame ``scale`` = ``(width, height)`` wide
        (``[2]`` or per image ``[N, 1, 2]``) and their confidence ``[N, K]``. Traceable."""
        pred, confidence = self.head.decode(outputs)
        scale = torch.as_tensor(scale, dtype=torch.float32, device=pred.device)
        return pred.float() * scale, confidence.float()

    def update_metrics(
        self, metrics: MetricCollection, outputs: Mapping[str, torch.Tensor], batch: dict[str, Any]
    ) -> None:
        """NME and PCK in pixels of the original frame."""
        pred, target, visible, norm = self.points_in_pixels(outputs, batch)
        metrics.update(pred.detach(), target, visible, norm)

    def tta_merge(
        self,
        outputs: list[Mapping[str, torch.Tensor]],
        views: Sequence[tta.View],
        size: tuple[int, int],
    ) -> dict[str, torch.Tensor]:
        """The views' head outputs in the original frame, averaged.

        A mirrored view's ``heatmaps`` are mirrored back (cell ``j`` stands for
        ``(j + 0.5) / w``, so the mirror of a map is exact) and its ``keypoints`` become
        ``1 - x``; either way each point of a :attr:`flip_pairs` pair takes the place of the
        other (the left eye of a mirror image is the right eye of the original). Heatmaps and
        points are averaged, ``visibility`` as probabilities.
        """
        order = tta.flip_permutation(self.num_keypoints, self.flip_pairs)
        unflipped = [_unflip(o, order) if view.flip else o for o, view in zip(outputs, views)]
        merged = {}
        for key in outputs[0]:
            if key == "visibility":
                probs = tta.mean_probabilities([o[key].float().sigmoid() for o in unflipped])
                merged[key] = tta.sigmoid_logits(probs)
            else:
                merged[key] = torch.stack([o[key].float() for o in unflipped]).mean(dim=0)
        return merged

    def decoded_outputs(
        self, outputs: Mapping[str, torch.Tensor], image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """``keypoints [N, K, 2]`` (x, y in pixels of the input) and ``confidence [N, K]``."""
        height, width = image_size
        keypoints, confidence = self.decode_points(outputs, (float(width), float(height)))
        return {"keypoints": keypoints, "confidence": confidence}

    def update_decoded_metrics(
        self, metrics: MetricCollection, outputs: Mapping[str, torch.Tensor], batch: dict[str, Any]
    ) -> None:
        """NME and PCK of the decoded points, taken from input pixels to the original frame's."""
        unit = outputs["keypoints"].float() / self._input_scale(batch)
        metrics.update(*self._with_truth(unit * self._original_scale(batch), batch))

    def predict_outputs(
        self, outputs: Mapping[str, torch.Tensor], batch: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Per image: ``keypoints`` ``[[x, y], ...]`` in pixels of the image file, ``confidence``.

        Points are continuous positions (the image spans ``[0, width] x [0, height]``), moved
        by ``batch["offset"]`` when the sample was a crop.
        """
        points, confidence = self.decode_points(outputs, self._original_scale(batch))
        points = points.detach()
        if "offset" in batch:
            points = points + batch["offset"].float()[:, None, :]
        results = []
        for k in range(points.shape[0]):
            result: dict[str, Any] = {
                "keypoints": points[k].tolist(),
                "confidence": confidence[k].detach().float().tolist(),
                "keypoint_names": self.keypoint_names,
            }
            if "path" in batch:
                result["path"] = str(batch["path"][k])
            results.append(result)
        return results


def pairs_by_name(names: Sequence[str]) -> list[tuple[int, int]]:
    """``(left, right)`` index pairs of names equal but for ``left``/``right`` (any case): the
    data readers' rule for keypoint files that name no flip pairs."""
    lower = [n.lower() for n in names]
    return [
        (i, lower.index(name.replace("left", "right")))
        for i, name in enumerate(lower)
        if "left" in name and name.replace("left", "right") in lower
    ]


def _unflip(outputs: Mapping[str, torch.Tensor], order: list[int]) -> dict[str, torch.Tensor]:
    """A mirrored view's head outputs in the original frame, points in the original's order."""
    unflipped = {}
    for key, value in outputs.items():
        value = value.float()
        if key == "heatmaps":  # [B, K, h, w]
            unflipped[key] = value.flip(-1)[:, order]
        elif key == "keypoints":  # [B, K, 2] normalized (x, y)
            value = value[:, order]
            unflipped[key] = torch.stack([1.0 - value[..., 0], value[..., 1]], dim=-1)
        elif key == "visibility":  # [B, K]
            unflipped[key] = value[:, order]
        else:
            raise ValueError(
                f"tta=flip: the landmarks head's output {key!r} has no known mirror image "
                "(known: heatmaps, keypoints, visibility); use tta=null"
            )
    return unflipped
