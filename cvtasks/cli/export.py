"""``python -m cvtasks export ckpt=PATH format=onnx|torchscript|torch_export output=FILE``.

The exported graph is the task network with BatchNorm folded into its convolutions, taking
normalized images ``float32 [N, 3, H, W]`` with a dynamic batch axis ``N``. With ``decode=true``
(the default) its outputs are the task's answers, decoded inside the graph as ``predict``
decodes them (the task's ``decoded_outputs``), in the frame of the network input:

- classification: ``probabilities [N, C]`` (softmax), ``top_k_labels int64 [N, k]`` and
  ``top_k_probabilities [N, k]``, best first, ``k = min(task.top_k, C)``;
- multilabel: ``probabilities [N, C]`` (sigmoid; present above the stored ``threshold``);
- segmentation: ``classes int64 [N, H, W]`` (arg-max) and ``probabilities [N, C, H, W]``;
- landmarks: ``keypoints [N, K, 2]`` (x, y in input pixels) and ``confidence [N, K]``;
- siamese: ``embedding [N, D]``, L2-normalized;
- localization: ``probabilities [N, C + 1]`` (0: *nothing*), ``label int64 [N]``,
  ``probability [N]``, ``p_nothing [N]`` and ``box [N, 4]`` (``x_min, y_min, x_max, y_max`` in
  input pixels, clipped);
- detection: peak picking and class-wise NMS: ``boxes float32 [N, D, 4]`` (``x_min, y_min,
  x_max, y_max`` in input pixels), ``scores float32 [N, D]`` and ``labels int64 [N, D]``, best
  first, ``D`` = the task's ``max_detections``. Images with fewer detections are padded: an
  empty slot has score 0, label -1 and box 0, so a consumer keeps the slots with ``labels >= 0``.

A consumer scales pixel coordinates by ``(file width / input width, file height / input
height)`` into the image's pixels, as ``predict`` does. ``decode=false`` exports the raw outputs
instead (the task's ``export_outputs``: ``logits``, heatmaps, box regressions, embeddings). The
pre-processing and names (image size, mean, std, class and keypoint names, ...) go into the ONNX
file's ``metadata_props``, or into ``FILE.json`` beside a TorchScript or torch.export file.
With ``check=true`` the exported model is run on random input against PyTorch (onnxruntime for
ONNX) and must agree (:func:`compare_outputs`); ``verify=true`` runs it on the checkpoint's test
data (:mod:`cvtasks.cli.export_verify`).
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch import nn

from cvtasks.cli.build import to_dict
from cvtasks.cli.common import TrainedModel, load_trained, run_command
from cvtasks.cli.errors import exit_with
from cvtasks.cli.evaluate import build_test_data, data_config
from cvtasks.cli.export_verify import (
    Tolerance,
    VerifyError,
    compare_outputs,
    finish,
    first_batches,
    output_failures,
    verify_outputs,
    verify_path,
)
from cvtasks.cli.outputs import atomic_path, refuse_overwriting_inputs
from cvtasks.config import CONFIG_DIR, setup_hydra
from cvtasks.inference import optimize_network
from cvtasks.io import write_json
from cvtasks.tasks.base import TaskModule

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".ts.pt", "torch_export": ".pt2"}


class ExportError(ValueError):
    """A model that the chosen format cannot express; the message names the operator."""


class ExportedNetwork(nn.Module):
    """The task's forward pass as a module of tensors in, a tuple of named tensors out.

    Args:
        task: the task module (its network folded and in eval mode, for an export).
        image_size: ``(height, width)`` of the network input.
        channels: its channels (3 for RGB, 1 for a model trained on gray images).
        decode: outputs decoded by the task (``decoded_outputs``), else raw (``export_outputs``).
    """

    def __init__(
        self,
        task: nn.Module,
        image_size: tuple[int, int],
        channels: int = 3,
        decode: bool = True,
    ) -> None:
        super().__init__()
        # The network is the one submodule (its parameters are the graph's); the task module
        # only routes the call (segmentation's resize, the task's export_outputs) and stays
        # outside the module tree, so tracers never walk a LightningModule's trainer-bound
        # properties.
        self.net = task.net
        self.__dict__["task"] = task
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.decode = bool(decode)
        # batch 2: torch.export treats sizes 0 and 1 as fixed
        self.example = torch.rand(2, channels, *image_size)
        with torch.no_grad():
            self.output_names = list(self.named_outputs(task(self.example)))

    def named_outputs(self, outputs: Any) -> dict[str, torch.Tensor]:
        """The task's decoded (or raw) outputs by name, from the network's raw ``outputs``."""
        if self.decode:
            return self.task.decoded_outputs(outputs, self.image_size)
        return self.task.export_outputs(outputs)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The task's export outputs, in :attr:`output_names` order."""
        outputs = self.named_outputs(self.task(images))
        return tuple(outputs[name] for name in self.output_names)


