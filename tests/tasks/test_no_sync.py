"""A training step queues its work without waiting for the device.

The claim covers every task's training step: forward pass, loss, training metrics, ``self.log``,
the non-finite loss guard's check and the backward pass. Three checks back it:

* on the CPU, :class:`HostSyncCheck` (a dispatch mode that sees every tensor operation) watches
  the steps of a real ``Trainer.fit`` and raises on any operation that on a GPU makes the host
  wait: reading a value (``.item()``, ``float(t)``, ``bool(t)``, ``if t:``), an output whose size
  depends on the values (``nonzero``, ``unique``, boolean-mask indexing, ``bincount``, ...), and
  a tensor made from host data inside the step (``torch.tensor(list)``, ``new_tensor``,
  ``t[i] = 2.0``: a blocking host-to-device copy on CUDA);
* on a fake CUDA device (``FakeTensorMode``: CUDA tensors without a GPU) the same check also sees
  copies between host and device (``.cpu()``, ``.tolist()``, ``.to(device)`` of a host tensor)
  and follows the code paths ops take on CUDA;
* on a GPU, ``torch.cuda.set_sync_debug_mode("error")``.

The first test shows that the check fails on each kind of offender, including the fill of a
device tensor from a Python number that the landmarks loss once did.
"""

from __future__ import annotations

import traceback
from types import SimpleNamespace
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torchmetrics import Metric

from cvtasks.registry import TASKS
from cvtasks.training.callbacks import NonFiniteLossGuard, _start_check
from tests.tasks.conftest import quiet_trainer

pytestmark = pytest.mark.usefixtures("one_thread")

aten = torch.ops.aten

#: operations whose result the host reads, so it waits for every kernel queued before them
READS_A_VALUE = {aten._local_scalar_dense, aten.equal, aten.is_nonzero}
#: operations whose output size depends on the values (on CUDA the host reads it back)
SIZE_FROM_VALUES = {
    aten.nonzero,
    aten.masked_select,
    aten._unique,
    aten._unique2,
    aten.unique_dim,
    aten.unique_consecutive,
    aten.unique_dim_consecutive,
    aten.bincount,  # on CUDA it reads the largest value to size its output
}
FROM_HOST_DATA = {aten.lift_fresh, aten.lift_fresh_copy}
INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}
COPIES = {aten._to_copy, aten.copy_, aten._copy_from, aten._copy_from_and_resize}


class HostSyncError(AssertionError):
    """An operation in a training step would make the host wait for the device."""


def _caller() -> str:
    """The innermost frame of the project (else of anything but torch) that led here."""
    frames = traceback.extract_stack()[:-3]
    ours = [f for f in frames if "/cvtasks/" in f.filename]
    outside = [f for f in frames if "/torch/" not in f.filename]
    frame = (ours or outside or frames)[-1]
    return f"{frame.filename}:{frame.lineno}: {frame.line}"


def _devices(func: Any, args: tuple, kwargs: dict) -> tuple[torch.device, torch.device]:
    """Source and destination device of a copy."""
    op = func.overloadpacket
    if op is aten._to_copy:
        return args[0].device, kwargs.get("device") or args[0].device
    if op is aten.copy_:  # copy_(destination, source)
        return args[1].device, args[0].device
    return args[0].device, args[1].device  # _copy_from(source, destination)


def host_sync(func: Any, args: tuple, kwargs: dict) -> str | None:
    """Why ``func`` on these arguments makes the host wait for the device, or ``None``."""
    op = func.overloadpacket
    if op in READS_A_VALUE:
        return "reads a tensor's value on the host (.item(), float(), int(), bool(), if tensor)"
    if op in SIZE_FROM_VALUES:
        return "gives an output whose size depends on the values"
    if op is aten.repeat_interleave and kwargs.get("output_size") is None:
        return "gives an output whose size depends on the values (no output_size)"
    if op in INDEXING and any(
        i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1]
    ):
        return "indexes with a boolean mask (output size depends on the values)"
    if op in FROM_HOST_DATA:
        return (
            "makes a tensor from host data (torch.tensor, new_tensor, t[i] = number): "
            "a blocking host-to-device copy on a GPU"
        )
    if op in COPIES:
        source, target = _devices(func, args, kwargs)
        non_blocking = bool(kwargs.get("non_blocking", args[2] if len(args) > 2 else False))
        if source != target and not (target.type == "cpu" and non_blocking):
            return f"copies {source.type} -> {target.type} and waits for it"
    return None


