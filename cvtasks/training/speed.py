"""Speed switches that depend on where a run executes: compile, channels-last, fused optimizers.

``compile`` and ``channels_last`` accept ``"auto"``: on when the run's device is a CUDA GPU (where
inductor's fused kernels and NHWC convolutions pay off), off on the CPU (where compiling a model
costs tens of seconds and channels-last convolutions are no faster). On CUDA a run also enables
TF32 for float32 matmuls and convolutions (bf16-mixed runs do most work in bf16 anyway) and, when
the optimizer class supports it, the fused (single-kernel) optimizer step.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

AUTO = "auto"
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile(value: Any) -> bool | str:
    """Validate the ``compile`` switch: false, true, ``auto`` or one of :data:`COMPILE_MODES`."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, str) and (value in COMPILE_MODES or value == AUTO):
        return value
    raise ValueError(
        f"compile={value!r} is not allowed; use false, true, auto or one of {COMPILE_MODES}"
    )


def check_switch(key: str, value: Any) -> bool | str:
    """Validate an on/off switch that may also be ``auto`` (e.g. ``channels_last``)."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    if value == AUTO:
        return AUTO
    raise ValueError(f"{key}={value!r} is not allowed; use true, false or auto")


def resolve(value: bool | str, device: torch.device) -> bool | str:
    """``auto`` becomes ``True`` on a CUDA device and ``False`` elsewhere; others pass through."""
    if value == AUTO:
        return device.type == "cuda"
    return value


def enable_cuda_fast_math() -> None:
    """TF32 tensor cores for float32 matmuls (10-bit mantissa, fp32 range); cuDNN convolutions
    use TF32 by default already.

    One switch, of the flag API that Lightning and inductor read
    (``torch.get_float32_matmul_precision``, ``torch.backends.cuda.matmul.allow_tf32``); it also
    sets the newer per-backend state (``torch.backends.cuda.matmul.fp32_precision``), so both
    APIs agree. Setting only the newer API would leave the older one at "highest", and torch 2.9+
    raises on the next read of the older one (Lightning reads it when a Trainer starts) as a mix
    of the two. Unlike ``torch.set_float32_matmul_precision`` and
    ``torch.backends.cudnn.allow_tf32``, this setter has no deprecation warning in the torch
    versions that warn about the older API, and torch 2.14 warns about none of them.
    """
    torch.backends.cuda.matmul.allow_tf32 = True


def add_fused(optimizer_cfg: dict[str, Any], optimizer_class: type, device: torch.device) -> None:
    """Ask for the fused optimizer step on CUDA when the class has one and the config is silent.

    ``fused=True`` runs the whole update of every parameter in a few kernels instead of one per
    parameter per operation; torch's Adam, AdamW and SGD support it for CUDA tensors.
    """
    if device.type != "cuda" or "fused" in optimizer_cfg:
        return
    if "fused" in inspect.signature(optimizer_class.__init__).parameters:
        optimizer_cfg["fused"] = True