def exportable(model: TrainedModel, decode: bool = True) -> ExportedNetwork:
    """The checkpoint's network, BatchNorm folded, in eval mode on the CPU, ready to export."""
    task = model.task
    task.net = optimize_network(task.net, torch.device("cpu"))
    return ExportedNetwork(task.eval(), model.image_size, model.channels, decode).eval()


def operator_of(err: BaseException) -> str | None:
    """The operator an exporter failed on, read from its error message (``None``: not named)."""
    text = "\n".join(str(e) for e in _chain(err))
    for pattern in (
        r"op='([\w.:]+)'",
        r"target=torch\.ops\.([\w.]+)",
        r"(aten::\w+)",
        r"(aten\.\w+(?:\.\w+)?)",
    ):
        if found := re.search(pattern, text):
            return found.group(1)
    return None


def _chain(err: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    return chain


def _failed(fmt: str, err: Exception) -> ExportError:
    operator = operator_of(err)
    others = ", ".join(f for f in FORMATS if f != fmt)
    what = f"operator {operator} is not supported" if operator else "the model is not supported"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ExportError(
        f"cannot export to {fmt}: {what} by the {fmt} exporter ({first}). Replace that "
        f"operation in the model, or try another format ({others})."
    )


def batch_dim() -> dict[str, dict[int, Any]]:
    """The dynamic batch axis of the ``images`` input."""
    return {"images": {0: torch.export.Dim("batch", min=1, max=4096)}}


def export_onnx(net: ExportedNetwork, path: Path, meta: dict[str, Any], opset: int) -> None:
    """Write an ONNX file with ``meta`` in its ``metadata_props``."""
    import onnx

    try:
        program = torch.onnx.export(
            net,
            (net.example,),
            input_names=["images"],
            output_names=net.output_names,
            dynamic_shapes=batch_dim(),
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    except Exception as err:
        raise _failed("onnx", err) from err
    program.save(str(path), external_data=False)
    proto = onnx.load(str(path))
    for key, value in meta.items():
        text = value if isinstance(value, str) else json.dumps(value)
        proto.metadata_props.add(key=key, value=text)
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path))


def export_torchscript(net: ExportedNetwork, path: Path, meta: dict[str, Any]) -> None:
    """Write a traced TorchScript file (``meta`` also in its ``extra_files``)."""
    try:
        traced = torch.jit.trace(net, net.example, check_trace=False)
    except Exception as err:
        raise _failed("torchscript", err) from err
    traced.save(str(path), _extra_files={"cvtasks.json": json.dumps(meta)})


def export_program(net: ExportedNetwork, path: Path, meta: dict[str, Any]) -> None:
    """Write a ``torch.export`` program (``.pt2``; ``meta`` also in its ``extra_files``)."""
    try:
        program = torch.export.export(net, (net.example,), dynamic_shapes=batch_dim())
    except Exception as err:
        raise _failed("torch_export", err) from err
    torch.export.save(program, str(path), extra_files={"cvtasks.json": json.dumps(meta)})


def exported_runner(fmt: str, path: Path) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """The exported file, loaded once (onnxruntime for ONNX), as ``images -> outputs``."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: [
            torch.from_numpy(o) for o in session.run(None, {"images": images.numpy()})
        ]
    if fmt == "torchscript":
        loaded = torch.jit.load(str(path))
    else:
        loaded = torch.export.load(str(path)).module()

    def run(images: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return list(loaded(images))

    return run


def run_exported(fmt: str, path: Path, images: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of the exported file on ``images`` (onnxruntime for ONNX)."""
    return exported_runner(fmt, path)(images)


