"""``export verify=true``: the exported file against the PyTorch model on the test data.

The test split is rebuilt from the checkpoint's data config (as ``evaluate`` rebuilds it); the
first ``verify_batches`` batches go through the exported file (onnxruntime, TorchScript or the
torch.export program) and through the checkpoint's PyTorch model (BatchNorm not folded, so the
folding is checked too), both giving the same named outputs. A batch of pairs (siamese) runs
``image`` and then ``image_b`` as one batch. Compared:

- each output: the largest absolute difference (floating-point outputs: at most
  ``atol + rtol * the output's largest absolute value``) and,
  for integer outputs (class maps, labels, top-k indices), the share of elements that differ (at
  most ``mismatch``: where two classes score within ``atol`` of each other either arg-max is
  right);
- the task's test metrics (accuracy, mIoU, NME, pair AUC, mAP, ...), computed by the task's own
  metric objects from each set of outputs (``TaskModule.update_export_metrics``): they may
  differ by at most ``metric_atol``.

The report goes to ``<file>.verify.json`` beside the exported file, passed or not; a failure then
raises :class:`VerifyError`, whose one line names what differs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torchmetrics import MetricCollection

from cvtasks.io import write_json
from cvtasks.tasks.base import TaskModule

Runner = Callable[[torch.Tensor], Sequence[torch.Tensor]]


class VerifyError(RuntimeError):
    """The exported model disagrees with PyTorch on the test data; the message says where."""


@dataclass(frozen=True)
class Tolerance:
    """How far an exported model may be from PyTorch and still pass.

    Args:
        atol: the largest absolute difference of a floating-point output ...
        rtol: ... plus this share of the value's size (pixel coordinates grow with the image,
            and float32 rounding with them).
        mismatch: the largest share of the elements of an integer output (class maps, labels,
            top-k indices) that may differ.
        metric_atol: the largest difference of a test metric (``verify=true``).
    """

    atol: float = 1e-4
    rtol: float = 1e-5
    mismatch: float = 1e-4
    metric_atol: float = 1e-4


def verify_path(path: str | Path) -> Path:
    """Where the verification report of exported ``path`` goes: ``<path>.verify.json``."""
    return Path(f"{path}.verify.json")


def compare_outputs(
    names: Sequence[str], expected: Sequence[torch.Tensor], found: Sequence[torch.Tensor]
) -> dict[str, dict[str, Any]]:
    """Per output: its ``dtype``, largest absolute difference ``max_abs_diff``, largest
    ``max_abs_value`` of the expected output (what ``rtol`` scales) and, for integer outputs, how
    many elements differ (``differing`` of ``elements``); an output of another shape (or none)
    says so instead (``shape``, ``expected_shape``)."""
    report: dict[str, dict[str, Any]] = {}
    for k, (name, want) in enumerate(zip(names, expected)):
        got = found[k] if k < len(found) else None
        if got is None or tuple(want.shape) != tuple(got.shape):
            shape = None if got is None else list(got.shape)
            report[name] = {"shape": shape, "expected_shape": list(want.shape)}
            continue
        diff = (want.double() - got.double()).abs()
        entry: dict[str, Any] = {"dtype": str(want.dtype).removeprefix("torch.")}
        entry["max_abs_diff"] = float(diff.max()) if diff.numel() else 0.0
        entry["max_abs_value"] = float(want.double().abs().max()) if want.numel() else 0.0
        if not want.is_floating_point():
            entry.update(differing=int((diff > 0).sum()), elements=diff.numel())
        report[name] = entry
    return report


def merge_reports(total: dict[str, dict[str, Any]], batch: dict[str, dict[str, Any]]) -> None:
    """Fold one batch's :func:`compare_outputs` into ``total`` (worst difference, counts)."""
    for name, entry in batch.items():
        kept = total.get(name)
        if kept is None or "shape" in entry:
            total[name] = dict(entry) if kept is None or "shape" not in kept else kept
            continue
        if "shape" in kept:
            continue
        kept["max_abs_diff"] = max(kept["max_abs_diff"], entry["max_abs_diff"])
        kept["max_abs_value"] = max(kept["max_abs_value"], entry["max_abs_value"])
        if "differing" in entry:
            kept["differing"] += entry["differing"]
            kept["elements"] += entry["elements"]


def output_failures(report: dict[str, dict[str, Any]], tolerance: Tolerance) -> list[str]:
    """One phrase per output of ``report`` beyond ``tolerance``; sets integer outputs'
    ``mismatch`` (the share of differing elements)."""
    failures = []
    for name, entry in report.items():
        if "shape" in entry:
            failures.append(f"{name} has shape {entry['shape']}, not {entry['expected_shape']}")
        elif "differing" in entry:
            entry["mismatch"] = entry["differing"] / max(entry["elements"], 1)
            if entry["mismatch"] > tolerance.mismatch:
                failures.append(
                    f"{name} differs in {entry['mismatch']:.3%} of its elements > "
                    f"mismatch={tolerance.mismatch:g}"
                )
        else:
            allowed = tolerance.atol + tolerance.rtol * entry["max_abs_value"]
            if not entry["max_abs_diff"] <= allowed:  # NaN fails too
                failures.append(
                    f"{name} differs by {entry['max_abs_diff']:.3g} > {allowed:.3g} (atol + rtol "
                    f"x its largest value {entry['max_abs_value']:.3g})"
                )
    return failures


