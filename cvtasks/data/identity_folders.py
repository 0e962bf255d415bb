"""Identity folders (``root/<person>/<image>``) read as P x K training batches and eval pairs.

Layouts understood (``data.root``):

- ``root/train/<person>/...`` with optional ``root/val`` and ``root/test``; a missing split is
  carved out of train's identities;
- ``root/<person>/...``: the identities named by ``data.val_pairs`` / ``data.test_pairs`` go to
  val / test, and a split without a pairs file is carved out of the remaining identities.

Carving is by identity and seeded, so evaluation identities are never seen in training (open
set). Evaluation uses pairs (seed 001 §6.6, Fig 6.17: an anchor image against another image, same
or different): an LFW-style pairs file (:mod:`cvtasks.data.pairs`), or ``num_pairs`` pairs drawn
with a fixed seed. Training batches hold P identities x K images:
:class:`~cvtasks.data.identity_sampler.IdentityBatchSampler`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from cvtasks.data.datamodule import DropBadSamples, VisionDataModule, check_choice, seed_worker
from cvtasks.data.identity_sampler import IdentityBatchSampler
from cvtasks.data.image_folder import ImageFolderDataset
from cvtasks.data.images import IMAGE_EXTENSIONS, BadImageError, BadImageWarning
from cvtasks.data.pairs import ON_PROBLEM, Pair, draw_pairs, parse_pairs_file, resolve_pairs
from cvtasks.data.resumable import ResumableDataLoader
from cvtasks.data.scan import FolderScan
from cvtasks.registry import DATASETS


class IdentityDataWarning(UserWarning):
    """Identities or pairs left out under ``on_single_image=skip`` / ``on_missing_file=skip``."""


# -- identity folders ---------------------------------------------------------------------------
def scan_identities(
    folder: str | os.PathLike[str],
    follow_links: bool = False,
    on_empty: str = "error",
    scan: FolderScan | None = None,
) -> dict[str, list[str]]:
    """``{person: sorted image paths}`` of every non-hidden sub-folder of ``folder``.

    Files are listed by :class:`~cvtasks.data.scan.FolderScan`: regular files only, each real
    file once, links leaving the root only with ``follow_links``; a file in two identity
    folders (or one folder linking to another) is an error naming both.

    Args:
        folder: the folder of identity folders.
        follow_links: also follow links leaving ``folder`` (or ``scan``'s root).
        on_empty: ``"error"`` or ``"skip"`` for empty (0-byte) image files.
        scan: a scan shared with other splits, so that a file in two of them is caught (its
            root, link rule and empty-file policy hold; the caller reports it); by default a
            scan of ``folder`` that warns about what it skipped.

    Raises:
        FileNotFoundError: ``folder`` is missing or holds no identity folder with images.
        ValueError: a file belongs to two identities, or an image file is empty.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"data.root: the identity folder {folder} does not exist")
    if scan is None:
        scan = FolderScan(folder, follow_links, on_empty)
        with scan.reporting():
            return scan_identities(folder, scan=scan)
    found = {}
    for person in scan.folders(folder, "identity folders"):
        group = os.path.relpath(person, scan.root)
        paths = scan.files(person, group, recursive=False)
        if paths:
            found[person.name] = paths
    if not found:
        raise FileNotFoundError(
            f"data.root: no identity folders with images in {folder}; expected "
            f"{folder}/<person>/<image> with images ending in {', '.join(IMAGE_EXTENSIONS)}."
        )
    return found


