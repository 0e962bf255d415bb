"""Training from shards written by ``python -m cvtasks data convert`` (LitData's format).

``data=shards data.root=DIR`` reads ``DIR/cvtasks_shards.json`` (what the data is: the codec,
class names, split sizes, the source config) and the splits ``DIR/train``, ``DIR/val``,
``DIR/test``, each a LitData optimized dataset (chunks + LitData's ``index.json``). ``data.root``
may be a local folder or any URL LitData streams from (``s3://``, ``gs://``, ``azure://``,
``hf://``); chunks are cached under ``data.cache_dir`` as they are read. A remote root's
``cvtasks_shards.json`` is fetched once, or given as a local file with ``data.index=FILE``.

* Training streams the train split with LitData's ``StreamingDataset`` and
  ``StreamingDataLoader``: chunks are spread over nodes, ranks and workers; each epoch is shuffled
  from the run's seed and the epoch (chunk order, then samples within a window); under several
  processes LitData drops the last samples that would leave ranks unequal (``drop_last``), so
  every rank runs the same number of steps: at most ``world_size x workers - 1`` samples per
  epoch are not seen, a different few each epoch. The loader's position is saved in checkpoints
  (``state_dict``), so a run resumed mid-epoch continues the epoch where it stopped: no sample
  replayed or skipped, loader workers or not (what a worker read ahead is not counted), and the
  epochs after it whole (:mod:`cvtasks.data.shard_loader`).
* Validation and test read samples by index (LitData's random access) through the same loaders
  as loose files: in order, each sample exactly once under DDP.
* Identity data trains in P x K batches, drawn up front from every sample's identity: its
  training split is read by index too, through the reader's own sampler (and its split over
  ranks and mid-epoch resumption), with the identities from the index's ``train_labels``.

Samples come back through the reader's own dataset class (:mod:`cvtasks.data.shard_codecs`),
with this config's ``augment``, ``image_size``, ``mean`` and ``std``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from cvtasks.data.datamodule import VisionDataModule
from cvtasks.data.identity_folders import identity_batch_loader
from cvtasks.data.resumable import global_seed
from cvtasks.data.shard_codecs import BY_NAME, ShardCodec, Stored
from cvtasks.registry import DATASETS

INDEX = "cvtasks_shards.json"
INDEX_VERSION = 1
SPLITS = ("train", "val", "test")


def is_remote(root: str) -> bool:
    """Whether ``root`` is a URL (``s3://...``) rather than a local folder."""
    return "://" in root


def join(root: str, *parts: str) -> str:
    """``root/parts``, for folders and URLs alike."""
    return "/".join([root.rstrip("/"), *parts]) if is_remote(root) else os.path.join(root, *parts)


def read_index(root: str, index: str | None = None, cache_dir: str | None = None) -> dict:
    """The ``cvtasks_shards.json`` of ``root`` (or the file ``index``), checked.

    Raises:
        FileNotFoundError: no index: the folder was not written by ``data convert``.
        ValueError: an index of another version or without splits.
    """
    path = index or join(root, INDEX)
    if is_remote(path):
        path = _download(path, cache_dir)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"data.root={root}: no {INDEX} there; write shards with "
            f"`python -m cvtasks data convert data=<config> output={root}`"
        )
    meta = json.loads(Path(path).read_text())
    if meta.get("version") != INDEX_VERSION or not meta.get("splits"):
        raise ValueError(f"{path}: not a cvtasks shard index of version {INDEX_VERSION}")
    if meta.get("codec") not in BY_NAME:
        raise ValueError(f"{path}: unknown sample codec {meta.get('codec')!r}")
    return meta


def _download(url: str, cache_dir: str | None) -> str:
    """Fetch one small remote file with LitData's downloader for its scheme."""
    from litdata.streaming.downloader import get_downloader

    folder = Path(cache_dir or Path.home() / ".cache" / "cvtasks" / "shards")
    folder.mkdir(parents=True, exist_ok=True)
    local = folder / f"{abs(hash(url)):x}_{INDEX}"
    remote_dir = url.rsplit("/", 1)[0]
    get_downloader(remote_dir, str(folder), []).download_file(url, str(local))
    return str(local)


#: keys of ``data=shards`` that may say ``source``: the converted data config's value
SOURCE_KEYS = ("image_size", "batch_size", "mean", "std", "augment", "crop_pct", "interpolation")
SOURCE = "source"


