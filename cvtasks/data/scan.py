"""Listing image files under a dataset folder: each real file once, never through a loop.

Folder readers (class folders, image + mask folders, identity folders) list their files through
one :class:`FolderScan`. Its rules:

- only regular files with an image suffix count; FIFOs, sockets and device nodes (which would
  block ``open()`` forever), broken links and unreadable folders are skipped;
- a symbolic link is followed when its target lies inside the dataset root; a link leaving the
  root is skipped unless ``follow_links`` (``data.follow_links=true``);
- a link back to a folder being listed (or to the root) is a loop and is skipped;
- a real file (same device and inode: a link or a hard link) is listed once: found again in
  the same group (one class of one split) it is a duplicate and skipped; found in another
  group it would be two samples with different labels or splits, so :class:`DuplicateFileError`
  names both paths;
- hidden entries (``.name``) and archive/NAS metadata folders (``__MACOSX``, ``@eaDir``, which
  hold resource forks and thumbnails of the real images) are passed over;
- an empty (0-byte) image file is an error naming it, or skipped under ``on_empty="skip"``.

Whatever was skipped is reported in one :class:`DataScanWarning` per scan by :meth:`warn`, with
a count and an example per reason.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cvtasks.data.images import file_kind, is_image_file

METADATA_FOLDERS = frozenset({"__MACOSX", "@eaDir"})
"""Folders that archivers and NAS boxes add beside images; they never hold samples."""
ON_EMPTY = ("error", "skip")
_REASONS = {
    "outside": "symbolic link(s) leaving {root}",
    "loop": "link loop(s) back to a folder being listed",
    "broken": "broken link(s)",
    "special": "special file(s) with an image name (FIFO, socket, device)",
    "duplicate": "second path(s) of a file or folder already listed",
    "unreadable": "unreadable file(s) or folder(s)",
    "empty": "empty (0-byte) image file(s)",
}
_SHOWN = 3


class DataScanWarning(UserWarning):
    """Files or folders a dataset scan passed over (links, duplicates, special files)."""


class DuplicateFileError(ValueError):
    """One real file reached from two groups (two classes, splits or identities)."""


def is_skipped_name(name: str) -> bool:
    """Hidden entries and archive/NAS metadata folders, which never hold samples."""
    return name.startswith(".") or name in METADATA_FOLDERS


class FolderScan:
    """A scan of one dataset root; share it across splits so that duplicates are seen.

    Args:
        root: the dataset root (``data.root``); links may not leave it unless ``follow_links``.
        follow_links: also follow links whose target lies outside ``root``.
        on_empty: ``"error"``: an empty image file raises (naming it) when the scan ends;
            ``"skip"``: it is left out and reported with the other skipped files.
    """

    def __init__(
        self, root: str | os.PathLike[str], follow_links: bool = False, on_empty: str = "error"
    ) -> None:
        if on_empty not in ON_EMPTY:
            raise ValueError(f"on_empty must be one of {ON_EMPTY}, got {on_empty!r}")
        self.root = Path(root).expanduser()
        self.real_root = os.path.realpath(self.root)
        self.follow_links = bool(follow_links)
        self.on_empty = on_empty
        #: reason → ``(path, what it is)`` of what was passed over (see the module docstring).
        self.skipped: dict[str, list[tuple[str, str]]] = {reason: [] for reason in _REASONS}
        #: regular files without an image suffix (for listings that report them).
        self.not_images: list[str] = []
        self._files: dict[tuple[int, int], tuple[str, str]] = {}  # real file → (path, group)
        self._walked: dict[tuple[int, int], set[str | None]] = {}  # real folder → groups

    # -- public ---------------------------------------------------------------------------------
    def folders(self, folder: str | os.PathLike[str], kind: str = "folders") -> list[Path]:
        """The sub-folders of ``folder`` (sorted by name), links checked as for files.

        Args:
            folder: the folder to list.
            kind: what the sub-folders are, for messages (``"class folders"``).

        Raises:
            DuplicateFileError: two sub-folders are one real folder (one links to the other),
                so their images would belong to both.
        """
        folder = Path(folder)
        own = self._usable_folder(folder)
        if own is None:
            return []
        above = self._ancestors(folder) | {own}
        found: list[Path] = []
        real: dict[tuple[int, int], Path] = {}
        for entry, info in self._entries(folder):
            if not stat.S_ISDIR(info.st_mode):
                continue
            key = (info.st_dev, info.st_ino)
            if key in above:
                target = os.path.realpath(entry.path)
                self.skipped["loop"].append((entry.path, f"a link back to {target}, a loop"))
            elif key in real:
                link = entry.path if entry.is_symlink() else real[key]
                raise DuplicateFileError(
                    f"data.root: {kind} {real[key]} and {entry.path} are the same folder ({link} "
                    "is a link), so its images would belong to both; remove the link"
                )
            else:
                real[key] = Path(entry.path)
                found.append(Path(entry.path))
        return found

    def files(
        self, folder: str | os.PathLike[str], group: str | None, recursive: bool = True
    ) -> list[str]:
        """The image files under ``folder``, sorted by path.

        Args:
            folder: the folder to list.
            group: what the files are (e.g. ``"train/cat"``): a file already listed for this
                group is skipped as a duplicate, one listed for another group raises.
                ``None`` lists every path, duplicates included (masks matched by name).
            recursive: descend into sub-folders.

        Raises:
            DuplicateFileError: a file was listed before for another group; names both paths.
        """
        folder = Path(folder)
        key = self._usable_folder(folder)
        if key is None:
            return []
        found: list[str] = []
        self._walked.setdefault(key, set()).add(group)
        self._walk(folder, group, recursive, self._ancestors(folder) | {key}, found)
        return sorted(found)

    def check(self) -> None:
        """Raise for empty image files (under ``on_empty="error"``), naming them.

        Raises:
            ValueError: one line naming the first files, the count and the fixes.
        """
        empty = [path for path, _ in self.skipped["empty"]]
        if empty and self.on_empty == "error":
            shown = ", ".join(empty[:_SHOWN]) + (", ..." if len(empty) > _SHOWN else "")
            raise ValueError(
                f"data.root: {len(empty)} image file(s) under {self.root} are empty (0 bytes): "
                f"{shown}. Copy them again or delete them, or set data.on_bad_image=skip to "
                "skip them."
            )

    def warn(self, stacklevel: int = 2) -> None:
        """One :class:`DataScanWarning` with a count and an example per reason, if any.

        Args:
            stacklevel: as for :func:`warnings.warn`, counted from the caller of this method.
        """
        parts = []
        for reason, found in self.skipped.items():
            if found and not (reason == "empty" and self.on_empty == "error"):
                what = _REASONS[reason].format(root=self.real_root)
                part = f"{len(found)} {what} (e.g. {found[0][0]}: {found[0][1]})"
                if reason == "outside":
                    part += ", followed with data.follow_links=true"
                parts.append(part)
        if parts:
            message = f"data.root: skipped {'; '.join(parts)}"
            warnings.warn(message, DataScanWarning, stacklevel=stacklevel + 1)

    def skipped_files(self) -> list[tuple[str, str]]:
        """Every ``(path, what it is)`` passed over, sorted by path."""
        return sorted(item for found in self.skipped.values() for item in found)

    @contextmanager
    def reporting(self) -> Iterator[FolderScan]:
        """Warn about what was skipped when the block ends, even if it raised; then check."""
        try:
            yield self
        finally:
            self.warn(stacklevel=4)  # past this generator and contextlib: the ``with`` line
        self.check()

    # -- the walk -------------------------------------------------------------------------------
    def _inside(self, real: str) -> bool:
        return real == self.real_root or real.startswith(self.real_root.rstrip(os.sep) + os.sep)

    def _usable_folder(self, folder: Path) -> tuple[int, int] | None:
        """The folder's (device, inode), or ``None`` when it is missing or leaves the root."""
        real = os.path.realpath(folder)
        if not self.follow_links and not self._inside(real):
            self.skipped["outside"].append((str(folder), f"a link to {real}"))
            return None
        try:
            info = os.stat(folder)
        except OSError:
            return None
        return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None

    def _ancestors(self, folder: Path) -> set[tuple[int, int]]:
        """(device, inode) of the root and of every folder above ``folder``: a link to any of
        them is a loop (with ``follow_links``, one to ``/`` would list the whole disk)."""
        keys = set()
        for path in (self.root, *Path(os.path.realpath(folder)).parents):
            try:
                info = os.stat(path)
            except OSError:
                continue
            keys.add((info.st_dev, info.st_ino))
        return keys

    def _entries(self, folder: Path) -> Iterator[tuple[os.DirEntry[str], os.stat_result]]:
        """Visible entries of ``folder`` by name, with their (link-followed) status; the ones
        that cannot be used (broken or leaving links) are recorded and left out."""
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            self.skipped["unreadable"].append((str(folder), f"cannot be listed ({err.strerror})"))
            return
        for entry in entries:
            if is_skipped_name(entry.name):
                continue
            try:
                info = os.stat(entry.path)
            except OSError as err:
                if entry.is_symlink():
                    self.skipped["broken"].append((entry.path, "a broken link"))
                else:
                    self.skipped["unreadable"].append((entry.path, f"cannot be read ({err})"))
                continue
            if entry.is_symlink() and not self.follow_links:
                real = os.path.realpath(entry.path)
                if not self._inside(real):
                    self.skipped["outside"].append((entry.path, f"a link to {real}"))
                    continue
            yield entry, info

    def _walk(
        self,
        folder: Path,
        group: str | None,
        recursive: bool,
        ancestors: set[tuple[int, int]],
        found: list[str],
    ) -> None:
        for entry, info in self._entries(folder):
            key = (info.st_dev, info.st_ino)
            if stat.S_ISDIR(info.st_mode):
                if recursive:
                    self._walk_folder(Path(entry.path), key, group, ancestors, found)
            elif not is_image_file(entry.name):
                if stat.S_ISREG(info.st_mode):
                    self.not_images.append(entry.path)
            elif not stat.S_ISREG(info.st_mode):
                kind = file_kind(info.st_mode)
                self.skipped["special"].append((entry.path, f"a {kind}, not a regular file"))
            elif info.st_size == 0:
                self.skipped["empty"].append((entry.path, "empty (0 bytes)"))
            elif group is None:
                found.append(entry.path)
            elif key not in self._files:
                self._files[key] = (entry.path, group)
                found.append(entry.path)
            elif self._files[key][1] == group:
                first = self._files[key][0]
                self.skipped["duplicate"].append((entry.path, f"the same file as {first}"))
            else:
                first, other = self._files[key]
                raise DuplicateFileError(
                    f"data.root: {first} ({other}) and {entry.path} ({group}) are the same file "
                    "(a link or hard link), so it would be two samples with different labels "
                    "or splits; remove one of them"
                )

    def _walk_folder(
        self,
        folder: Path,
        key: tuple[int, int],
        group: str | None,
        ancestors: set[tuple[int, int]],
        found: list[str],
    ) -> None:
        if key in ancestors:
            real = os.path.realpath(folder)
            self.skipped["loop"].append((str(folder), f"a link back to {real}, a loop"))
            return
        groups = self._walked.setdefault(key, set())
        if group is not None and group in groups:  # a second way into one folder
            real = os.path.realpath(folder)
            self.skipped["duplicate"].append((str(folder), f"the same folder as {real}"))
            return
        groups.add(group)
        self._walk(folder, group, True, ancestors | {key}, found)


