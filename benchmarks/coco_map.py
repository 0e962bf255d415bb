"""COCO box mAP: the detection task's metric on faster-coco-eval against pycocotools.

    python benchmarks/coco_map.py [--images 300] [--repeats 3] [--results "COCO mAP backends, CPU"]

Feeds the same random scene (ground truth with some crowd boxes and negatives, noisy scored
detections with misses and false positives, 10 classes) to
:class:`cvtasks.metrics.CocoMeanAveragePrecision` on each backend and prints the time of one
``compute`` (best of ``--repeats``), the ratio, and the largest difference of the results, which
must be 0: the two run the same COCOeval algorithm. pycocotools must be installed (the ``dev``
extra).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from cvtasks.metrics import CocoMeanAveragePrecision

from results import report_cpu


def scene(images: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Detections and ground truth of ``images`` 96x96 images with 0-5 objects each."""
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for _ in range(images):
        n = int(torch.randint(0, 6, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 70
        boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 30 + 8], dim=1)
        labels = torch.randint(0, 10, (n,), generator=g)
        targets.append(
            {"boxes": boxes, "labels": labels, "iscrowd": torch.rand(n, generator=g) < 0.05}
        )
        keep = torch.rand(n, generator=g) < 0.9
        found = boxes[keep] + torch.randn(int(keep.sum()), 4, generator=g) * 2
        extra = torch.rand(20, 4, generator=g) * 60  # low-scored false positives, as decoded
        extra[:, 2:] += extra[:, :2] + 8
        preds.append(
            {
                "boxes": torch.cat([found, extra]),
                "scores": torch.cat(
                    [torch.rand(len(found), generator=g) * 0.5 + 0.5, torch.rand(20) * 0.3]
                ),
                "labels": torch.cat([labels[keep], torch.randint(0, 10, (20,), generator=g)]),
            }
        )
    return preds, targets


def timed(backend: str, preds: list[dict], targets: list[dict], repeats: int):
    """Best time of update + compute, and the results."""
    best, results = float("inf"), None
    for _ in range(repeats):
        metric = CocoMeanAveragePrecision(backend=backend)
        start = time.perf_counter()
        metric.update(preds, targets)
        results = metric.compute()
        best = min(best, time.perf_counter() - start)
    return best, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", default=None, help="section title in benchmarks/RESULTS.md")
    args = parser.parse_args()
    preds, targets = scene(args.images)
    ours_s, ours = timed("faster_coco_eval", preds, targets, args.repeats)
    base_s, base = timed("pycocotools", preds, targets, args.repeats)
    diff = max(
        float((ours[k].float() - base[k].float()).abs().max())
        for k in ours
        if k != "classes" and ours[k].numel()
    )
    settings = (
        f"{args.images} images, {sum(len(p['boxes']) for p in preds)} detections, 10 classes; "
        f"update + compute, best of {args.repeats}; largest difference of any result: {diff}"
    )
    rows = [
        "| backend | seconds | map | ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| faster_coco_eval (ours) | {ours_s:.3f} | {float(ours['map']):.4f} | "
        f"{base_s / ours_s:.2f}x |",
        f"| pycocotools (baseline) | {base_s:.3f} | {float(base['map']):.4f} | 1.00x |",
    ]
    report_cpu(args.results, settings, rows, sys.argv)


if __name__ == "__main__":
    main()
