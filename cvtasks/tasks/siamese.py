"""Siamese identification: embeddings trained on identities, judged on pairs of unseen people.

Seed 001 (§6.6, "Face Recognition, Siamese Networks, and Triplet Loss"): one network ``f_theta``
with shared parameters embeds both images of a pair (Fig. 6.17); the pair is "same" when the
embeddings are near. Training batches hold P identities x K images (``identity: int64[B]``) and the
loss is the triplet loss of eq. (6.27) over mined triplets, a contrastive loss, or the comparison
network's binary cross-entropy. Evaluation batches hold pairs (``image``, ``image_b``,
``same: int64[B]``) of identities never trained on; the threshold on the distance is chosen on the
validation pairs, stored in the model (buffer ``threshold``, saved in checkpoints) and used by test
and predict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from cvtasks import tta
from cvtasks.heads.embedding import ComparisonNetwork
from cvtasks.losses.metric_learning import (
    DISTANCES,
    build_metric_loss,
    cross_distance,
    pair_distance,
)
from cvtasks.metrics.verification import PairVerification
from cvtasks.registry import TASKS
from cvtasks.tasks.base import TaskModule
from cvtasks.tasks.siamese_report import SiameseReport, SiameseView

SCORES = (*DISTANCES, "comparison")


def gallery_search(
    distances: torch.Tensor, identities: Sequence[Any], k: int = 5
) -> list[list[dict[str, Any]]]:
    """The ``k`` nearest identities of each query, from query-to-gallery distances.

    Args:
        distances: ``[Q, G]`` distances of each query to each gallery embedding.
        identities: the identity of each gallery embedding (``G`` names or ids; an identity may
            have several embeddings).
        k: how many distinct identities to return per query.

    Returns:
        Per query, up to ``k`` dicts ``{"identity", "distance", "index"}``, nearest first; each
        identity appears once, at its nearest gallery embedding (``index``).
    """
    if len(identities) != distances.shape[1]:
        raise ValueError(
            f"{len(identities)} identities for {distances.shape[1]} gallery embeddings"
        )
    results = []
    for row in distances.float().cpu():
        found: list[dict[str, Any]] = []
        seen: set[Any] = set()
        for index in torch.argsort(row, stable=True).tolist():
            if identities[index] not in seen:
                seen.add(identities[index])
                found.append(
                    {"identity": identities[index], "distance": float(row[index]), "index": index}
                )
            if len(found) == k:
                break
        results.append(found)
    return results


@TASKS.register("siamese")
class SiameseTask(TaskModule):
    """Embedding network trained with a metric-learning loss, evaluated on verification pairs.

    Args:
        backbone: backbone module or config (see :class:`TaskModule`).
        head: head config, default ``{"name": "embedding", "embedding_dim": 128}``.
        loss: ``"triplet"`` (eq. 6.27 on mined triplets), ``"contrastive"`` or ``"comparison"``
            (the comparison network's binary cross-entropy).
        margin: the triplet loss's alpha (squared distances) or the contrastive margin;
            ``None``: 0.2 or 0.5.
        mining: the triplet loss's mining, ``"semi_hard"`` or ``"batch_hard"`` (which collapsed
            LeNet-5's embeddings to one point on the built-in faces: loss stuck at the margin).
        distance: how pairs are scored: ``"cosine"`` (the seed's production choice),
            ``"euclidean"``, or ``"comparison"`` (``1 - f_c``'s probability of "same"; needs
            ``loss=comparison``).
        far: false accept rate of the TAR metric (``tar@far1e-2`` for 0.01).
        folds: folds of the validation accuracy (LFW protocol; the threshold stored for test and
            predict is chosen on all validation pairs).
        **kwargs: optimizer, scheduler, compile, channels_last (see :class:`TaskModule`).
    """

    monitor = "val/auc"
    monitor_mode = "max"
    view = SiameseView
    report = SiameseReport
    target_kind = "identity"
    tta_modes = ("flip",)

    def __init__(
        self,
        backbone: nn.Module | Mapping[str, Any],
        head: Mapping[str, Any] | None = None,
        loss: str = "triplet",
        margin: float | None = None,
        mining: str = "semi_hard",
        distance: str = "cosine",
        far: float = 1e-2,
        folds: int = 10,
        **kwargs: Any,
    ) -> None:
        if distance not in SCORES:
            raise ValueError(f"task.distance must be one of {SCORES}; got {distance!r}")
        if distance == "comparison" and loss != "comparison":
            raise ValueError(
                "task.distance=comparison scores pairs with the comparison network, which only "
                "task.loss=comparison trains; use distance=cosine or euclidean otherwise."
            )
        self.distance, self.far, self.folds = distance, float(far), int(folds)
        super().__init__(backbone, head or {"name": "embedding"}, **kwargs)
        self.save_hyperparameters(ignore=["backbone"] if isinstance(backbone, nn.Module) else None)
        dim = int(getattr(self.head, "embedding_dim", 0))
        self.comparison = ComparisonNetwork(dim) if loss == "comparison" else None
        self.loss_fn = build_metric_loss(loss, margin, mining, comparison=self.comparison)
        # Training batches are identities, not pairs: they log the loss only.
        self.train_metrics = MetricCollection({}, prefix="train/")
        #: distance at or below which a pair is "same"; chosen on the validation pairs.
        self.register_buffer("threshold", torch.tensor(math.nan))

    # -- TaskModule's parts --------------------------------------------------------------------
    def make_metrics(self) -> MetricCollection:
        """Pair verification: accuracy, ROC AUC, TAR@FAR and the threshold."""
        return MetricCollection({"pairs": PairVerification(far=self.far, folds=self.folds)})

    def compute_loss(self, outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The configured metric-learning loss of the batch's embeddings and identities."""
        return self.loss_fn(outputs.float(), batch["identity"])

    def update_metrics(
        self, metrics: MetricCollection, outputs: torch.Tensor, batch: dict[str, Any]
    ) -> None:
        """Pair metrics come from :meth:`validation_step` / :meth:`test_step`, not from here."""

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """The network's groups, plus the comparison network (without weight decay) if any."""
        groups = super().parameter_groups(weight_decay)
        if self.comparison is not None:
            groups.append({"params": list(self.comparison.parameters()), "weight_decay": 0.0})
        return groups

    def export_outputs(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The ``embedding`` ``[N, D]`` of each image."""
        return {"embedding": outputs}

    def decoded_outputs(
        self, outputs: torch.Tensor, image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """The ``embedding`` ``[N, D]`` of each image scaled to unit length (the embedding head
        gives it so already, unless built with ``normalize=false``)."""
        return {"embedding": F.normalize(outputs.float(), dim=1)}

    def update_export_metrics(
        self,
        metrics: MetricCollection,
        outputs: Mapping[str, torch.Tensor],
        batch: dict[str, Any],
        decoded: bool,
    ) -> None:
        """Pair verification from the embeddings of ``image`` and ``image_b`` (a pair batch)."""
        if "image_b" not in batch:
            return
        n = batch["image"].shape[0]
        embeddings = outputs["embedding"].float()
        metrics.update(self.score(embeddings[:n], embeddings[n:]), batch["same"])

    def tta_merge(
        self, outputs: list[torch.Tensor], views: Sequence[tta.View], size: tuple[int, int]
    ) -> torch.Tensor:
        """The mean of the views' embeddings, scaled back to unit length when the head gives
        unit-length embeddings (as distances and the stored threshold expect)."""
        mean = torch.stack([o.float() for o in outputs]).mean(dim=0)
        return F.normalize(mean, dim=1) if getattr(self.head, "normalize", False) else mean

    # -- pairs ---------------------------------------------------------------------------------
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[B, D]`` of normalized images ``[B, 3, H, W]``."""
        return self(images).float()

    def score(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distances ``[N]`` of embedding pairs under ``task.distance`` (larger: less alike)."""
        if self.distance == "comparison":
            return 1.0 - self.comparison.probability(a, b)
        return pair_distance(a, b, self.distance)

    def cross_score(self, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        """Distances ``[Q, G]`` of every query embedding to every gallery embedding."""
        if self.distance == "comparison":
            return 1.0 - self.comparison.probability(query[:, None], gallery[None])
        return cross_distance(query, gallery, self.distance)

    def _pair_step(self, batch: dict[str, Any], split: str) -> None:
        self.log_skipped(batch, split)
        if batch["image"].shape[0] == 0:  # every pair of the batch had an unreadable image
            return
        n = batch["image"].shape[0]
        both = self.embed(torch.cat([batch["image"], batch["image_b"]]))  # one shared f_theta
        metrics = self.val_metrics if split == "val" else self.test_metrics
        metrics.update(self.score(both[:n], both[n:]), batch["same"])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Distances of a batch of validation pairs into the validation metrics."""
        self._pair_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Distances of a batch of test pairs into the test metrics."""
        self._pair_step(batch, "test")

    def _log_pairs(self, metrics: MetricCollection) -> dict[str, float]:
        if not metrics["pairs"].update_called:
            return {}
        values = metrics.compute()  # synced across processes by torchmetrics
        metrics.reset()
        # equal on every process already; sync_dist only averages equal values (and keeps
        # Lightning from warning about unsynced epoch-level logs under DDP)
        self.log_dict(values, prog_bar=True, sync_dist=True)
        return {key: float(value) for key, value in values.items()}

    def on_validation_epoch_end(self) -> None:
        """Log the validation metrics and keep their best threshold for test and predict."""
        values = self._log_pairs(self.val_metrics)
        if values and not self.trainer.sanity_checking:
            self.threshold.fill_(values["val/threshold"])

    def on_test_epoch_start(self) -> None:
        """Test at the threshold chosen on validation (a model never validated tests k-fold)."""
        threshold = float(self.threshold)
        self.test_metrics["pairs"].threshold = threshold if math.isfinite(threshold) else None

    def on_test_epoch_end(self) -> None:
        """Log the test metrics and report the threshold and distance used."""
        values = self._log_pairs(self.test_metrics)
        if values:
            self.test_reports["verification"] = {
                "distance": self.distance,
                "threshold": values["test/threshold"],
                "threshold_from": "val" if math.isfinite(float(self.threshold)) else "test k-fold",
            }

    # -- predict -------------------------------------------------------------------------------
    def predict_outputs(self, outputs: torch.Tensor, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per image its ``embedding``; for a pair batch also ``distance`` and ``same``.

        ``same`` compares the distance with the stored ``threshold`` (``None`` before the model
        was validated).
        """
        embeddings = outputs.detach().float()
        results: list[dict[str, Any]] = [{"embedding": e.tolist()} for e in embeddings]
        if "image_b" in batch:
            other = self.embed(batch["image_b"]).detach()
            distances = self.score(embeddings, other)
            threshold = float(self.threshold)
            for k, result in enumerate(results):
                d = float(distances[k])
                result["embedding_b"] = other[k].tolist()
                result["distance"] = d
                result["same"] = (d <= threshold) if math.isfinite(threshold) else None
                result["threshold"] = threshold if math.isfinite(threshold) else None
        for key in ("path", "path_b"):
            for result, value in zip(results, batch.get(key, ())):
                result[key] = str(value)
        return results

    @torch.inference_mode()
    def search(
        self,
        images: torch.Tensor,
        gallery: torch.Tensor,
        identities: Sequence[Any],
        k: int = 5,
    ) -> list[list[dict[str, Any]]]:
        """The ``k`` nearest gallery identities of each query image (see :func:`gallery_search`).

        Args:
            images: normalized query images ``[Q, 3, H, W]``.
            gallery: gallery embeddings ``[G, D]`` (from :meth:`embed`).
            identities: the identity of each gallery embedding.
            k: identities per query.

        Returns:
            Per query, the nearest identities with distances; each also says ``same`` — whether
            it is within the stored threshold (``None`` before validation).
        """
        found = gallery_search(self.cross_score(self.embed(images), gallery), identities, k)
        threshold = float(self.threshold)
        for hits in found:
            for hit in hits:
                hit["same"] = hit["distance"] <= threshold if math.isfinite(threshold) else None
        return found
