"""The data check's report: per-split counts and image sizes, duplicates, faults; text or JSON."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cvtasks.data.checks.faults import Fault
from cvtasks.data.checks.samples import IDENTITY_UNIT, ImageRecord, SplitSamples

_CHUNK = 1 << 20


@dataclass
class SplitSummary:
    """What one split holds.

    Attributes:
        images: distinct images listed.
        unit: what ``counts`` counts (``images``, ``boxes``, ``labels``, ...).
        counts: per class (point, identity) name.
        sizes: ``{"width": {"min", "median", "max"}, "height": {...}}`` of the readable images
            (empty when none could be read).
        note: why the split was not read, when it was not.
    """

    images: int
    unit: str
    counts: dict[str, int]
    sizes: dict[str, dict[str, float]]
    note: str | None = None

    @classmethod
    def of(cls, samples: SplitSamples) -> SplitSummary:
        """Sum the records of a split."""
        counts: Counter[str] = Counter()
        for record in samples.records:
            counts.update(record.counts)
        ordered = dict(sorted(counts.items(), key=lambda item: _natural(item[0])))
        sizes = size_stats(samples.records)
        return cls(len(samples.records), samples.unit, ordered, sizes, samples.note)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; identity splits give the number of identities beside the counts."""
        out: dict[str, Any] = {"images": self.images, "unit": self.unit, "counts": self.counts}
        if self.unit == IDENTITY_UNIT:
            out["identities"] = len(self.counts)
        if self.note:
            out["note"] = self.note
        return {**out, **self.sizes}


@dataclass
class DataReport:
    """The whole check: the data set, each split's summary, and every fault found."""

    data: str
    root: str | None
    splits: dict[str, SplitSummary] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    duplicates: list[list[tuple[str, str]]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Whether nothing is wrong."""
        return not self.faults

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (the ``format=json`` output)."""
        return {
            "data": self.data,
            "root": self.root,
            "clean": self.clean,
            "errors": len(self.faults),
            "splits": {name: summary.as_dict() for name, summary in self.splits.items()},
            "duplicates": [
                [{"split": split, "path": path} for split, path in group]
                for group in self.duplicates
            ],
            "faults": [fault.as_dict() for fault in self.faults],
        }


def size_stats(records: Iterable[ImageRecord]) -> dict[str, dict[str, float]]:
    """Min, median and max width and height of the records whose image was read."""
    sizes = np.array([r.size for r in records if r.size is not None], dtype=np.float64)
    if not sizes.size:
        return {}
    stats = {}
    for axis, name in ((1, "width"), (0, "height")):
        values = sizes[:, axis]
        median = float(np.median(values))
        stats[name] = {
            "min": int(values.min()),
            "median": int(median) if median.is_integer() else median,
            "max": int(values.max()),
        }
    return stats


def file_hash(path: str) -> str | None:
    """BLAKE2b of the file's bytes (hex), ``None`` when it cannot be read."""
    digest = hashlib.blake2b(digest_size=20)
    try:
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def duplicates_across_splits(
    files: Mapping[str, Iterable[str]], digests: Mapping[str, str] | None = None
) -> list[list[tuple[str, str]]]:
    """Groups of distinct files with the same bytes found in more than one split.

    One file listed by two splits (a config giving the same annotation file for val and test)
    is the config's choice, as the readers treat it, and is not reported; a copy is.

    Args:
        files: the image files of each split.
        digests: hashes already known by path (images read from shards, not from files).

    Returns:
        Each group as sorted ``(split, path)`` pairs; groups sorted by their first pair.
    """
    by_hash: dict[str, set[tuple[str, str]]] = {}
    for split, paths in files.items():
        for path in set(paths):
            digest = (digests or {}).get(path) or file_hash(path)
            if digest is not None:
                by_hash.setdefault(digest, set()).add((split, path))
    groups = [
        sorted(group)
        for group in by_hash.values()
        if len({s for s, _ in group}) > 1 and len({p for _, p in group}) > 1
    ]
    return sorted(groups)


def duplicate_fault(group: list[tuple[str, str]]) -> Fault:
    """The fault of one group of :func:`duplicates_across_splits`."""
    listed = ", ".join(f"{split}: {path}" for split, path in group)
    return Fault(
        "duplicate",
        group[0][1],
        f"the same image in more than one split ({listed}); keep one copy in one split",
    )


def _size_text(stats: Mapping[str, float] | None) -> str:
    if not stats:
        return "-"
    return f"{stats['min']:g}/{stats['median']:g}/{stats['max']:g}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if k == 0 else cell.rjust(w)
            for k, (cell, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    ]


def format_text(report: DataReport) -> str:
    """The human-readable report: splits and image sizes, counts per class, then every fault."""
    lines = [f"data: {report.data}" + (f" ({report.root})" if report.root else "")]
    if report.splits:
        lines += ["", *_split_table(report), "", *_count_table(report)]
    if report.clean:
        return "\n".join([*lines, "", "no errors found"])
    lines += ["", f"{len(report.faults)} error(s):"]
    for fault in report.faults:
        split = f"{fault.split}: " if fault.split else ""
        text = fault.message if fault.where in fault.message else f"{fault.where}: {fault.message}"
        lines.append(f"  [{fault.kind}] {split}{text}")
    return "\n".join(lines)


def _split_table(report: DataReport) -> list[str]:
    rows = [["split", "images", "width min/med/max", "height min/med/max"]]
    for name, summary in report.splits.items():
        width, height = summary.sizes.get("width"), summary.sizes.get("height")
        rows.append([name, str(summary.images), _size_text(width), _size_text(height)])
    notes = [f"{name}: {s.note}" for name, s in report.splits.items() if s.note]
    return [*_table(rows), *notes]


def _count_table(report: DataReport) -> list[str]:
    """Counts per class and split; identity splits give their number of identities instead."""
    splits = list(report.splits)
    units = {summary.unit for summary in report.splits.values()}
    if units == {IDENTITY_UNIT}:
        identities = [str(len(report.splits[s].counts)) for s in splits]
        return _table([["", *splits], ["identities", *identities]])
    names = sorted({n for s in report.splits.values() for n in s.counts}, key=_natural)
    rows = [[f"class ({' / '.join(sorted(units))})", *splits]]
    rows += [[n, *(str(report.splits[s].counts.get(n, 0)) for s in splits)] for n in names]
    return _table(rows)


def _natural(name: str) -> tuple[int, int | str]:
    """Numeric class names in numeric order (2 before 10), then the others by name."""
    return (0, int(name)) if name.isdigit() else (1, name)
