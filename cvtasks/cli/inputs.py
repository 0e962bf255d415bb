"""Inputs of ``predict``: image files from a file, folder or glob, read into batches.

Files that are not images are listed with the reason; an image that cannot be decoded becomes
an error entry of its batch (named by path), so one bad file never stops a run. Folders are
listed as datasets are (:class:`~cvtasks.data.scan.FolderScan`): every link followed, but no
loop, each real file once, hidden entries passed over; FIFOs, devices and sockets, empty files
and second paths of one file are listed as skipped, with the reason.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from cvtasks.cli.common import TrainedModel
from cvtasks.data.images import BadImageError, file_problem, is_image_file, read_image
from cvtasks.data.scan import FolderScan

Skipped = list[tuple[str, str]]


def find_inputs(spec: str) -> tuple[list[Path], Skipped]:
    """The image files named by ``spec``, and the other files found, with why they are skipped.

    Args:
        spec: an image file, a folder (searched recursively) or a glob pattern (``**`` for any
            depth).

    Raises:
        FileNotFoundError: nothing matches ``spec``.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        images, skipped = _scan_folder(path, [])
    elif os.path.lexists(path):  # one file named: take it whatever its suffix, if it is one
        problem = file_problem(path)
        return ([], [(str(path), problem)]) if problem else ([path], [])
    else:
        images, skipped = _glob(str(path))
    if not images and not skipped:
        raise FileNotFoundError(f"input={spec}: no such file or folder, and no file matches it")
    return [Path(p) for p in images], sorted(skipped)


def _scan_folder(folder: Path, pattern: list[str]) -> tuple[list[str], Skipped]:
    """Images under ``folder`` whose path below it matches ``pattern`` (glob parts; ``[]``: all)."""
    scan = FolderScan(folder, follow_links=True, on_empty="skip")
    images = scan.files(folder, group="input")
    skipped = scan.skipped_files() + [_not_an_image(p) for p in scan.not_images]
    if pattern:
        images = [p for p in images if _matches(Path(p).relative_to(folder).parts, pattern)]
        skipped = [s for s in skipped if _matches(Path(s[0]).relative_to(folder).parts, pattern)]
    return images, skipped


def _glob(pattern: str) -> tuple[list[str], Skipped]:
    """Files matching a glob pattern; ``**`` is walked by the scan, which never loops (Python's
    own recursive glob follows links into loops and can run for ever)."""
    parts = Path(pattern).parts
    if "**" in parts:
        first = next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))
        base = Path(*parts[:first]) if first else Path(".")
        return _scan_folder(base, list(parts[first:])) if base.is_dir() else ([], [])
    images: list[str] = []
    skipped: Skipped = []
    seen: dict[tuple[int, int], str] = {}
    for match in sorted(glob.glob(pattern)):
        if os.path.isdir(match):
            continue
        if problem := file_problem(match):
            skipped.append((match, problem))
        elif not is_image_file(match):
            skipped.append(_not_an_image(match))
        elif (info := os.stat(match)).st_size == 0:
            skipped.append((match, "empty (0 bytes)"))
        else:
            first = seen.setdefault((info.st_dev, info.st_ino), match)
            if first == match:
                images.append(match)
            else:
                skipped.append((match, f"the same file as {first}"))
    return images, skipped


def _not_an_image(path: str) -> tuple[str, str]:
    return path, f"not an image file ({Path(path).suffix or 'no suffix'})"


def _matches(parts: tuple[str, ...], pattern: list[str]) -> bool:
    """Whether path ``parts`` match glob ``pattern`` parts (``**``: any number of folders)."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_matches(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return (
        bool(parts)
        and fnmatch.fnmatchcase(parts[0], pattern[0])
        and _matches(parts[1:], pattern[1:])
    )


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
    """A unique file stem per input path (``name``, ``name_2``, ... for repeated stems).

    Stems differing only in case (``A.jpg``, ``a.png``) are repeats too: on a case-insensitive
    disk (macOS, Windows) their pictures would overwrite each other.
    """
    names: dict[str, str] = {}
    taken: set[str] = set()
    for path in files:
        stem, k = path.stem, 1
        while (name := stem if k == 1 else f"{stem}_{k}").casefold() in taken:
            k += 1
        taken.add(name.casefold())
        names[str(path)] = name
    return names
