"""Pairs lists in LFW's ``pairs.txt`` form: read, write, resolve to image files, or draw.

LFW's pairs file: an optional header (``10 300``: folds and pairs per kind per fold, or one
count), then one pair per line, ``name i j`` (two images of one person) or ``name1 i name2 j``;
image ``i`` of ``name`` is ``<image folder>/name/name_<i:04d>.<ext>``. Without a pairs file,
:func:`draw_pairs` draws half same, half different pairs with a fixed seed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cvtasks.data.datamodule import check_choice
from cvtasks.data.images import file_problem, is_image_file

ON_PROBLEM = ("error", "skip")
Pair = tuple[str, str, int]  # (image a, image b, same)


class PairEntry(NamedTuple):
    """One line of a pairs file: image ``idx_a`` of ``name_a`` against ``idx_b`` of ``name_b``."""

    name_a: str
    idx_a: int
    name_b: str
    idx_b: int
    line: int = 0

    @property
    def same(self) -> int:
        """1 when both images show one person."""
        return int(self.name_a == self.name_b)


def image_name(name: str, index: int) -> str:
    """LFW's file stem of image ``index`` (1-based) of ``name``: ``name_0001``."""
    return f"{name}_{index:04d}"


def parse_pairs_file(path: str | os.PathLike[str]) -> list[PairEntry]:
    """Read an LFW-style pairs file (see the module docstring).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a line is neither ``name i j`` nor ``name1 i name2 j``; names file and line.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pairs file {path} does not exist")
    entries: list[PairEntry] = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        tokens = text.split()
        if not tokens or (not entries and len(tokens) <= 2 and all(t.isdigit() for t in tokens)):
            continue  # blank line or header
        try:
            if len(tokens) == 3:
                entries.append(
                    PairEntry(tokens[0], int(tokens[1]), tokens[0], int(tokens[2]), number)
                )
            elif len(tokens) == 4:
                entries.append(
                    PairEntry(tokens[0], int(tokens[1]), tokens[2], int(tokens[3]), number)
                )
            else:
                raise ValueError(f"{len(tokens)} fields")
        except ValueError as err:
            raise ValueError(
                f"{path}:{number}: expected 'name i j' or 'name1 i name2 j', got {text!r} ({err})"
            ) from None
    return entries


def write_pairs_file(
    path: str | os.PathLike[str], entries: Sequence[PairEntry], folds: int = 1
) -> None:
    """Write ``entries`` as an LFW pairs file; with ``folds > 1`` the header is ``folds n``."""
    per_fold = len(entries) // (2 * folds) if folds > 1 else 0
    header = f"{folds}\t{per_fold}" if per_fold else str(len(entries))
    lines = [header]
    for e in entries:
        fields = (e.name_a, e.idx_a, e.idx_b) if e.same else (e.name_a, e.idx_a, e.name_b, e.idx_b)
        lines.append("\t".join(map(str, fields)))
    Path(path).write_text("\n".join(lines) + "\n")


def resolve_pairs(
    entries: Sequence[PairEntry],
    image_dir: str | os.PathLike[str],
    source: str,
    on_missing_file: str = "error",
    identities: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[Pair], int]:
    """Image paths of each entry, found as ``image_dir/name/name_0001.<any image suffix>``.

    Args:
        entries: parsed pairs.
        image_dir: the folder holding the identity folders.
        source: where the entries come from, for messages (the pairs file).
        on_missing_file: ``"error"`` raises on a pair naming a missing image; ``"skip"`` drops it.
        identities: ``{name: image paths}`` already listed (by
            :func:`~cvtasks.data.identity_folders.scan_identities`, whose rules for links and
            special files then hold); by default each named folder is listed here, regular
            files only.

    Returns:
        ``([(path_a, path_b, same), ...], number of pairs dropped)``.

    Raises:
        FileNotFoundError: a missing image under ``on_missing_file=error``, naming the file.
        ValueError: two files are the same image of a person (``ann_0001.jpg`` and
            ``ann_0001.png``), naming both.
    """
    check_choice("data.on_missing_file", on_missing_file, ON_PROBLEM)
    image_dir = Path(image_dir)
    listing: dict[str, dict[str, str]] = {}

    def find(name: str, index: int) -> str | None:
        if name not in listing:
            listing[name] = _by_stem(name, image_dir, identities)
        return listing[name].get(image_name(name, index))

    pairs: list[Pair] = []
    skipped = 0
    for e in entries:
        path_a, path_b = find(e.name_a, e.idx_a), find(e.name_b, e.idx_b)
        if path_a and path_b:
            pairs.append((path_a, path_b, e.same))
            continue
        if on_missing_file == "skip":
            skipped += 1
            continue
        name, index = (e.name_a, e.idx_a) if not path_a else (e.name_b, e.idx_b)
        missing = image_dir / name / (image_name(name, index) + ".*")
        raise FileNotFoundError(
            f"{source}:{e.line}: image {missing} does not exist (image {index} of {name!r}). "
            "Fix the pairs file, or set data.on_missing_file=skip to drop such pairs."
        )
    return pairs, skipped


def _by_stem(
    name: str, image_dir: Path, identities: Mapping[str, Sequence[str]] | None
) -> dict[str, str]:
    """``{file stem: path}`` of a person's images; two files with one stem are an error."""
    if identities is not None:
        paths = list(identities.get(name, ()))
    else:
        folder = image_dir / name
        files = sorted(folder.iterdir()) if folder.is_dir() else []
        # only regular files: a FIFO named like an image would block its reader forever
        paths = [str(p) for p in files if is_image_file(p) and file_problem(p) is None]
    found: dict[str, str] = {}
    for path in paths:
        stem = Path(path).stem
        if stem in found:
            raise ValueError(
                f"{found[stem]} and {path} are both image {stem!r} of {name!r}, so a pair "
                "naming it is ambiguous; keep one of them"
            )
        found[stem] = path
    return found


