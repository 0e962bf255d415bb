"""The LightningDataModule base every dataset shares: loaders, pipelines, the bad-image policy."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset, default_collate, get_worker_info

from cvtasks.data.resumable import resumable_loader
from cvtasks.data.transforms import build_pipeline, parse_image_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ON_BAD_IMAGE = ("error", "skip")


def auto_workers(max_workers: int = 8) -> int:
    """Data-loading workers for this process: its cores shared by the node's GPUs, minus one.

    One core per process stays with the training loop (it feeds the GPU and runs the optimizer);
    more than ``max_workers`` rarely helps and costs memory (each worker holds a dataset copy).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    per_process = cores // max(1, torch.cuda.device_count())
    return max(0, min(max_workers, per_process - 1))


def check_choice(key: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise ``ValueError`` naming the config ``key``, the ``value`` and the allowed ``choices``.

    Args:
        key: the config key, e.g. ``"data.on_bad_image"``.
        value: what the config holds.
        choices: the allowed values.
    """
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{key} must be one of {allowed}; got {value!r}")


class DropBadSamples:
    """Collate function that drops ``None`` samples (skipped bad images) and counts them.

    The batch always carries ``skipped``, an ``int64`` scalar tensor, so the training module can
    log how many images were dropped. When every sample was dropped the batch is a copy of
    ``empty_batch`` (zero-length tensors of the right dtype and trailing shape), never an error.

    Args:
        empty_batch: the batch to return when nothing is left, without ``skipped``.
        list_keys: keys whose per-sample tensors differ in length (a detection image's boxes):
            the batch holds them as a list, one tensor per kept sample, instead of a stack.
            A key the samples do not carry (one split's only) is left out.
    """

    def __init__(self, empty_batch: dict[str, Any], list_keys: Sequence[str] = ()) -> None:
        self.empty_batch = empty_batch
        self.list_keys = tuple(list_keys)

    def __call__(self, samples: list[dict[str, Any] | None]) -> dict[str, Any]:
        kept = [s for s in samples if s is not None]
        if kept:
            stacked = [{k: v for k, v in s.items() if k not in self.list_keys} for s in kept]
            batch = default_collate(stacked)
            listed = [key for key in self.list_keys if key in kept[0]]
            batch.update({key: [s[key] for s in kept] for key in listed})
        else:
            batch = {
                key: value.clone() if isinstance(value, torch.Tensor) else list(value)
                for key, value in self.empty_batch.items()
            }
        batch["skipped"] = torch.tensor(len(samples) - len(kept), dtype=torch.int64)
        return batch


class VisionDataModule(pl.LightningDataModule):
    """Base DataModule: subclasses fill the datasets in ``setup``; this class makes the loaders.

    Subclasses set ``train_dataset``, ``val_dataset``, ``test_dataset`` and ``predict_dataset``
    (maps whose samples are dicts such as ``{"image": float[3,H,W], "label": int64[]}``, or
    ``None`` for a skipped bad image) and ``class_names``. Each subclass may instead override
    :meth:`discover_class_names` so that ``class_names`` is readable before ``setup``.

    Args:
        batch_size: samples per batch, per process.
        num_workers: DataLoader worker processes; 0 loads in the main process; ``"auto"``:
            the cores this process may use, shared by the GPUs of the node, less one for the
            training loop, at most 8 (see :func:`auto_workers`).
        pin_memory: pin batches in page-locked memory; ``None`` means "when CUDA is available".
        persistent_workers: keep workers alive between epochs (only used when
            ``num_workers > 0``).
        prefetch_factor: batches each worker loads ahead (only used when ``num_workers > 0``).
        image_size: output size, an int or ``(height, width)``.
        mean: per-channel mean of pixel values in [0, 1], for normalization.
        std: per-channel standard deviation, same scale.
        augment: training augmentations, a list of ``{"name": <albumentations class>, **kw}``,
            or a named strength ``"light"``, ``"medium"``, ``"heavy"`` (see
            :mod:`cvtasks.data.augment_presets`).
        on_bad_image: ``"error"`` raises on an undecodable file; ``"skip"`` warns, drops it from
            its batch and counts it in ``batch["skipped"]``.
        cache_images: keep decoded images in memory after their first read (per process).
        crop_pct: evaluation resizes to ``image_size / crop_pct`` and crops the centre (the
            pretrained entries' transform); 1: a plain resize.
        interpolation: how images are resized (``bilinear``, ``bicubic``, ...).
    """

    #: batch keys collated as lists (one tensor per sample) because their lengths differ.
    list_keys: tuple[str, ...] = ()
    #: the annotation the samples carry, matched against the task's ``target_kind`` (see
    #: :class:`~cvtasks.tasks.base.TaskModule`); ``None``: not declared, not checked.
    target_kind: str | None = None

    def __init__(
        self,
        *,
        batch_size: int = 64,
        num_workers: int | str = 0,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        image_size: int | Sequence[int] = 32,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        augment: str | Sequence[dict[str, Any]] | None = None,
        on_bad_image: str = "error",
        cache_images: bool = False,
        crop_pct: float = 1.0,
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"data.batch_size must be a positive int, got {batch_size!r}")
        if num_workers == "auto":
            num_workers = auto_workers()
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"data.num_workers must be an int >= 0 or auto, got {num_workers!r}")
        bad_prefetch = isinstance(prefetch_factor, bool) or not isinstance(prefetch_factor, int)
        if bad_prefetch or prefetch_factor < 1:
            raise ValueError(
                f"data.prefetch_factor must be a positive int, got {prefetch_factor!r}"
            )
        check_choice("data.on_bad_image", on_bad_image, ON_BAD_IMAGE)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and num_workers > 0
        self.prefetch_factor = prefetch_factor if num_workers > 0 else None
        self.image_size = parse_image_size(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.on_bad_image = on_bad_image
        self.cache_images = bool(cache_images)
        # Built here, not in setup, so that a bad augmentation fails when the config is read.
        # Albumentations ignores global seeds: seed it from torch's (set by the run's `seed`) so
        # runs repeat; DataLoader workers reseed their copy in `seed_worker`.
        self.crop_pct = crop_pct
        self.interpolation = interpolation
        compose = self.compose_kwargs()
        self.train_transform = build_pipeline(
            augment,
            image_size,
            mean,
            std,
            train=True,
            interpolation=interpolation,
            seed=torch.initial_seed() % 2**32,
            **compose,
        )
        self.eval_transform = build_pipeline(
            augment,
            image_size,
            mean,
            std,
            train=False,
            crop_pct=crop_pct,
            interpolation=interpolation,
            **compose,
        )
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        self.predict_dataset: Dataset | None = None
        self._class_names: list[str] | None = None

    def compose_kwargs(self) -> dict[str, Any]:
        """``A.Compose`` keywords of both pipelines: how boxes or points move with the image
        (``bbox_params``, ``keypoint_params``); none here. Called by ``__init__``."""
        return {}

    # -- classes ----------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """Class names, index ``i`` naming label ``i``."""
        if self._class_names is None:
            self._class_names = list(self.discover_class_names())
        return self._class_names

    @class_names.setter
    def class_names(self, names: Sequence[str]) -> None:
        self._class_names = list(names)

    @property
    def num_classes(self) -> int:
        """The number of classes, ``len(class_names)``."""
        return len(self.class_names)

    def discover_class_names(self) -> list[str]:
        """Find the class names when they are read before ``setup`` set them.

        Returns:
            The class names. This base raises ``RuntimeError``; readers that can list classes
            cheaply override it.
        """
        raise RuntimeError(
            f"{type(self).__name__}.class_names is known after setup(); call "
            "datamodule.prepare_data() and datamodule.setup('fit') first."
        )

    # -- loaders ----------------------------------------------------------------------------
    def empty_batch(self) -> dict[str, torch.Tensor]:
        """The batch returned when every sample of a batch was a skipped bad image.

        Subclasses with more targets (boxes, masks, ...) extend it with zero-length tensors.
        """
        height, width = self.image_size
        return {
            "image": torch.empty(0, len(self.mean), height, width, dtype=torch.float32),
            "label": torch.empty(0, dtype=torch.int64),
        }

    def train_dataloader(self) -> DataLoader:
        """Shuffled, keeping the last partial batch (Lightning adds a DistributedSampler)."""
        return self._loader(self.train_dataset, "train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """The validation split, in order."""
        return self._loader(self.val_dataset, "val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """The test split, in order."""
        return self._loader(self.test_dataset, "test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The prediction split, in order."""
        return self._loader(self.predict_dataset, "predict", shuffle=False)

    def _loader(self, dataset: Dataset | None, split: str, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(
                f"{type(self).__name__} has no {split} dataset: call setup() first "
                "(the Trainer does this), or the data source has no such split."
            )
        # resumable mid-epoch, shuffled from (seed, epoch), evaluated exactly once under DDP
        return resumable_loader(
            dataset, shuffle=shuffle, trainer=self.trainer, drop_last=False, **self.loader_options()
        )

    def loader_options(self) -> dict[str, Any]:
        """The ``DataLoader`` keywords every loader of this data module shares."""
        return {
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
            "prefetch_factor": self.prefetch_factor,
            "collate_fn": DropBadSamples(self.empty_batch(), self.list_keys),
            "worker_init_fn": seed_worker if self.num_workers else None,
        }


def seed_worker(worker_id: int) -> None:
    """Seed a DataLoader worker: Python, NumPy and torch as Lightning does, plus albumentations.

    Each worker gets torch's per-worker seed, so workers draw different augmentations and a run
    with the same ``seed`` draws the same ones again.
    """
    pl_worker_init_function(worker_id)
    info = get_worker_info()
    if info is None:
        return
    transforms = getattr(info.dataset, "transform", None)
    # a streaming dataset keeps a list of callables (see cvtasks.data.shards)
    for transform in transforms if isinstance(transforms, list) else [transforms]:
        if hasattr(transform, "set_random_seed"):
            transform.set_random_seed(info.seed % 2**32)
