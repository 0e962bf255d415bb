"""Inputs of ``predict``: image files from a file, folder or glob, read into batches.

Files that are not images are listed with the reason; an image that cannot be decoded becomes
an error entry of its batch (named by path), so one bad file never stops a run.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from cvtasks.cli.common import TrainedModel
from cvtasks.data.images import BadImageError, is_image_file, read_image


def find_inputs(spec: str) -> tuple[list[Path], list[tuple[str, str]]]:
    """The image files named by ``spec``, and the other files found, with why they are skipped.

    Args:
        spec: an image file, a folder (searched recursively) or a glob pattern.

    Raises:
        FileNotFoundError: nothing matches ``spec``.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return [path], []
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    else:
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    if not found:
        raise FileNotFoundError(f"input={spec}: no such file or folder, and no file matches it")
    images = [p for p in found if is_image_file(p)]
    others = [(str(p), f"not an image file ({p.suffix or 'no suffix'})") for p in found]
    return images, [o for o, p in zip(others, found) if not is_image_file(p)]


class ImageFiles(Dataset):
    """Image files as ``{"image", "orig_size", "path"}`` samples; an unreadable file gives
    ``{"path", "error"}`` instead of stopping the run."""

    def __init__(self, files: list[Path], transform: Callable[..., dict[str, Any]]) -> None:
        self.files = files
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = str(self.files[index])
        try:
            array = read_image(path)
        except BadImageError as err:
            return {"path": path, "error": str(err)}
        return {
            "image": self.transform(image=array)["image"],
            "orig_size": torch.tensor(array.shape[:2], dtype=torch.int64),
            "path": path,
        }


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the readable samples; the unreadable ones go to ``errors``."""
    good = [s for s in samples if "error" not in s]
    batch: dict[str, Any] = {"errors": [(s["path"], s["error"]) for s in samples if "error" in s]}
    if good:
        batch["image"] = torch.stack([s["image"] for s in good])
        batch["orig_size"] = torch.stack([s["orig_size"] for s in good])
        batch["path"] = [s["path"] for s in good]
    return batch


def loader(files: list[Path], model: TrainedModel, cfg: DictConfig) -> DataLoader:
    """Batches of the files, pre-processed as in training."""
    return DataLoader(
        ImageFiles(files, model.transform()),
        batch_size=int(cfg.batch_size),
        num_workers=int(cfg.num_workers),
        collate_fn=collate,
    )


def picture_names(files: Iterable[Path]) -> dict[str, str]:
    """A unique file stem per input path (``name``, ``name_2``, ... for repeated stems)."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for path in files:
        stem, k = path.stem, 1
        while (name := stem if k == 1 else f"{stem}_{k}") in taken:
            k += 1
        taken.add(name)
        names[str(path)] = name
    return names
