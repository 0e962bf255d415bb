"""A checkpoint's network in each runtime ``benchmark`` compares, timed and scored the same way.

``torch`` is the inference path itself (:class:`~cvtasks.inference.Predictor`: BatchNorm folded,
eval mode, ``inference_mode``). The other formats are files written by the ``export`` command's
writers (:mod:`cvtasks.cli.export`) and run by their own runtime: ``onnx`` by onnxruntime (its
CUDA provider on a GPU when installed, else the CPU), ``torchscript`` by ``torch.jit`` and
``torch_export`` by ``torch.export``. Every runtime returns the network's raw outputs (logits,
heatmaps, box maps: the outputs of ``export decode=false``), so the task's own metric code scores
any of them: :class:`RuntimeNetwork` stands in for the task network in the task's test loop.
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cvtasks.cli.common import TrainedModel
from cvtasks.cli.export import FORMATS, export_onnx, export_program, export_torchscript
from cvtasks.inference import Predictor, optimize_network
from cvtasks.network_parts import NetworkParts

log = logging.getLogger(__name__)

#: the formats ``benchmark`` runs: the PyTorch inference path, then the export formats
RUNTIME_FORMATS = ("torch", *FORMATS)


class RawNetwork(nn.Module):
    """The task's forward pass as tensors in, a tuple of its raw outputs out.

    A network that answers one tensor names it ``logits``; a head's dict of tensors keeps its
    keys (in their order). :meth:`restore` turns such a tuple back into the network's form.

    Args:
        task: the task module (its network folded and in eval mode, on the CPU).
        image_size: ``(height, width)`` of the network input.
        channels: its channels.
    """

    def __init__(self, task: nn.Module, image_size: tuple[int, int], channels: int) -> None:
        super().__init__()
        # the network is the one submodule; the task only routes the call (see ExportedNetwork)
        self.net = task.net
        self.__dict__["task"] = task
        self.example = torch.rand(2, channels, *image_size)  # batch 2: a dynamic batch axis
        with torch.no_grad():
            raw = task(self.example)
        self.single = torch.is_tensor(raw)
        self.output_names: list[str] = ["logits"] if self.single else list(raw)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The raw outputs, in :attr:`output_names` order."""
        return self.flatten(self.task(images))

    def flatten(self, raw: Any) -> tuple[torch.Tensor, ...]:
        """The network's raw outputs (a tensor or a dict) as a tuple."""
        return (raw,) if self.single else tuple(raw[name] for name in self.output_names)

    def restore(self, outputs: Sequence[torch.Tensor]) -> Any:
        """A tuple of raw outputs back in the network's form (a tensor or a dict)."""
        return outputs[0] if self.single else dict(zip(self.output_names, outputs))


def raw_network(model: TrainedModel) -> RawNetwork:
    """A folded, eval-mode copy of the checkpoint's network on the CPU (the model is unchanged)."""
    task = copy.deepcopy(model.task)
    task.net = optimize_network(task.net, torch.device("cpu"))
    return RawNetwork(task.eval(), model.image_size, model.channels).eval()


@dataclass
class Runner:
    """One runtime's way through a batch.

    Attributes:
        format: ``torch``, ``onnx``, ``torchscript`` or ``torch_export``.
        where: the device it computes on (``cpu``, ``cuda:0``).
        prepare: normalized images ``[N, C, H, W]`` → the input the runtime reads (a tensor on
            its device, or onnxruntime's feed of host arrays).
        run: that input → the raw outputs (tensors or NumPy arrays), in the network's order.
        sync: wait until the device has finished (a GPU runs asynchronously).
    """

    format: str
    where: str
    prepare: Callable[[torch.Tensor], Any]
    run: Callable[[Any], Sequence[Any]]
    sync: Callable[[], None]

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Raw outputs of ``images`` as tensors on the images' device."""
        outputs = self.run(self.prepare(images))
        return [torch.as_tensor(o).to(images.device) for o in outputs]