def metric_values(metrics: MetricCollection) -> dict[str, float | None]:
    """The scalar results of a metric collection (``None`` for NaN: no such case in the data)."""
    values: dict[str, float | None] = {}
    for key, value in metrics.compute().items():
        tensor = torch.as_tensor(value)
        if tensor.numel() == 1:
            number = float(tensor)
            values[key] = None if math.isnan(number) else number
    return values


def images_of(batch: dict[str, Any]) -> torch.Tensor:
    """The images a test batch asks the network for: ``image``, then ``image_b`` for pairs."""
    if "image_b" in batch:
        return torch.cat([batch["image"], batch["image_b"]])
    return batch["image"]


def verify_outputs(
    task: TaskModule,
    reference: Runner,
    exported: Runner,
    names: Sequence[str],
    decoded: bool,
    batches: Iterable[dict[str, Any]],
    tolerance: Tolerance,
) -> dict[str, Any]:
    """Compare ``exported`` with ``reference`` on ``batches`` (see the module docstring).

    Args:
        task: the task module whose test metrics score both output sets.
        reference: the PyTorch model, ``images -> outputs`` in ``names`` order.
        exported: the exported file, the same way.
        names: the names of the outputs.
        decoded: the outputs are the task's decoded ones (else its raw ones).
        batches: test batches.
        tolerance: what passes.

    Returns:
        ``batches``, ``images``, ``tolerance``, ``outputs`` (per output ``max_abs_diff``, and
        ``mismatch`` for integer outputs), ``metrics`` (per metric ``pytorch``, ``exported``,
        ``diff``), ``failures`` (phrases) and ``passed``.
    """
    metrics = {"pytorch": task.make_export_metrics(), "exported": task.make_export_metrics()}
    outputs: dict[str, dict[str, Any]] = {}
    count = images = scored = 0
    for batch in batches:
        inputs = images_of(batch)
        if inputs.shape[0] == 0:  # every image of the batch was unreadable and skipped
            continue
        with torch.no_grad():
            expected = list(reference(inputs))
        found = list(exported(inputs))
        report = compare_outputs(names, expected, found)
        merge_reports(outputs, report)
        count, images = count + 1, images + int(inputs.shape[0])
        if any("shape" in entry for entry in report.values()):
            continue  # outputs of the wrong shape fail already; no metric can take them
        for side, values in (("pytorch", expected), ("exported", found)):
            named = dict(zip(names, values))
            task.update_export_metrics(metrics[side], named, batch, decoded)
        scored += 1
    if count == 0:
        raise ValueError(
            "verify=true found no readable test images in the data; pass data=... with a test "
            "split, or verify=false"
        )
    failures = output_failures(outputs, tolerance)
    scores = _compare_metrics(metrics, tolerance, failures) if scored else {}
    return {
        "batches": count,
        "images": images,
        "tolerance": asdict(tolerance),
        "outputs": outputs,
        "metrics": scores,
        "failures": failures,
        "passed": not failures,
    }


def _compare_metrics(
    metrics: dict[str, MetricCollection], tolerance: Tolerance, failures: list[str]
) -> dict[str, dict[str, float | None]]:
    pytorch, exported = (metric_values(metrics[side]) for side in ("pytorch", "exported"))
    scores: dict[str, dict[str, float | None]] = {}
    for key in sorted(set(pytorch) | set(exported)):
        a, b = pytorch.get(key), exported.get(key)
        diff = abs(a - b) if a is not None and b is not None else None
        scores[key] = {"pytorch": a, "exported": b, "diff": diff}
        if (a is None) != (b is None) or (diff is not None and diff > tolerance.metric_atol):
            failures.append(f"metric {key} is {_fmt(b)} from the file, {_fmt(a)} from PyTorch")
    return scores


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def first_batches(loader: Iterable[dict[str, Any]], count: int) -> Iterable[dict[str, Any]]:
    """The first ``count`` batches of ``loader``."""
    return itertools.islice(loader, max(int(count), 1))


def finish(report: dict[str, Any], path: Path) -> None:
    """Print the comparison, write ``<path>.verify.json`` and raise when it failed.

    Raises:
        VerifyError: one line: the file, what differs, the tolerances and the report's path.
    """
    where = verify_path(path)
    write_json(where, report)
    print(
        f"verification on {report['images']} test images ({report['batches']} batches) of "
        f"data={report.get('data', {}).get('name')}, exported file vs PyTorch:"
    )
    for name, entry in report["outputs"].items():
        extra = f", {entry['mismatch']:.3%} differ" if "mismatch" in entry else ""
        print(f"  output {name:24s} max abs diff {entry.get('max_abs_diff', math.nan):.3g}{extra}")
    for key, score in report["metrics"].items():
        print(
            f"  metric {key:24s} pytorch {_fmt(score['pytorch'])}  "
            f"exported {_fmt(score['exported'])}"
        )
    if not report["passed"]:
        tol = report["tolerance"]
        raise VerifyError(
            f"{path} fails verification against PyTorch on the test data: "
            f"{'; '.join(report['failures'])} (tolerance: atol={tol['atol']:g}, "
            f"rtol={tol['rtol']:g}, mismatch={tol['mismatch']:g}, "
            f"metric_atol={tol['metric_atol']:g}; "
            f"report in {where})"
        )
    print(f"verification passed (report in {where})")
