"""What every built-in dataset shares: a folder in the cache, written before anything reads it.

A built-in dataset is generated once into ``default_cache_dir() / "data"`` (or a ``root`` the
user gives) in a format one of the ordinary readers reads, and its DataModule is that reader plus
:class:`WrittenOnFirstUse`, which writes the files first.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from pathlib import Path

from cvtasks.data.cache import default_cache_dir


def builtin_root(root: str | os.PathLike[str] | None) -> Path:
    """The folder that holds the built-in datasets' folders.

    Args:
        root: the user's folder; ``None`` means ``default_cache_dir() / "data"``.

    Returns:
        ``root`` as a path, or the cache's data folder.
    """
    return default_cache_dir() / "data" if root is None else Path(root)


class WrittenOnFirstUse:
    """Mixin for a built-in dataset's DataModule: the files are written before they are read.

    List it before the reader, ``class DigitsDataModule(WrittenOnFirstUse,
    ImageFolderDataModule)``, and implement :meth:`write_dataset`. Lightning's ``prepare_data``
    writes the dataset once per node; the reader's ``prepare_root`` hook, which runs before it
    reads its folder, writes it again if missing, because ``setup`` may run in a process where
    ``prepare_data`` did not. A written dataset is left as it is, so the second call costs a
    folder check.
    """

    @abstractmethod
    def write_dataset(self) -> Path:
        """Write the dataset unless it is there already; return its folder."""

    def prepare_data(self) -> None:
        """Write the dataset (Lightning runs this once per node, before ``setup``)."""
        self.write_dataset()

    def prepare_root(self) -> None:
        """Write the dataset if missing: ``setup`` may run where ``prepare_data`` did not."""
        self.write_dataset()