def _sync_for(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def torch_runner(
    model: TrainedModel, raw: RawNetwork, device: torch.device, precision: str, compile: bool
) -> Runner:
    """The inference path: a :class:`Predictor` of the checkpoint."""
    predictor = Predictor(model.task, device, compile=compile, precision=precision)
    return Runner(
        "torch",
        str(predictor.device),
        lambda images: images.to(predictor.device),
        lambda images: raw.flatten(predictor.forward(images)),
        _sync_for(predictor.device),
    )


def onnx_runner(path: Path, device: torch.device) -> Runner:
    """onnxruntime: its CUDA provider when ``device`` is a GPU and it has one, else the CPU."""
    import onnxruntime

    providers: list[Any] = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        else:
            log.warning(
                "onnxruntime has no CUDA provider here (the onnxruntime-gpu package has it): "
                "the onnx format runs on the CPU"
            )
    session = onnxruntime.InferenceSession(str(path), providers=providers)
    on_gpu = session.get_providers()[0] == "CUDAExecutionProvider"
    return Runner(
        "onnx",
        f"cuda:{device.index or 0}" if on_gpu else "cpu",
        lambda images: {"images": images.detach().cpu().contiguous().numpy()},
        lambda feed: session.run(None, feed),
        lambda: None,  # session.run returns host arrays: it has finished
    )


def module_runner(fmt: str, module: Callable[..., Any], device: torch.device) -> Runner:
    """A loaded TorchScript or torch.export module on ``device``."""

    def run(images: torch.Tensor) -> list[torch.Tensor]:
        with torch.inference_mode():
            return list(module(images))

    return Runner(fmt, str(device), lambda images: images.to(device), run, _sync_for(device))


def load_program(path: Path, device: torch.device) -> Callable[..., Any]:
    """A ``torch.export`` file as a callable module on ``device``."""
    program = torch.export.load(str(path))
    if device.type != "cpu":
        from torch.export.passes import move_to_device_pass

        program = move_to_device_pass(program, device)
    return program.module()


def make_runner(
    fmt: str,
    model: TrainedModel,
    raw: RawNetwork,
    device: torch.device,
    folder: Path,
    *,
    precision: str = "32",
    compile: bool = False,
    opset: int = 18,
) -> Runner:
    """The runner of one format; an export format is first written into ``folder``.

    Raises:
        ValueError: an unknown format.
        ExportError: the format cannot express the model (named by the exporter).
    """
    if fmt == "torch":
        return torch_runner(model, raw, device, precision, compile)
    if fmt not in FORMATS:
        raise ValueError(f"formats: unknown format {fmt!r}; use {', '.join(RUNTIME_FORMATS)}")
    path = folder / f"model{FORMATS[fmt]}"
    meta = {**model.preprocessing(), "outputs": raw.output_names, "format": fmt}
    if fmt == "onnx":
        export_onnx(raw, path, meta, opset)
        return onnx_runner(path, device)
    if fmt == "torchscript":
        export_torchscript(raw, path, meta)
        return module_runner(fmt, torch.jit.load(str(path), map_location=device), device)
    export_program(raw, path, meta)
    return module_runner(fmt, load_program(path, device), device)


class RuntimeNetwork(NetworkParts, nn.Module):
    """A runtime in the place of a task's network, so that the task's own test loop scores it.

    The runner is kept outside the module tree: it stays on its own device whatever Lightning
    moves the task to, and its answers come back to the device of the images. The replaced
    network is kept too, out of the tree, for its parts: losses and metrics decode raw outputs
    with its head (heatmap strides, keypoint decoding); it computes nothing here.
    """

    def __init__(self, runner: Runner, raw: RawNetwork, net: nn.Module) -> None:
        super().__init__()
        self.__dict__["runner"] = runner
        self.__dict__["raw"] = raw
        self.__dict__["net"] = net

    def forward(self, images: torch.Tensor) -> Any:
        """The raw outputs, in the network's form (a tensor or a dict)."""
        return self.raw.restore([o.float() for o in self.runner(images)])


def scoring_task(model: TrainedModel, runner: Runner, raw: RawNetwork) -> nn.Module:
    """A copy of the checkpoint's task whose network is ``runner``."""
    task = copy.deepcopy(model.task)
    task.net = RuntimeNetwork(runner, raw, task.net)
    return task.eval()


def latency_ms(runner: Runner, images: torch.Tensor, warmup: int, repeats: int) -> float:
    """Median milliseconds of one batch through ``runner``, after ``warmup`` untimed batches.

    The input is placed where the runtime reads it before the clock starts; each timed batch
    ends when the device has finished it.
    """
    inputs = runner.prepare(images)
    for _ in range(warmup):
        runner.run(inputs)
    runner.sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner.run(inputs)
        runner.sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0