class HostSyncCheck(TorchDispatchMode):
    """Raise :class:`HostSyncError` on any operation that makes the host wait for the device."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        why = host_sync(func, args, kwargs)
        if why is not None:
            raise HostSyncError(f"{func} {why}, at {_caller()}")
        return func(*args, **kwargs)


class CheckTrainingSteps(pl.Callback):
    """Run each training batch after the first, from its start to the optimizer step (forward,
    loss, metrics, logging, the guard's check, backward) under :class:`HostSyncCheck`.

    The first batch is left out: Lightning and torchmetrics set things up lazily there.
    """

    def __init__(self) -> None:
        self.mode: HostSyncCheck | None = None
        self.checked = 0

    def _stop(self) -> None:
        if self.mode is not None:
            self.mode.__exit__(None, None, None)
            self.mode = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx > 0:
            self.mode = HostSyncCheck()
            self.mode.__enter__()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.mode is not None:
            self.checked += 1
        self._stop()  # before the guard reads its verdict, by design after the backward pass

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._stop()


# -- the tasks' training steps ----------------------------------------------------------------
B, SIZE = 8, 32
NAMES = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "classification": ("classification", {"num_classes": 4}),
    "classification-top5": ("classification", {"num_classes": 10, "label_smoothing": 0.1}),
    "localization": ("localization", {"num_classes": 2}),
    "localization-fc-giou": (
        "localization",
        {"num_classes": 2, "head": {"name": "localization_fc"}, "loss": {"box_loss": "giou"}},
    ),
    "landmarks-heatmap": ("landmarks", {"num_keypoints": 5, "keypoint_names": NAMES}),
    "landmarks-regression-wing": (
        "landmarks",
        {"num_keypoints": 5, "head": {"name": "keypoint_regression"}, "loss": {"points": "wing"}},
    ),
    "segmentation": ("segmentation", {"num_classes": 3}),
    "segmentation-fcn-weighted": (
        "segmentation",
        {"num_classes": 3, "head": {"name": "fcn"}, "loss": {"class_weights": [1.0, 2.0, 0.5]}},
    ),
    "siamese-semi-hard": ("siamese", {"mining": "semi_hard"}),
    "siamese-batch-hard": ("siamese", {"mining": "batch_hard"}),
    "siamese-contrastive": ("siamese", {"loss": "contrastive"}),
    "siamese-comparison": ("siamese", {"loss": "comparison", "distance": "comparison"}),
}


def build(case: str) -> pl.LightningModule:
    name, kwargs = CASES[case]
    torch.manual_seed(0)
    return TASKS.build(name, backbone={"name": "resnet18"}, **kwargs)


def batch_for(task: str, seed: int = 0) -> dict[str, Any]:
    """A training batch with the keys the task's data module gives (readers and collate)."""
    g = torch.Generator().manual_seed(seed)
    batch: dict[str, Any] = {
        "image": torch.randn(B, 3, SIZE, SIZE, generator=g),
        "skipped": torch.tensor(0),
        "orig_size": torch.tensor([[48, 64]] * B),
    }
    if task == "classification":
        batch["label"] = torch.randint(0, 4, (B,), generator=g)
    elif task == "localization":
        batch["label"] = torch.tensor([0, 1, 2, 0, 1, 2, 1, 2])  # two images of nothing
        batch["box"] = torch.rand(B, 4, generator=g) * 0.5 + 0.25
    elif task == "landmarks":
        batch["keypoints"] = torch.rand(B, 5, 2, generator=g)
        batch["visible"] = torch.rand(B, 5, generator=g) > 0.2
        batch["box"] = torch.rand(B, 4, generator=g) * 0.5 + 0.25
    elif task == "segmentation":
        batch["mask"] = torch.randint(0, 3, (B, SIZE, SIZE), generator=g)
        batch["mask"][:, :4] = 255  # ignored pixels
    else:
        batch["identity"] = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])  # P x K = 4 x 2
        batch.pop("orig_size")
    return batch


@pytest.mark.parametrize(
    "offender",
    [
        lambda x: x.sum().item(),
        lambda x: bool(x.sum() > 0),
        lambda x: x[x > 0],
        lambda x: (x > 0).nonzero(),
        lambda x: torch.unique(x),
        lambda x: torch.bincount((x > 0).long().flatten()),
        lambda x: torch.tensor([1.0, 2.0], device=x.device),
        lambda x: x.new_tensor([2.0, 1.0]),
        lambda x: x.new_full((2,), 3.0).__setitem__(1, 2.0),  # the old landmarks scale
    ],
    ids=[
        "item",
        "bool",
        "mask-index",
        "nonzero",
        "unique",
        "bincount",
        "tensor",
        "new_tensor",
        "setitem-number",
    ],
)
@pytest.mark.parametrize("device", ["cpu", "fake-cuda"])
def test_the_check_catches_every_kind_of_wait(offender, device):
    x = torch.randn(4, 3)
    if device == "cpu":
        caught = pytest.raises(HostSyncError, match=r"aten\.\w+.* at .*test_no_sync\.py")
        with caught, HostSyncCheck():
            offender(x)
        return
    with FakeTensorMode() as mode:
        x = mode.from_tensor(x).to("cuda")
        with pytest.raises(HostSyncError, match=r"aten\.\w+"), HostSyncCheck():
            offender(x)


