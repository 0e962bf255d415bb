"""Turn the ways a run dies into one line that says what happened and what to try."""

from __future__ import annotations

from typing import Any

import torch

from cvtasks.training.callbacks import NonFiniteLossError


def is_out_of_memory(err: BaseException) -> bool:
    """True for a device out-of-memory error (``torch.OutOfMemoryError`` or its old message)."""
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def out_of_memory_message(err: BaseException, cfg: Any) -> str:
    """What ran out, at which batch size, and a smaller batch size to try.

    Args:
        err: the out-of-memory error.
        cfg: the run's config (``data.batch_size``, ``data.image_size``, ``trainer.precision``,
            ``trainer.accumulate_grad_batches``).
    """
    batch = int(cfg.data.get("batch_size", 0) or 0)
    smaller = max(1, batch // 2)
    accumulate = int(cfg.trainer.get("accumulate_grad_batches", 1) or 1)
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
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
        f"data.image_size={cfg.data.get('image_size')}: {first}\n"
        f"Try: " + "  |  ".join(hints)
    )


#: errors a run reports as one message with no traceback (they already say what to do)
REPORTED = (NonFiniteLossError,)
