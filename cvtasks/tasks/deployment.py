"""The hooks a task gives its deployed forms: exported graphs and test-time augmentation.

:class:`DeploymentHooks` is a base of :class:`~cvtasks.tasks.base.TaskModule`: what
``export`` (raw and decoded outputs, the metrics of ``verify=true``) and ``tta=`` ask of a task,
kept apart from training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torchmetrics import MetricCollection

if TYPE_CHECKING:
    from cvtasks.tta import View as TTAView


class DeploymentHooks:
    """Export and test-time augmentation hooks; a task overrides those its outputs need."""

    def export_outputs(self, outputs: Any) -> dict[str, torch.Tensor]:
        """The outputs of an exported graph by name, from the network's raw ``outputs``.

        Here a head's dict of tensors as it is, a single tensor as ``logits``. A task whose
        raw outputs mean little outside cvtasks overrides it with decoded ones (landmarks'
        points, detection's boxes); the override runs inside the exported graph, so it must
        trace: tensor operations only, no Python branch on tensor values, shapes fixed per
        batch size.
        """
        if isinstance(outputs, Mapping):
            return dict(outputs)
        return {"logits": outputs}

    def decoded_outputs(self, outputs: Any, image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The decoded answers of an exported graph by name (``export decode=true``).

        What :meth:`predict_outputs` answers, in the frame of the network input ``image_size``
        ``(height, width)``: probabilities, class maps, points and boxes in input pixels. Here
        the raw :meth:`export_outputs`; a task overrides it with decoding it shares with
        ``predict_outputs``. It runs inside the exported graph, so it must trace (see
        :meth:`export_outputs`).
        """
        return self.export_outputs(outputs)

    def make_export_metrics(self) -> MetricCollection:
        """Fresh test metrics for :meth:`update_export_metrics` (``export verify=true``)."""
        return self.make_metrics()

    def update_export_metrics(
        self,
        metrics: MetricCollection,
        outputs: Mapping[str, torch.Tensor],
        batch: dict[str, Any],
        decoded: bool,
    ) -> None:
        """Feed an exported graph's named outputs on a test batch into ``metrics``.

        Args:
            metrics: from :meth:`make_export_metrics`.
            outputs: :meth:`decoded_outputs` (``decoded``) or :meth:`export_outputs` of the
                images of ``batch`` (``image``, then ``image_b`` for a batch of pairs).
            batch: the test batch with its targets.
            decoded: which of the two ``outputs`` are.

        Decoded outputs go to :meth:`update_decoded_metrics`; raw ones, rebuilt (``logits``
        alone: the tensor; else the dict), through the task's ``update_metrics``.
        """
        if decoded:
            self.update_decoded_metrics(metrics, outputs, batch)
            return
        raw = outputs["logits"] if list(outputs) == ["logits"] else dict(outputs)
        self.update_metrics(metrics, raw, batch)

    def update_decoded_metrics(
        self, metrics: MetricCollection, outputs: Mapping[str, torch.Tensor], batch: dict[str, Any]
    ) -> None:
        """Feed :meth:`decoded_outputs` of a test batch into ``metrics``.

        Here as raw outputs (the default :meth:`decoded_outputs` is :meth:`export_outputs`); a
        task that overrides :meth:`decoded_outputs` overrides this too.
        """
        self.update_export_metrics(metrics, outputs, batch, decoded=False)

    def tta_merge(self, outputs: list[Any], views: Sequence[TTAView], size: tuple[int, int]) -> Any:
        """One set of raw outputs, in the original frame, from those of augmented views.

        Args:
            outputs: the network's raw outputs for each view, in the order of ``views``.
            views: how each view was made (:class:`cvtasks.tta.View`: mirrored, rescaled); the
                first is the plain image.
            size: ``(H, W)`` of the images before augmentation.

        Returns:
            Raw outputs of the form the network gives, for loss, metrics and predictions.
        """
        raise TypeError(f"{type(self).__name__} merges no test-time augmentation views")