def refuse_shared_files(
    entries: Iterable[tuple[str, str]], what: str = "data", same_owner_ok: bool = False
) -> None:
    """Raise when one real file backs two samples that should be distinct.

    Annotation files name their images; two entries naming one file (directly, through a link
    or a hard link) would make one image two samples with different labels, or put it in two
    splits.

    Args:
        entries: ``(path, owner)`` pairs; the owner says what uses the file (``"train"``,
            ``"val image_id 7"``). Missing files are passed over (their readers report them).
        what: the config key or file the message starts with.
        same_owner_ok: an owner may name a file several times (several objects of one image).

    Raises:
        DuplicateFileError: naming both paths and owners.
    """
    seen: dict[tuple[int, int], tuple[str, str]] = {}
    for path, owner in entries:
        try:
            info = os.stat(path)
        except OSError:
            continue
        key = (info.st_dev, info.st_ino)
        if key not in seen:
            seen[key] = (path, owner)
            continue
        first_path, first_owner = seen[key]
        if same_owner_ok and first_owner == owner:
            continue
        if first_path == path:
            both = f"{path} is named by {first_owner} and by {owner}"
        else:
            both = f"{first_path} ({first_owner}) and {path} ({owner}) are the same file"
        raise DuplicateFileError(
            f"{what}: {both}, so one image would be two samples (with different labels, or in "
            "two splits); remove one of the entries"
        )
