"""The one-line message of an out-of-memory error: what ran out and what to try."""

import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from cvtasks.training.faults import is_out_of_memory, memory_kind, out_of_memory_message

#: PyTorch's own text when the host allocator fails (torch 2.x, c10/core/impl/alloc_cpu.cpp)
HOST_OOM = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 8589934592 bytes. Error code 12 (Cannot allocate memory)"
)


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
        (RuntimeError(HOST_OOM), True),
        (MemoryError(), True),
        (RuntimeError("shape mismatch"), False),
        (ValueError("not enough values to unpack"), False),
    ],
)
def test_out_of_memory_is_recognised_by_type_or_message(err, expected):
    assert is_out_of_memory(err) is expected


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "GPU"),
        (RuntimeError("CUDA error: out of memory"), "GPU"),
        (RuntimeError(HOST_OOM), "host"),
        (MemoryError(), "host"),
    ],
)
def test_which_memory_ran_out(err, kind):
    assert memory_kind(err) == kind


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_the_real_host_allocator_failure_is_host_memory():
    """Provoke PyTorch's own message: an address-space limit 1 GiB above what is mapped."""
    script = (
        "import resource, torch\n"
        "status = open('/proc/self/status').read().split('VmSize:')[1].split()[0]\n"
        "limit = int(status) * 1024 + 2**30\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    torch.empty(2**31, dtype=torch.float32)\n"
        "except RuntimeError as err:\n"
        "    print(err)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    text = proc.stdout.strip()
    assert "you tried to allocate 8589934592 bytes" in text, proc.stderr[-2000:]
    assert memory_kind(RuntimeError(text)) == "host"


def test_host_memory_message_says_host_and_keeps_the_batch_advice():
    message = out_of_memory_message(RuntimeError(HOST_OOM), run_config(batch_size=64))
    first, hints = message.splitlines()
    assert first == (
        "out of memory with data.batch_size=64 per process at data.image_size=224: host memory is "
        "full (DefaultCPUAllocator: can't allocate memory: you tried to allocate 8589934592 bytes. "
        "Error code 12 (Cannot allocate memory))"
    )
    assert hints.startswith("Try: data.batch_size=32  |  data.batch_size=32 ")
    message = out_of_memory_message(MemoryError(), run_config(batch_size=8))
    assert (
        "data.image_size=224: host memory is full (MemoryError)\nTry: data.batch_size=4" in message
    )


def test_message_halves_the_batch_and_keeps_the_effective_batch():
    err = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB\nmore detail")
    message = out_of_memory_message(err, run_config(batch_size=64, accumulate=2))
    first, hints = message.splitlines()
    assert first == (
        "out of memory with data.batch_size=64 per process at data.image_size=224: "
        "GPU memory is full (CUDA out of memory. Tried to allocate 2 GiB)"
    )
    assert hints == (
        "Try: data.batch_size=32  |  data.batch_size=32 trainer.accumulate_grad_batches=4 "
        "(the same effective batch)  |  trainer.precision=bf16-mixed"
    )


def test_message_for_a_batch_of_one_in_bf16_has_no_impossible_hints():
    message = out_of_memory_message(
        RuntimeError(), run_config(batch_size=1, precision="bf16-mixed")
    )
    assert message.endswith(
        "data.image_size=224: GPU memory is full (RuntimeError)\nTry: data.batch_size=1"
    )