def draw_pairs(
    counts: Mapping[str, int], num_pairs: int, seed: int = 0, folds: int = 1
) -> list[PairEntry]:
    """Half same, half different pairs over identities with ``counts[name]`` images, seeded.

    Same pairs pick a person with at least two images, then two distinct images; different
    pairs two distinct people and one image of each. No pair repeats. Pairs come fold by fold,
    each fold its same pairs then its different ones, as in LFW's ``pairs.txt``.

    Args:
        counts: images per identity; image indices are 1-based.
        num_pairs: pairs wanted (fewer come back when the identities cannot form them).
        seed: the seed.
        folds: number of folds.
    """
    per_kind = num_pairs // (2 * folds)
    if per_kind < 1:
        raise ValueError(f"{num_pairs} pairs cannot fill {folds} folds of same and different pairs")
    rng = np.random.default_rng(seed)
    names = sorted(counts)
    multi = [n for n in names if counts[n] >= 2]
    seen: set[tuple[tuple[str, int], ...]] = set()
    # how many distinct pairs of each kind exist: once all are drawn, stop asking for more
    images, same = sum(counts.values()), sum(n * (n - 1) // 2 for n in counts.values())
    left = {True: same, False: images * (images - 1) // 2 - same}

    def draw(kind_same: bool) -> PairEntry | None:
        if left[kind_same] == 0:
            return None
        for _ in range(100):
            if kind_same:
                if not multi:
                    return None
                name = multi[rng.integers(len(multi))]
                i, j = (rng.choice(counts[name], size=2, replace=False) + 1).tolist()
                entry = PairEntry(name, i, name, j)
            else:
                if len(names) < 2:
                    return None
                a, b = rng.choice(len(names), size=2, replace=False).tolist()
                idx = (1 + rng.integers(counts[names[a]]), 1 + rng.integers(counts[names[b]]))
                entry = PairEntry(names[a], int(idx[0]), names[b], int(idx[1]))
            key = tuple(sorted([(entry.name_a, entry.idx_a), (entry.name_b, entry.idx_b)]))
            if key not in seen:
                seen.add(key)
                left[kind_same] -= 1
                return entry
        return None

    entries: list[PairEntry] = []
    for _ in range(folds):
        for kind_same in (True, False):
            drawn = (draw(kind_same) for _ in range(per_kind))
            entries.extend(e for e in drawn if e is not None)
    return entries