def random_check(
    net: ExportedNetwork, fmt: str, path: Path, tolerance: Tolerance, batch: int = 3
) -> dict[str, float]:
    """The largest absolute difference per output between the file and PyTorch on random input.

    ``batch`` differs from the export example's 2, so the check also exercises the dynamic axis.

    Raises:
        ExportError: an output exceeds ``tolerance`` (:func:`output_failures`).
    """
    images = torch.randn(batch, *net.example.shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net(images)
    report = compare_outputs(net.output_names, expected, run_exported(fmt, path, images))
    if failures := output_failures(report, tolerance):
        raise ExportError(f"{path} differs from PyTorch on random input: {'; '.join(failures)}")
    return {name: entry["max_abs_diff"] for name, entry in report.items()}


def tolerance_of(cfg: DictConfig) -> Tolerance:
    """The check's and the verification's :class:`Tolerance` (``atol``, ``rtol``, ``mismatch``,
    ``metric_atol``)."""
    default = Tolerance()
    return Tolerance(
        atol=float(cfg.get("atol", default.atol)),
        rtol=float(cfg.get("rtol", default.rtol)),
        mismatch=float(cfg.get("mismatch", default.mismatch)),
        metric_atol=float(cfg.get("metric_atol", default.metric_atol)),
    )


def export(cfg: DictConfig) -> dict[str, Any]:
    """Run the ``export`` command; returns the written file, the check's differences and, with
    ``verify=true``, the verification report."""
    fmt = str(cfg.format)
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt} is not one of {', '.join(FORMATS)}")
    if fmt == "torch_export" and cfg.get("output") and not str(cfg.output).endswith(".pt2"):
        raise ValueError(
            f"format=torch_export writes a .pt2 file: output={cfg.output} must end in .pt2"
        )
    decode, verify = bool(cfg.get("decode", True)), bool(cfg.get("verify", False))
    model = load_trained(cfg.ckpt, cfg.get("expect_task"))
    path = Path(cfg.output) if cfg.get("output") else model.path.with_suffix(FORMATS[fmt])
    sidecar = Path(f"{path}.json")
    refuse_overwriting_inputs([path, sidecar, verify_path(path)], {"ckpt": cfg.ckpt})
    tolerance = tolerance_of(cfg)
    # the test data first: a verification that cannot run stops before anything is written
    datamodule = build_test_data(model, to_dict(cfg.get("data"))) if verify else None
    # the PyTorch model as trained (BatchNorm not folded), before the export folds it
    reference = copy.deepcopy(model.task) if verify else None
    net = exportable(model, decode)
    meta = {**model.preprocessing(), "outputs": net.output_names, "decode": decode, "format": fmt}
    with atomic_path(path) as tmp:
        if fmt == "onnx":
            export_onnx(net, tmp, meta, int(cfg.opset))
        else:
            (export_torchscript if fmt == "torchscript" else export_program)(net, tmp, meta)
    if fmt != "onnx":
        write_json(sidecar, meta)
    result: dict[str, Any] = {"file": str(path), "outputs": net.output_names}
    if cfg.check:
        diffs = result["max_abs_diff"] = random_check(net, fmt, path, tolerance)
        print(f"checked against PyTorch: max abs difference {max(diffs.values()):.3g}")
    print(f"exported {model.task_name} model to {path}")
    if datamodule is not None and reference is not None:
        result["verify"] = verify_file(model, reference, net, fmt, path, datamodule, cfg)
    return result


def verify_file(
    model: TrainedModel,
    reference: TaskModule,
    net: ExportedNetwork,
    fmt: str,
    path: Path,
    datamodule: pl.LightningDataModule,
    cfg: DictConfig,
) -> dict[str, Any]:
    """``verify=true``: the exported file against ``reference`` (the checkpoint's PyTorch model)
    on the first ``verify_batches`` test batches; the report goes to ``<path>.verify.json``.

    Raises:
        VerifyError: the file disagrees beyond the tolerance (:mod:`cvtasks.cli.export_verify`).
    """
    reference_net = ExportedNetwork(reference, model.image_size, model.channels, net.decode)
    batches = first_batches(datamodule.test_dataloader(), int(cfg.get("verify_batches", 2)))
    found = verify_outputs(
        reference,
        reference_net.eval(),
        exported_runner(fmt, path),
        net.output_names,
        net.decode,
        batches,
        tolerance_of(cfg),
    )
    report = {
        "file": str(path),
        "format": fmt,
        "task": model.task_name,
        "checkpoint": str(model.path),
        "decode": net.decode,
        "data": data_config(model, to_dict(cfg.get("data"))),
        **found,
    }
    finish(report, path)
    return report


@hydra.main(config_path=str(CONFIG_DIR), config_name="export", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        run_command(export, cfg)
    except VerifyError as err:  # the export is wrong, not the command: exit status 1
        exit_with(err, 1)


def main() -> None:
    """Console entry point (``python -m cvtasks export key=value ...``)."""
    setup_hydra()
    _hydra_main()
