"""Siamese predictions over a whole set: nearest gallery identities and pair scores.

A siamese model predicts an embedding per image; what people want from it are matches. After
``predict`` has embedded every input, :func:`search_and_draw` adds to each record its nearest
gallery identities (``gallery=DIR`` with one sub-folder per identity; without it, the other
inputs, leaving each image out of its own search) and draws the strips; with ``pairs=FILE`` (one
``image_a image_b`` pair per line, paths relative to the file) it also scores the pairs into
``pairs.jsonl`` and draws each pair.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from PIL import Image

from cvtasks.cli.common import TrainedModel, save_picture, write_lines
from cvtasks.cli.inputs import loader
from cvtasks.data.identity_folders import scan_identities
from cvtasks.data.images import read_image
from cvtasks.inference import Predictor
from cvtasks.tasks.siamese import gallery_search
from cvtasks.viz.pairs import draw_gallery
from cvtasks.viz.views import view_for

log = logging.getLogger(__name__)


class LazyImages(Sequence[Image.Image]):
    """Images read from their files when indexed (a gallery's pictures, read only for hits)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Image.Image:  # type: ignore[override]
        return Image.fromarray(read_image(self.paths[index]))


def embed_files(
    predictor: Predictor, model: TrainedModel, paths: Sequence[str], cfg: DictConfig
) -> tuple[list[str], torch.Tensor]:
    """Embeddings of the readable files among ``paths`` (and those files, in order)."""
    kept: list[str] = []
    chunks: list[torch.Tensor] = []
    for batch in loader([Path(p) for p in paths], model, cfg):
        for path, reason in batch["errors"]:
            log.warning("skipped %s: %s", path, reason)
        if "image" in batch:
            chunks.append(predictor.forward(batch["image"]).float().cpu())
            kept.extend(batch["path"])
    dim = int(getattr(predictor.task.head, "embedding_dim", 0))
    return kept, torch.cat(chunks) if chunks else torch.empty(0, dim)


def input_identities(paths: Sequence[str]) -> list[str]:
    """Identity of each input: its folder's name when the inputs span folders, else its stem."""
    parents = {Path(p).parent for p in paths}
    return [Path(p).parent.name if len(parents) > 1 else Path(p).stem for p in paths]


def _threshold(predictor: Predictor) -> float | None:
    value = float(predictor.task.threshold)
    return value if math.isfinite(value) else None


def _distances(predictor: Predictor, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    task = predictor.task
    with torch.inference_mode():
        distances = task.cross_score(query.to(predictor.device), gallery.to(predictor.device))
    return distances.cpu().clone()  # a normal tensor, which callers may change in place


def search_and_draw(
    predictor: Predictor,
    model: TrainedModel,
    records: list[dict[str, Any]],
    names: dict[str, str],
    cfg: DictConfig,
    output: Path,
) -> None:
    """Add ``matches`` to every record, draw the gallery strips, and score ``cfg.pairs``."""
    query = torch.tensor([r["embedding"] for r in records], dtype=torch.float32)
    query_paths = [r["path"] for r in records]
    if cfg.get("gallery"):
        folders = scan_identities(cfg.gallery)
        listed = [(person, path) for person, paths in folders.items() for path in paths]
        gallery_paths, gallery = embed_files(predictor, model, [p for _, p in listed], cfg)
        by_path = {path: person for person, path in listed}
        identities = [by_path[p] for p in gallery_paths]
        distances = _distances(predictor, query, gallery)
    else:
        gallery_paths, gallery, identities = query_paths, query, input_identities(query_paths)
        distances = _distances(predictor, query, gallery)
        distances.fill_diagonal_(math.inf)  # an image is not its own match
    threshold = _threshold(predictor)
    pictures = LazyImages(gallery_paths)
    for record, hits in zip(records, gallery_search(distances, identities, int(cfg.top_k))):
        hits = [h for h in hits if math.isfinite(h["distance"])]
        record["matches"] = [
            {
                "identity": h["identity"],
                "distance": h["distance"],
                "path": gallery_paths[h["index"]],
                "same": None if threshold is None else h["distance"] <= threshold,
            }
            for h in hits
        ]
        record["threshold"] = threshold
        if cfg.pictures and hits:
            query_image = Image.fromarray(read_image(record["path"]))
            strip = draw_gallery(query_image, hits, pictures, threshold=threshold)
            save_picture(strip, output / "pictures" / f"{names[record['path']]}.png")
    if cfg.get("pairs"):
        score_pairs(predictor, model, Path(cfg.pairs), cfg, output)


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """``(image_a, image_b)`` per non-empty, non-comment line, relative to the file's folder."""
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: expected 'image_a image_b', got {line!r}")
        pairs.append(tuple(str((path.parent / f).resolve()) for f in fields))
    return pairs  # type: ignore[return-value]


def score_pairs(
    predictor: Predictor, model: TrainedModel, pairs_file: Path, cfg: DictConfig, output: Path
) -> None:
    """Distance and verdict of every pair in ``pairs_file`` into ``pairs.jsonl`` and pictures."""
    pairs = read_pairs(pairs_file)
    paths, embeddings = embed_files(
        predictor, model, sorted({p for pair in pairs for p in pair}), cfg
    )
    index = {p: k for k, p in enumerate(paths)}
    threshold = _threshold(predictor)
    lines = []
    for k, (a, b) in enumerate(pairs):
        if a not in index or b not in index:
            lines.append({"path": a, "path_b": b, "error": "an image of the pair is unreadable"})
            continue
        ea, eb = embeddings[index[a]][None], embeddings[index[b]][None]
        with torch.inference_mode():
            d = float(predictor.task.score(ea.to(predictor.device), eb.to(predictor.device))[0])
        same = None if threshold is None else d <= threshold
        lines.append({"path": a, "path_b": b, "distance": d, "same": same, "threshold": threshold})
        if cfg.pictures:
            image = Image.fromarray(read_image(a))
            other = Image.fromarray(read_image(b))
            result = {"other": other, "distance": d, "threshold": threshold}
            picture = view_for(predictor.task).picture(image, result)
            if picture is not None:
                name = f"{k:04d}_{Path(a).stem}_{Path(b).stem}.png"
                save_picture(picture, output / "pairs" / name)
    write_lines(output / "pairs.jsonl", lines)
