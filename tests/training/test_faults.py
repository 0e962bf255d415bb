"""The one-line message of an out-of-memory error: what ran out and what to try."""

import pytest
import torch
from omegaconf import OmegaConf

from cvtasks.training.faults import is_out_of_memory, out_of_memory_message


def run_config(batch_size=64, precision="32-true", accumulate=1):
    return OmegaConf.create(
        {
            "data": {"batch_size": batch_size, "image_size": 224},
            "trainer": {"precision": precision, "accumulate_grad_batches": accumulate},
        }
    )


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), True),
        (RuntimeError("CUDA error: out of memory"), True),  # older builds raise RuntimeError
        (RuntimeError("shape mismatch"), False),
    ],
)
def test_out_of_memory_is_recognised_by_type_or_message(err, expected):
    assert is_out_of_memory(err) is expected


def test_message_halves_the_batch_and_keeps_the_effective_batch():
    err = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB\nmore detail")
    message = out_of_memory_message(err, run_config(batch_size=64, accumulate=2))
    first, hints = message.splitlines()
    assert first == (
        "out of memory with data.batch_size=64 per process at data.image_size=224: "
        "CUDA out of memory. Tried to allocate 2 GiB"
    )
    assert hints == (
        "Try: data.batch_size=32  |  data.batch_size=32 trainer.accumulate_grad_batches=4 "
        "(the same effective batch)  |  trainer.precision=bf16-mixed"
    )


def test_message_for_a_batch_of_one_in_bf16_has_no_impossible_hints():
    message = out_of_memory_message(
        RuntimeError(), run_config(batch_size=1, precision="bf16-mixed")
    )
    assert message.endswith("data.image_size=224: RuntimeError\nTry: data.batch_size=1")
