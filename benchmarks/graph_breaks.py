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

from results import command_line, environment, write_section


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
    parser.add_argument("--results", default=None, help="section title in benchmarks/RESULTS.md")
    args = parser.parse_args()
    names = [n for n in BACKBONES.names(args.pattern) if not n.startswith("timm")]
    failed = []
    rows = ["| backbone | graph breaks | trace s |", "| --- | ---: | ---: |"]
    print(f"{'backbone':<18} {'graph breaks':>12} {'trace s':>8}")
    for name in names:
        size = max(args.size, 67) if name == "alexnet_seed" else args.size
        breaks, seconds = trace(name, size)
        print(f"{name:<18} {breaks:>12} {seconds:>8.1f}", flush=True)
        rows.append(f"| {name} | {breaks} | {seconds:.1f} |")
        if breaks:
            failed.append(name)
    verdict = "all captured whole" if not failed else f"graph breaks in: {', '.join(failed)}"
    print(verdict)
    if args.results:
        settings = f"training-mode forward, {args.size}x{args.size} input; {verdict}"
        env = environment(torch.device("cpu"))
        write_section(args.results, env, settings, "\n".join(rows), command_line(sys.argv))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
