"""The inference path: a trained task made ready to predict, fast and with unchanged results.

:class:`Predictor` takes a trained :class:`~cvtasks.tasks.base.TaskModule`, works on a copy of it
(the training module is left as it was), folds every BatchNorm into the convolution before it
(:func:`~cvtasks.layers.fuse.fuse_batchnorm`), switches to ``eval()`` with gradients off, and runs
under ``torch.inference_mode()``. On a GPU it computes in bfloat16 autocast on channels-last
tensors (NHWC: what tensor-core convolutions read) and, when asked, compiles the network with
``torch.compile`` (``mode="reduce-overhead"``: CUDA graphs). With ``tta`` it runs the network
on augmented views of each batch and merges them (:mod:`cvtasks.tta`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from cvtasks import tta as test_time
from cvtasks.layers.fuse import fuse_batchnorm
from cvtasks.tasks.base import TaskModule
from cvtasks.training.speed import check_switch, resolve

PRECISIONS = ("auto", "32", "bf16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the first CUDA device when there is one, else the CPU; otherwise as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def optimize_network(
    net: nn.Module,
    device: torch.device,
    compile: bool | str = False,
    channels_last: bool = False,
) -> nn.Module:
    """``net`` with BatchNorm folded, in eval mode without gradients, on ``device``; compiled.

    Args:
        net: the network; folded in place, so pass a copy you may change.
        device: where it runs.
        compile: ``False``; ``True`` (``mode="reduce-overhead"`` on a GPU, the default mode on
            a CPU); or a ``torch.compile`` mode name.
        channels_last: keep the weights in channels-last memory format.

    Returns:
        The network, or its ``torch.compile`` wrapper.
    """
    net = fuse_batchnorm(net, inplace=True).eval().requires_grad_(False).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if compile:
        mode = compile if isinstance(compile, str) else None
        if compile is True and device.type == "cuda":
            mode = "reduce-overhead"
        net = torch.compile(net, mode=mode)
    return net


def count_batchnorms(module: nn.Module) -> int:
    """How many BatchNorm layers ``module`` still holds (0 after folding a conv-BN network)."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class Predictor:
    """Runs a trained task on batches of normalized images.

    Args:
        task: the trained task module (not changed; the predictor keeps a folded copy).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        compile: ``torch.compile`` the network (see :func:`optimize_network`).
        precision: ``"auto"`` (bfloat16 on a GPU, float32 on a CPU), ``"32"`` or ``"bf16"``.
        channels_last: weights and images in channels-last memory format; ``"auto"``: on a GPU.
        tta: test-time augmentation, ``"flip"`` or ``"flip_scale"`` (:mod:`cvtasks.tta`);
            ``None``: none (but a task already under one keeps it). :attr:`tta` holds the one
            that runs.
    """

    def __init__(
        self,
        task: TaskModule,
        device: str | torch.device = "auto",
        compile: bool | str = False,
        precision: str = "auto",
        channels_last: bool | str = "auto",
        tta: str | None = None,
    ) -> None:
        if str(precision) not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.device = resolve_device(device)
        self.task = copy.deepcopy(task).eval().requires_grad_(False).to(self.device)
        nhwc = bool(resolve(check_switch("channels_last", channels_last), self.device))
        self.task.channels_last = nhwc  # TaskModule.forward converts the images to match
        self.task.net = optimize_network(self.task.net, self.device, compile, nhwc)
        self.tta = test_time.apply(self.task, tta)  # around the optimized network
        precision = str(precision)
        use_bf16 = precision == "bf16" or (precision == "auto" and self.device.type == "cuda")
        self.dtype: torch.dtype | None = torch.bfloat16 if use_bf16 else None

    @contextlib.contextmanager
    def _mode(self) -> Iterator[None]:
        with torch.inference_mode():
            if self.dtype is None:
                yield
            else:
                with torch.autocast(self.device.type, dtype=self.dtype):
                    yield

    def _to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return {
            key: value.to(self.device, non_blocking=True) if torch.is_tensor(value) else value
            for key, value in batch.items()
        }

    def forward(self, images: torch.Tensor) -> Any:
        """Raw outputs of the task network (logits, boxes, heatmaps, ...) for ``images``."""
        with self._mode():
            return self.task(images.to(self.device, non_blocking=True))

    def predict(self, batch: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The task's per-image predictions (``predict_outputs``) of one batch.

        Args:
            batch: ``image`` (normalized ``[B, 3, H, W]``) plus what the task maps results back
                with: ``orig_size`` ``(height, width)`` per image, ``path``, ``image_b``, ...
        """
        batch = self._to_device(batch)
        with self._mode():
            return self.task.predict_outputs(self.task(batch["image"]), batch)