# -- datasets -----------------------------------------------------------------------------------
class IdentityImageDataset(ImageFolderDataset):
    """Training images: samples ``{"image": float[3,H,W], "identity": int64[]}``."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | None:
        sample = super().__getitem__(index)
        if sample is not None:
            sample["identity"] = sample.pop("label")
        return sample


class PairDataset(Dataset):
    """Evaluation pairs: ``{"image", "image_b": float[3,H,W], "same": int64[], "path", "path_b"}``.

    Args:
        pairs: ``(path_a, path_b, same)`` triples.
        transform: the evaluation pipeline.
        on_bad_image: ``"error"`` or ``"skip"`` (the pair becomes ``None``, dropped and counted).
        cache_images: keep decoded images in memory (an image is often in several pairs).
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        transform: Callable[..., dict[str, Any]],
        on_bad_image: str = "error",
        cache_images: bool = False,
    ) -> None:
        paths = sorted({p for a, b, _ in pairs for p in (a, b)})
        index = {p: i for i, p in enumerate(paths)}
        self.pairs = [(index[a], index[b], int(same)) for a, b, same in pairs]
        # the reader and cache of every distinct image (an image is often in several pairs)
        self.images = ImageFolderDataset(
            [(p, 0) for p in paths], transform, on_bad_image, cache_images
        )
        self.transform = transform
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        a, b, same = self.pairs[index]
        try:
            image_a, image_b = self.images.load_image(a), self.images.load_image(b)
        except BadImageError as err:
            if self.on_bad_image == "error":
                raise
            warnings.warn(f"{err} (pair skipped: data.on_bad_image=skip)", BadImageWarning, 2)
            return None
        return {
            "image": self.transform(image=image_a)["image"],
            "image_b": self.transform(image=image_b)["image"],
            "same": torch.tensor(same, dtype=torch.int64),
            "path": self.images.samples[a][0],
            "path_b": self.images.samples[b][0],
        }


