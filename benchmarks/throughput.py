"""Training and inference images/s: cvtasks against timm/torchvision, in one process.

    python benchmarks/throughput.py --device cpu --backbones resnet18 --batch-size 16 \
        --image-size 64 --precision 32 --no-compile
    python benchmarks/throughput.py --device cuda --backbones resnet50 resnet18 vgg16 googlenet \
        efficientnet_b0 --batch-size 256 --image-size 224 --precision bf16 --channels-last

For every backbone it measures, on synthetic data already on the device:

- ``baseline``: timm's model of the same architecture (torchvision's GoogLeNet: timm has none)
  in a plain PyTorch loop, eager and compiled;
- ``ours``: our backbone in the same loop, eager and compiled; inference also through the path
  ``predict``/``evaluate`` use (:func:`cvtasks.inference.optimize_network`): BatchNorm folded into
  the convolutions, compiled, with CUDA graphs on a GPU (``reduce-overhead``);
- ``ours/lightning``: our classification task (backbone + linear head, cross-entropy, its
  torchmetrics) trained by the Trainer ``train.py`` builds (its trainer config and per-step
  callbacks) from in-memory batches.

Like for like, except where the architectures differ: timm's ``vgg16`` ends in a ``ConvMlp``
(a 7x7 convolution to 4096 channels, then 1x1) where ours, like torchvision's, pools to 7x7 and
applies FC layers; and the Lightning task trains backbone features + a linear head, so for
AlexNet/VGG it skips their FC6/FC7 classifier (ResNet, GoogLeNet, EfficientNet end in pooling +
one linear layer either way).

Training is forward + backward + optimizer step (SGD, momentum 0.9; fused on CUDA); inference is
a forward pass under ``inference_mode``. Warm-up steps are excluded, CUDA is synchronized, and the
figure is the median of ``--windows`` timed windows. One table with ratios to the baseline's
best (compiled when compiled runs, else eager) and peak memory is printed; ``--json`` writes the
rows and ``--results`` (re)writes a section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cvtasks.inference import optimize_network
from cvtasks.registry import BACKBONES
from cvtasks.training.speed import enable_cuda_fast_math

from results import environment, report

NUM_CLASSES = 1000


def baseline_model(name: str) -> nn.Module:
    """timm's model of the architecture (torchvision's for GoogLeNet), randomly initialized."""
    if name == "googlenet":
        from torchvision.models import googlenet

        return googlenet(weights=None, aux_logits=False, init_weights=False)
    import timm

    return timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES)


def our_model(name: str) -> nn.Module:
    """Our backbone with its classifier (auxiliary heads off: the baselines have none)."""
    return BACKBONES.build(name, num_classes=NUM_CLASSES)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def timed(step: Callable[[], Any], args: argparse.Namespace, device: torch.device) -> float:
    """Median images/s over ``args.windows`` windows of ``args.steps`` calls, after warm-up."""
    for _ in range(args.warmup):
        step()
    sync(device)
    rates = []
    for _ in range(args.windows):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync(device)
        rates.append(args.steps * args.batch_size / (time.perf_counter() - start))
    return statistics.median(rates)


def optimizer_for(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, **fused)


def plain_train(model: nn.Module, args: argparse.Namespace, device: torch.device) -> float:
    """Images/s of the hand-written training loop people write."""
    model.train()
    optimizer = optimizer_for(model, device)
    images, labels = synthetic_batch(args, device)

    def step() -> None:
        with autocast(device, args.precision):
            loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return timed(step, args, device)


def plain_infer(model: nn.Module, args: argparse.Namespace, device: torch.device) -> float:
    """Images/s of forward passes under ``inference_mode``."""
    model.eval()
    images, _ = synthetic_batch(args, device)

    def step() -> None:
        with torch.inference_mode(), autocast(device, args.precision):
            model(images)

    return timed(step, args, device)


def synthetic_batch(
    args: argparse.Namespace, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    size = args.image_size
    images = torch.randn(args.batch_size, 3, size, size, device=device)
    if args.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, torch.randint(0, NUM_CLASSES, (args.batch_size,), device=device)


def prepared(model: nn.Module, args: argparse.Namespace, device: torch.device) -> nn.Module:
    model = model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def inference_variant(
    model: nn.Module, args: argparse.Namespace, device: torch.device
) -> nn.Module:
    """Our inference path: eval, BatchNorm folded, compiled (CUDA graphs on a GPU)."""
    return optimize_network(
        model, device, compile=args.inference_mode, channels_last=args.channels_last
    )


def lightning_rates(name: str, args: argparse.Namespace, device: torch.device) -> float:
    """Training images/s of our classification task through the Lightning Trainer."""
    from lightning_bench import lightning_train_rate

    return lightning_train_rate(name, args, device)


def memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def measure(
    rows: list[dict[str, Any]],
    backbone: str,
    who: str,
    variant: str,
    run: Callable[[], float],
    device: torch.device,
) -> None:
    """Run one measurement, record it and print progress."""
    memory_reset(device)
    torch.manual_seed(0)
    rate = run()
    row = {
        "backbone": backbone,
        "who": who,
        "variant": variant,
        "images_per_s": rate,
        "peak_gib": peak_gib(device),
    }
    rows.append(row)
    print(f"  {who:<16} {variant:<22} {rate:>10.1f} images/s", flush=True)
    torch._dynamo.reset()


def bench_backbone(name: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Every variant of one backbone, cheapest first, each pair (baseline, ours) back to back.

    Eager runs take seconds and compiled ones tens of seconds (compiling), so a run cut short
    by a time limit still holds eager figures and the compiled pairs finished so far.
    """
    rows: list[dict[str, Any]] = []
    print(f"{name}:", flush=True)
    builders = (("baseline", baseline_model), ("ours", our_model))
    for compiled in [False, True] if args.compile else [False]:
        tag = "compiled" if compiled else "eager"
        for kind, loop in (("train", plain_train), ("infer", plain_infer)):
            for who, build in builders:

                def run(build=build, compiled=compiled, loop=loop) -> float:
                    model = prepared(build(name), args, device)
                    return loop(torch.compile(model) if compiled else model, args, device)

                measure(rows, name, who, f"{kind} {tag}", run, device)
    if args.compile:

        def folded() -> float:
            model = inference_variant(prepared(our_model(name), args, device), args, device)
            return plain_infer(model, args, device)

        measure(rows, name, "ours", "infer folded+compiled", folded, device)
    if args.lightning:
        variant = "train compiled" if args.compile else "train eager"
        measure(
            rows,
            name,
            "ours/lightning",
            variant,
            lambda: lightning_rates(name, args, device),
            device,
        )
    return rows


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``ratio``: images/s over the baseline's best of the same kind (train or infer)."""
    for row in rows:
        kind = row["variant"].split()[0]
        base = [
            r["images_per_s"]
            for r in rows
            if r["backbone"] == row["backbone"]
            and r["who"] == "baseline"
            and r["variant"].startswith(kind)
        ]
        row["ratio"] = row["images_per_s"] / max(base) if base else None