def source_settings(data: Any) -> dict[str, Any]:
    """The values that ``source`` stands for in ``data`` (a ``data=shards`` config).

    Returns:
        Key → the converted data config's value, for each key of :data:`SOURCE_KEYS` set to
        ``source``; empty when none is, or ``data.root`` is unset (reported as missing).

    Raises:
        FileNotFoundError, ValueError: the index cannot be read (see :func:`read_index`).
    """
    wanted = [k for k in SOURCE_KEYS if data.get(k) == SOURCE]
    root = (
        OmegaConf.select(data, "root", throw_on_missing=False)
        if isinstance(data, DictConfig)
        else data.get("root")
    )
    if not wanted or not isinstance(root, str) or root == "???":
        return {}
    meta = read_index(root, data.get("index"), data.get("cache_dir"))
    source = meta.get("source", {})
    return {key: source[key] for key in wanted if key in source}


class ShardSplit(Dataset):
    """One split read by index: ``len`` from the index, samples decoded by the codec."""

    def __init__(self, input_dir: str, length: int, decoder: Any, cache_dir: str | None) -> None:
        self.input_dir = input_dir
        self.length = int(length)
        self.decoder = decoder
        self.cache_dir = cache_dir
        self._stream: Any = None

    @property
    def transform(self) -> Any:
        """The decoder (DataLoader workers reseed its pipeline)."""
        return self.decoder

    def __len__(self) -> int:
        return self.length

    def stored(self, index: int) -> Stored:
        """Shard sample ``index`` as written (record, image bytes, extras)."""
        if self._stream is None:  # opened in the process that reads (each DataLoader worker)
            from litdata import StreamingDataset

            self._stream = StreamingDataset(self.input_dir, cache_dir=self.cache_dir)
        return self._stream[int(index)]

    def __getitem__(self, index: int) -> Any:
        return self.decoder(self.stored(index), int(index))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_stream": None}  # workers open their own


@DATASETS.register("shards")
class ShardsDataModule(VisionDataModule):
    """Shards of any reader's data (see the module docstring).

    Args:
        root: the folder or URL ``data convert`` wrote.
        index: a local copy of ``cvtasks_shards.json`` (default: ``root``'s).
        cache_dir: where streamed chunks are cached (default: LitData's, under the system's
            temporary folder for a remote root).
        **kwargs: :class:`VisionDataModule` options (batch_size, image_size, augment, ...).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        index: str | None = None,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.root = os.fspath(root) if is_remote(str(root)) else os.fspath(Path(root).expanduser())
        self.cache_dir = cache_dir
        self.meta = read_index(self.root, index, cache_dir)  # first: it explains a wrong root
        self.codec: ShardCodec = BY_NAME[self.meta["codec"]]
        super().__init__(**kwargs)
        self.sampler_seed = torch.initial_seed() % 2**32  # set by the run's `seed`
        self.batching = self.meta["arguments"].get("batching", {})
        self.target_kind = self.codec.target_kind
        self.list_keys = self.codec.list_keys
        self.class_names = list(self.meta["class_names"])
        for key, value in self.meta.get("task_keys", {}).items():
            setattr(self, key, value)

    def compose_kwargs(self) -> dict[str, Any]:
        """The reader's pipelines: boxes or points moved with the image, as written."""
        return self.codec.compose_kwargs(self.meta["arguments"])

    def discover_class_names(self) -> list[str]:
        """From the index."""
        return list(self.meta["class_names"])

    def empty_batch(self) -> dict[str, Any]:
        """The image batch of none, with the codec's zero-length targets."""
        return self.codec.empty_batch(super().empty_batch(), self.meta)

    def _decoder(self, split: str) -> Any:
        transform = self.train_transform if split == "train" else self.eval_transform
        return self.codec.decoder(self.meta["arguments"], transform, self.on_bad_image, split)

    def setup(self, stage: str | None = None) -> None:
        """Every split, read by index (training streams the train split with its own loader)."""
        for split, length in self.meta["splits"].items():
            if getattr(self, f"{split}_dataset") is None:
                dataset = ShardSplit(
                    join(self.root, split), length, self._decoder(split), self.cache_dir
                )
                setattr(self, f"{split}_dataset", dataset)
        self.predict_dataset = self.test_dataset

    def train_dataloader(self) -> DataLoader:
        """LitData's streaming loader: shuffled from the run's seed, split over every process.

        Made here, after the processes have joined, so that LitData sees them all.
        """
        from litdata import StreamingDataset

        from cvtasks.data.shard_loader import StreamingLoader

        if "train" not in self.meta["splits"]:
            raise RuntimeError(f"data.root={self.root} has no train split")
        self.setup("fit")
        if not self.codec.streams_training:  # the reader's sampler, samples read by index
            return identity_batch_loader(self, self.train_dataset, self.meta["train_labels"])
        stream = StreamingDataset(
            join(self.root, "train"),
            cache_dir=self.cache_dir,
            shuffle=True,
            seed=global_seed() % 2**32,  # LitData seeds NumPy with it
            transform=self.train_dataset.decoder,  # the training split's own decoder
        )
        return StreamingLoader(stream, **self.loader_options())