def empty_identity_batch(image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every key of a training or a pair batch, of no sample (``image``: zero images)."""
    return {
        "image": image,
        "identity": torch.empty(0, dtype=torch.int64),
        "image_b": image.clone(),
        "same": torch.empty(0, dtype=torch.int64),
    }


# -- the data module ----------------------------------------------------------------------------
@DATASETS.register("identity_folders")
class IdentityFoldersDataModule(VisionDataModule):
    """Training on identity folders in P x K batches; val and test on pairs of unseen people.

    Args:
        root: the dataset folder (layouts in the module docstring); required: ``None`` (the
            config's default) raises ``ValueError`` naming ``data.root``.
        val_pairs: a pairs file for validation (relative paths are tried under ``root`` first).
        test_pairs: a pairs file for testing (LFW's ``pairs.txt``).
        val_fraction: share of the identities carved out for validation when needed.
        test_fraction: share carved out for testing when needed.
        split_seed: seed of the carving.
        num_pairs: pairs drawn per evaluation split without a pairs file (half of them same).
        pairs_seed: seed of the drawn pairs.
        identities_per_batch: P of the training batches.
        images_per_identity: K of the training batches.
        chunks_per_identity: groups of K images each identity gives per epoch (``None``: all);
            see :class:`IdentityBatchSampler`.
        on_single_image: a training identity with one image cannot form a positive pair:
            ``"error"`` names its folder, ``"skip"`` leaves it out (warned, counted).
        on_missing_file: a pair naming a missing image: ``"error"`` names the file and line,
            ``"skip"`` drops the pair (warned, counted in ``skipped_pairs``).
        follow_links: also follow symbolic links that leave ``root``.
        **kwargs: :class:`VisionDataModule` options; ``batch_size`` sizes the pair batches.
    """

    target_kind = "identity"

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        val_pairs: str | os.PathLike[str] | None = None,
        test_pairs: str | os.PathLike[str] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        num_pairs: int = 1000,
        pairs_seed: int = 0,
        identities_per_batch: int = 16,
        images_per_identity: int = 4,
        chunks_per_identity: int | None = None,
        on_single_image: str = "error",
        on_missing_file: str = "error",
        follow_links: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if root is None or not str(root).strip():
            raise ValueError(
                "data.root is not set: give the folder of your identity folders, e.g. "
                "`python train.py task=siamese data=identity_folders data.root=/data/lfw "
                "data.test_pairs=pairs.txt` (root/<person>/<image> or root/train|val|test/...)."
            )
        check_choice("data.on_single_image", on_single_image, ON_PROBLEM)
        check_choice("data.on_missing_file", on_missing_file, ON_PROBLEM)
        check_choice("data.follow_links", follow_links, (False, True))
        self.follow_links = bool(follow_links)
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= value < 0.5:
                raise ValueError(f"data.{key} must be in [0, 0.5), got {value!r}")
        if num_pairs < 2:
            raise ValueError(f"data.num_pairs must be >= 2, got {num_pairs}")
        self.root = Path(root).expanduser()
        self.pairs_files = {"val": val_pairs, "test": test_pairs}
        self.fractions = {"val": val_fraction, "test": test_fraction}
        self.split_seed, self.num_pairs, self.pairs_seed = split_seed, num_pairs, pairs_seed
        self.batching = {
            "identities_per_batch": identities_per_batch,
            "images_per_identity": images_per_identity,
            "chunks_per_identity": chunks_per_identity,
        }
        self.on_single_image, self.on_missing_file = on_single_image, on_missing_file
        self.sampler_seed = torch.initial_seed() % 2**32  # set by the run's `seed`
        #: training identities left out under on_single_image=skip.
        self.skipped_identities: list[str] = []
        #: pairs dropped per split under on_missing_file=skip.
        self.skipped_pairs: dict[str, int] = {"val": 0, "test": 0}
        self.train_identities: list[int] = []

    def prepare_root(self) -> None:
        """Make ``root`` exist before it is scanned; built-in datasets write it here."""

    def discover_class_names(self) -> list[str]:
        """The training identities' names (set by ``setup``)."""
        self.setup()
        return self.class_names

    def pairs_path(self, split: str) -> Path | None:
        """The pairs file of ``split``, or ``None`` when pairs are drawn."""
        given = self.pairs_files[split]
        if not given:
            return None
        path = Path(given).expanduser()
        return self.root / path if not path.is_absolute() and (self.root / path).exists() else path

    def split_identities(self) -> dict[str, tuple[Path, dict[str, list[str]]]]:
        """``{split: (image folder, {person: paths})}`` for train, val and test."""
        scan = FolderScan(self.root, self.follow_links, self.on_bad_image)
        with scan.reporting():  # one scan: a file in two splits is caught
            return self._split_identities(scan)

    def _split_identities(self, scan: FolderScan) -> dict[str, tuple[Path, dict[str, list[str]]]]:
        layered = (self.root / "train").is_dir()
        base = self.root / "train" if layered else self.root
        pool = scan_identities(base, scan=scan)
        result: dict[str, tuple[Path, dict[str, list[str]]]] = {}
        for split in ("val", "test"):
            path = self.pairs_path(split)
            if layered and (self.root / split).is_dir():
                result[split] = (self.root / split, scan_identities(self.root / split, scan=scan))
            elif path is not None:  # the people the pairs file names are held out of training
                named = {n for e in parse_pairs_file(path) for n in (e.name_a, e.name_b)}
                result[split] = (base, {n: pool.pop(n) for n in sorted(named) if n in pool})
        rng = np.random.default_rng(self.split_seed)
        names = sorted(pool)
        order = [names[i] for i in rng.permutation(len(names))]
        for split in ("val", "test"):
            if split not in result:
                take = max(1, round(len(names) * self.fractions[split]))
                if self.fractions[split] == 0 or take >= len(order):
                    raise ValueError(
                        f"data: no {split} identities; give a {split} folder or "
                        f"data.{split}_pairs, or set data.{split}_fraction in (0, 0.5)"
                    )
                carved, order = order[:take], order[take:]
                result[split] = (base, {n: pool.pop(n) for n in sorted(carved)})
        result["train"] = (base, pool)
        return result

    def _training_identities(self, identities: dict[str, list[str]]) -> dict[str, list[str]]:
        single = [n for n, paths in identities.items() if len(paths) < 2]
        if single and self.on_single_image == "error":
            raise ValueError(
                f"identity folder {Path(identities[single[0]][0]).parent} has one image, which "
                f"cannot form a positive pair ({len(single)} such folder(s)). Add images, or set "
                "data.on_single_image=skip to leave such identities out of training."
            )
        if single:
            self.skipped_identities = single
            warnings.warn(
                f"{len(single)} training identities with one image left out "
                f"(data.on_single_image=skip): {', '.join(single[:5])}",
                IdentityDataWarning,
                stacklevel=2,
            )
        return {n: p for n, p in identities.items() if len(p) >= 2}

    def _pairs(self, split: str, folder: Path, identities: dict[str, list[str]]) -> list[Pair]:
        path = self.pairs_path(split)
        if path is None:
            counts = {n: len(p) for n, p in identities.items()}
            entries = draw_pairs(counts, self.num_pairs, seed=self.pairs_seed)
            lookup = {(n, i + 1): p for n, paths in identities.items() for i, p in enumerate(paths)}
            return [(lookup[e[:2]], lookup[e[2:4]], e.same) for e in entries]
        pairs, skipped = resolve_pairs(
            parse_pairs_file(path), folder, str(path), self.on_missing_file, identities
        )
        if skipped:
            self.skipped_pairs[split] = skipped
            warnings.warn(
                f"{skipped} pair(s) of {path} name missing images and were dropped "
                "(data.on_missing_file=skip)",
                IdentityDataWarning,
                stacklevel=2,
            )
        if not pairs:
            raise ValueError(f"data.{split}_pairs: no usable pairs in {path}")
        return pairs

    def setup(self, stage: str | None = None) -> None:
        """Scan (once) and build the training images and the val/test pairs."""
        if self.train_dataset is not None:
            return
        self.prepare_root()
        splits = self.split_identities()
        train = self._training_identities(splits["train"][1])
        if len(train) < 2:
            raise ValueError(f"data.root: {self.root} has fewer than 2 usable training identities")
        self.class_names = sorted(train)
        samples = [(p, i) for i, name in enumerate(self.class_names) for p in train[name]]
        self.train_identities = [label for _, label in samples]
        self.train_dataset = IdentityImageDataset(
            samples, self.train_transform, self.on_bad_image, self.cache_images
        )
        val, test = (
            PairDataset(
                self._pairs(split, *splits[split]),
                self.eval_transform,
                self.on_bad_image,
                self.cache_images,
            )
            for split in ("val", "test")
        )
        self.val_dataset, self.test_dataset, self.predict_dataset = val, test, test

    def empty_batch(self) -> dict[str, torch.Tensor]:
        """Zero-length tensors of every key of a training or a pair batch."""
        return empty_identity_batch(super().empty_batch()["image"])

    def train_dataloader(self) -> DataLoader:
        """P x K batches from :class:`IdentityBatchSampler` (one share per process under DDP)."""
        if self.train_dataset is None:
            raise RuntimeError("call setup() before train_dataloader() (the Trainer does this)")
        return identity_batch_loader(self, self.train_dataset, self.train_identities)


def identity_batch_loader(
    datamodule: Any, dataset: Dataset, identities: Sequence[int]
) -> DataLoader:
    """The P x K training loader of ``dataset`` whose sample ``i`` is of ``identities[i]``.

    ``datamodule`` gives the batching (``batching``: P, K, chunks), ``sampler_seed``, the worker
    settings and the empty batch.
    """
    # a one-process DistributedSampler as placeholder: Lightning sets its epoch every epoch
    placeholder = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=False)
    sampler = IdentityBatchSampler(
        placeholder,
        list(identities),
        **datamodule.batching,
        seed=datamodule.sampler_seed,
    )
    # resumable: a killed run continues mid-epoch (the P x K order is a function of seed, epoch)
    return ResumableDataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=datamodule.num_workers,
        pin_memory=datamodule.pin_memory,
        persistent_workers=datamodule.persistent_workers,
        collate_fn=DropBadSamples(datamodule.empty_batch()),
        worker_init_fn=seed_worker if datamodule.num_workers else None,
    )