WHO = ("baseline", "ours", "ours/lightning")
VARIANTS = ("train eager", "infer eager", "train compiled", "infer compiled")


def table_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows by backbone, then who, then variant (eager before compiled), whatever the order
    they were measured in."""
    backbones = list(dict.fromkeys(r["backbone"] for r in rows))

    def key(r: dict[str, Any]) -> tuple[int, int, int]:
        variant = VARIANTS.index(r["variant"]) if r["variant"] in VARIANTS else len(VARIANTS)
        return backbones.index(r["backbone"]), WHO.index(r["who"]), variant

    return sorted(rows, key=key)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backbone | who | variant | images/s | ratio to baseline's best | peak GiB |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in table_order(rows):
        peak = "—" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        lines.append(
            f"| {r['backbone']} | {r['who']} | {r['variant']} | {r['images_per_s']:.1f} "
            f"| {r['ratio']:.3f} | {peak} |"
        )
    return "\n".join(lines)


def base_parser(description: str) -> argparse.ArgumentParser:
    """The flags every throughput script shares: backbones, device, batch, precision, timing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backbones", nargs="+", default=["resnet18"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--precision", choices=("32", "bf16"), default="32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=5, help="timed windows (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="write the rows here")
    parser.add_argument("--results", default=None, help="section title in benchmarks/RESULTS.md")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--no-lightning", dest="lightning", action="store_false")
    parser.add_argument(
        "--inference-mode",
        default=True,
        type=lambda v: True if v == "auto" else v,
        help="torch.compile mode of the folded inference variant (auto: reduce-overhead on a GPU)",
    )
    return parser.parse_args(argv)


def setup_device(args: argparse.Namespace) -> torch.device:
    """The device, with the switches ``train.py`` sets on it (cuDNN autotuning, TF32 on CUDA)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        enable_cuda_fast_math()
    return device


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = setup_device(args)
    rows = [row for name in args.backbones for row in bench_backbone(name, args, device)]
    add_ratios(rows)
    env = environment(device)
    settings = (
        f"batch {args.batch_size}, {args.image_size}x{args.image_size}, precision "
        f"{args.precision}, channels_last {args.channels_last}, median of {args.windows} "
        f"windows of {args.steps} steps after {args.warmup} warm-up steps"
    )
    report(args, env, settings, table(rows), rows)


if __name__ == "__main__":
    main()
