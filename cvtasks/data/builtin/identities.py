"""What the built-in identity datasets share: writing identity folders + pairs files once.

A built-in identity dataset (``synthetic_identities``, ``digits_identities``) is written once
into the cache in the format people already have — ``{train,val,test}/<person>/<image>`` and
LFW-style ``val_pairs.txt`` / ``test_pairs.txt`` — and read back by the same reader as any
identity folder, :class:`~cvtasks.data.identity_folders.IdentityFoldersDataModule`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from cvtasks.data.builtin.base import WrittenOnFirstUse
from cvtasks.data.cache import write_once
from cvtasks.data.identity_folders import IdentityFoldersDataModule
from cvtasks.data.pairs import draw_pairs, image_name, write_pairs_file

FOLDS = 10  # LFW's pairs.txt holds 10 folds


def write_identity_dataset(
    final: str | os.PathLike[str],
    splits: Mapping[str, Mapping[str, Iterable[Image.Image]]],
    pairs: Mapping[str, int],
    seed: int,
    suffix: str = ".png",
) -> Path:
    """Write identity folders and pairs files into ``final`` unless it is there already.

    Written in one step by :func:`~cvtasks.data.cache.write_once`: a reader never sees half a
    dataset.

    Args:
        final: the dataset folder.
        splits: ``{split: {person: images}}``; image ``i`` (1-based) of ``person`` is written as
            ``split/person/person_<i:04d><suffix>``. The images may be drawn lazily.
        pairs: ``{split: number of pairs}`` to draw (seeded, half same) into
            ``<split>_pairs.txt``, in :data:`FOLDS` folds when there are enough pairs for them.
        seed: the seed of the drawn pairs.
        suffix: the image file suffix (``.png`` or ``.jpg``).

    Returns:
        ``final``.
    """

    def fill(tmp: Path) -> None:
        for split, people in splits.items():
            counts: dict[str, int] = {}
            for name, images in people.items():
                folder = tmp / split / name
                folder.mkdir(parents=True)
                for i, image in enumerate(images, start=1):
                    path = folder / f"{image_name(name, i)}{suffix}"
                    image.save(path, **({"quality": 92} if suffix == ".jpg" else {}))
                    counts[name] = i
            if split in pairs:
                folds = FOLDS if pairs[split] >= 2 * FOLDS else 1  # small sets: one fold
                entries = draw_pairs(counts, pairs[split], seed=seed, folds=folds)
                write_pairs_file(tmp / f"{split}_pairs.txt", entries, folds=folds)

    return write_once(final, fill)


class BuiltinIdentitiesDataModule(WrittenOnFirstUse, IdentityFoldersDataModule):
    """:class:`IdentityFoldersDataModule` over a built-in dataset, writing it first if needed.

    Args:
        folder: the dataset folder ``write()`` fills.
        write: writes the dataset unless it is there (a picklable callable, e.g. a
            ``functools.partial`` of a module-level writer, so that DDP workers can rebuild it).
        **kwargs: :class:`IdentityFoldersDataModule` options; the pairs files are the written
            ``val_pairs.txt`` and ``test_pairs.txt``.
    """

    def __init__(self, folder: Path, write: Callable[[], Path], **kwargs: Any) -> None:
        self.write = write
        super().__init__(folder, val_pairs="val_pairs.txt", test_pairs="test_pairs.txt", **kwargs)

    def write_dataset(self) -> Path:
        """Write the dataset unless it is there, by the ``write`` given."""
        return self.write()
