"""Turn the ways a run dies into one line that says what happened and what to try."""

from __future__ import annotations

import re
from typing import Any

import torch

from cvtasks.io import CorruptFileError
from cvtasks.training.callbacks import NonFiniteLossError

#: PyTorch's host allocator failing (c10 ``alloc_cpu.cpp``): ``[enforce fail at
#: alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to
#: allocate 8000000000 bytes. Error code 12 (Cannot allocate memory)``
_HOST_ALLOCATOR = re.compile(r"DefaultCPUAllocator: (can't allocate memory|not enough memory)")


def memory_kind(err: BaseException) -> str | None:
    """``"GPU"`` or ``"host"`` for an out-of-memory error, ``None`` for any other error.

    GPU: ``torch.OutOfMemoryError`` (CUDA, also MPS/XPU builds) or an older build's
    ``RuntimeError("CUDA error: out of memory")``. Host: PyTorch's CPU allocator failing, or
    Python's ``MemoryError``.
    """
    if isinstance(err, MemoryError) or _HOST_ALLOCATOR.search(str(err)):
        return "host"
    if isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower():
        return "GPU"
    return None


def is_out_of_memory(err: BaseException) -> bool:
    """True for a GPU or host out-of-memory error (see :func:`memory_kind`)."""
    return memory_kind(err) is not None


def out_of_memory_message(err: BaseException, cfg: Any) -> str:
    """What ran out (GPU or host memory), at which batch size, and a smaller batch size to try.

    Args:
        err: the out-of-memory error.
        cfg: the run's config (``data.batch_size``, ``data.image_size``, ``trainer.precision``,
            ``trainer.accumulate_grad_batches``).
    """
    kind = memory_kind(err) or "GPU"
    batch = int(cfg.data.get("batch_size", 0) or 0)
    smaller = max(1, batch // 2)
    accumulate = int(cfg.trainer.get("accumulate_grad_batches", 1) or 1)
    hints = [f"data.batch_size={smaller}"]
    if batch > 1:
        hints.append(
            f"data.batch_size={smaller} trainer.accumulate_grad_batches={accumulate * 2} "
            "(the same effective batch)"
        )
    if "32" in str(cfg.trainer.get("precision", "")):
        hints.append("trainer.precision=bf16-mixed")
    return (
        f"out of memory with data.batch_size={batch} per process at "
        f"data.image_size={cfg.data.get('image_size')}: {kind} memory is full ({_what(err)})\n"
        f"Try: " + "  |  ".join(hints)
    )


def _what(err: BaseException) -> str:
    """The error's first line, without the allocator's ``[enforce fail at ...] err == 0.``."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    start = first.find("DefaultCPUAllocator")
    return first[start:] if start > 0 else first


#: errors a run reports as one message with no traceback (they already say what to do)
REPORTED = (NonFiniteLossError, CorruptFileError)