def test_the_check_catches_host_device_copies_and_passes_masked_code():
    with FakeTensorMode() as mode:
        x = mode.from_tensor(torch.randn(4, 3)).to("cuda")
        host = torch.ones(3)
        for copy in (lambda: x.cpu(), lambda: x.tolist(), lambda: host.to(x.device) * x):
            with pytest.raises(HostSyncError, match="aten"), HostSyncCheck():
                copy()
        with HostSyncCheck():  # masks, device-side fills and a non-blocking copy to the host
            mean = torch.where(x > 0, x, 0.0).sum() / (x > 0).sum().clamp(min=1)
            torch.cat([x.new_full((1,), 2.0), mean.reshape(1)]).to("cpu", non_blocking=True)


@pytest.mark.parametrize("case", list(CASES))
def test_a_training_step_never_waits_for_the_device(case):
    """Trainer.fit on the CPU, the steps after the first under :class:`HostSyncCheck`."""
    task = build(case)
    batches = [batch_for(CASES[case][0], seed) for seed in range(3)]
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    check = CheckTrainingSteps()
    trainer = quiet_trainer(
        max_epochs=1,
        limit_val_batches=0,
        callbacks=[check, NonFiniteLossGuard()],
    )
    trainer.fit(task, train_dataloaders=loader)
    assert check.checked == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def to_fake_cuda(task: nn.Module, mode: FakeTensorMode) -> None:
    """Replace every parameter, buffer and metric state by a fake CUDA tensor of its shape.

    Module by module (a module shared by two owners, such as the siamese comparison network
    that its loss also holds, is visited once).
    """

    def fake(tensor: torch.Tensor) -> torch.Tensor:
        return mode.from_tensor(tensor).to("cuda")

    for module in task.modules():
        for key, param in module._parameters.items():
            if param is not None:
                module._parameters[key] = nn.Parameter(fake(param), param.requires_grad)
        for key, buffer in module._buffers.items():
            if buffer is not None:
                module._buffers[key] = fake(buffer)
        if isinstance(module, Metric):
            for key in module._defaults:
                state = getattr(module, key)
                if isinstance(state, torch.Tensor):  # list states start empty
                    setattr(module, key, fake(state))


class _NoEvent:
    """``torch.cuda.Event`` stand-in: there is no CUDA runtime behind fake CUDA tensors."""

    def record(self) -> None:
        """Nothing to record."""


@pytest.mark.parametrize("case", list(CASES))
def test_a_training_step_on_a_fake_gpu_never_waits(case, monkeypatch):
    """Forward, loss, metrics and the guard's check with CUDA tensors' code paths and copies.

    The backward pass is left to the other tests: the autograd engine needs a real GPU.
    """
    task = build(case).train()
    name = CASES[case][0]
    monkeypatch.setattr(torch.cuda, "Event", _NoEvent)
    with FakeTensorMode() as mode:
        to_fake_cuda(task, mode)
        batch = {
            k: mode.from_tensor(v).to("cuda") if isinstance(v, torch.Tensor) else v
            for k, v in batch_for(name).items()
        }
        with HostSyncCheck():
            outputs = task(batch["image"])
            loss = task.compute_loss(outputs, batch)
            task.update_metrics(task.train_metrics, outputs, batch)
            check = _start_check(loss, SimpleNamespace(world_size=1), batch_idx=0)
    assert loss.device.type == "cuda" and loss.shape == ()
    assert check.values.device.type == "cpu"  # copied, non-blocking, for the guard to read later


def _step(task: pl.LightningModule, batch: dict[str, Any]) -> torch.Tensor:
    """Forward, loss, training metrics, the guard's check and backward; the check's values."""
    outputs = task(batch["image"])
    loss = task.compute_loss(outputs, batch)
    task.update_metrics(task.train_metrics, outputs, batch)
    check = _start_check(loss, SimpleNamespace(world_size=1), batch_idx=0)
    loss.backward()
    return check.values


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("case", list(CASES))
def test_a_training_step_on_a_gpu_never_waits(case):
    device = torch.device("cuda")
    task = build(case).to(device).train()
    batch = {
        k: v.to(device) if isinstance(v, torch.Tensor) else v
        for k, v in batch_for(CASES[case][0]).items()
    }
    _step(task, batch)  # warm-up: lazy initialisation (cuBLAS handles, ...) may synchronize once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        values = _step(task, batch)
    finally:
        torch.cuda.set_sync_debug_mode(0)
        torch.cuda.synchronize()
    loss, bad = (float(v) for v in values)
    assert bad == 0.0 and loss >= 0.0  # finite: a margin loss may be 0 on an easy batch
    assert all(p.grad is not None for p in task.net.parameters() if p.requires_grad)
