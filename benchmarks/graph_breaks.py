"""Trace every registered backbone with ``torch.compile(fullgraph=True)`` and report graph breaks.

    python benchmarks/graph_breaks.py [PATTERN] [--size 64]

Uses dynamo's ``explain`` on the training-mode forward pass (GoogLeNet: with its auxiliary
heads), so it needs no code generation and runs on a CPU. Exits 1 if any backbone breaks.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from cvtasks.registry import BACKBONES


def trace(name: str, size: int) -> tuple[int, float]:
    """Graph breaks of ``name``'s training forward pass, and the seconds the trace took."""
    net = BACKBONES.build(name, num_classes=10).train()
    if hasattr(net, "init_aux"):
        net.init_aux(10)
    forward = net.forward_features_aux if getattr(net, "aux_enabled", False) else net.forward
    torch._dynamo.reset()
    start = time.perf_counter()
    explained = torch._dynamo.explain(forward)(torch.randn(2, 3, size, size))
    return explained.graph_break_count, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pattern", nargs="?", default="*")
    parser.add_argument("--size", type=int, default=64, help="input side (alexnet_seed: 67+)")
    args = parser.parse_args()
    names = [n for n in BACKBONES.names(args.pattern) if not n.startswith("timm")]
    failed = []
    print(f"{'backbone':<18} {'graph breaks':>12} {'trace s':>8}")
    for name in names:
        size = max(args.size, 67) if name == "alexnet_seed" else args.size
        breaks, seconds = trace(name, size)
        print(f"{name:<18} {breaks:>12} {seconds:>8.1f}", flush=True)
        if breaks:
            failed.append(name)
    print("all captured whole" if not failed else f"graph breaks in: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
