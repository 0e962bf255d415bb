"""``python -m cvtasks data convert data=<config> output=DIR``: a dataset's splits as shards.

The data is read the way training reads it (``train.py``'s overrides: ``data=``, ``data.root=``,
``task=`` ...; the same reader, splits and checks), and each split's samples are written, before
any transform (the training split in a random order drawn from ``seed``), as LitData chunks
under ``DIR/train``, ``DIR/val``, ``DIR/test``, with ``DIR/cvtasks_shards.json`` saying what
they hold (the sample codec, class names, split sizes, the resolved source data config). Train
from them with ``data=shards data.root=DIR`` (:mod:`cvtasks.data.shards`); upload ``DIR`` as it
is to object storage to stream it from there.

Options besides the overrides: ``output=DIR`` (required), ``shard_size=N`` (samples per chunk)
or ``shard_size=64MB`` (bytes per chunk, the default), ``overwrite=true`` to replace an existing
output. The folder appears complete or not at all: it is written beside, then renamed.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from cvtasks import plugins
from cvtasks.cli.build import DATA_TO_TASK_KEYS, build_datamodule
from cvtasks.cli.errors import exit_with
from cvtasks.config import ConfigError, compose_train
from cvtasks.data.images import BadImageError
from cvtasks.data.shard_codecs import ShardCodec, codec_for
from cvtasks.data.shards import INDEX, INDEX_VERSION, SPLITS
from cvtasks.io import write_json

log = logging.getLogger(__name__)

USAGE = (
    "usage: python -m cvtasks data convert data=<config> [data.root=...] output=DIR "
    "[shard_size=64MB|N] [overwrite=true]"
)
DEFAULT_SHARD_BYTES = "64MB"


@dataclass
class ConvertOptions:
    """Where the shards go and how big each is."""

    output: str
    shard_size: str = DEFAULT_SHARD_BYTES
    overwrite: bool = False

    def chunk(self) -> dict[str, Any]:
        """LitData's writer keyword: ``chunk_size`` (samples) or ``chunk_bytes``."""
        size = str(self.shard_size)
        if size.isdigit():
            if int(size) < 1:
                raise ValueError(f"shard_size={size}: must be at least 1 sample")
            return {"chunk_size": int(size)}
        number, unit = size[:-2], size[-2:].upper()
        if not number.replace(".", "", 1).isdigit() or unit not in ("KB", "MB", "GB"):
            raise ValueError(f"shard_size={size}: give samples (1000) or bytes (64MB, 1GB, 500KB)")
        return {"chunk_bytes": size.upper()}


def split_arguments(args: Sequence[str]) -> tuple[ConvertOptions, list[str]]:
    """The command's own ``output=``, ``shard_size=``, ``overwrite=``; the rest are overrides."""
    own: dict[str, Any] = {}
    overrides = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in ("output", "shard_size", "overwrite"):
            own[key] = value.lower() in ("true", "1", "yes") if key == "overwrite" else value
        else:
            overrides.append(arg)
    if not own.get("output"):
        raise ValueError(f"output=DIR is required\n{USAGE}")
    return ConvertOptions(**own), overrides


class Encoder:
    """Shard samples of one split, with images that fail to decode handled as training would."""

    def __init__(self, codec: ShardCodec, dataset: Any, on_bad_image: str) -> None:
        self.codec = codec
        self.dataset = dataset
        self.on_bad_image = on_bad_image
        self.skipped: list[str] = []
        #: the ``label`` of each encoded sample, in order, when the codec indexes labels
        self.labels: list[int] = []

    def __call__(self, index: int) -> dict[str, Any] | None:
        try:
            stored = self.codec.encode(self.dataset, index)
        except BadImageError as err:
            if self.on_bad_image != "skip":
                raise
            self.skipped.append(str(err))
            return None
        if self.codec.indexes_labels and "label" in (record := json.loads(stored["record"])):
            self.labels.append(int(record["label"]))
        return stored


def write_split(
    encoder: Encoder, folder: Path, chunk: dict[str, Any], shuffle_seed: int | None = None
) -> int:
    """Write one split's samples as LitData chunks; returns how many were written.

    Args:
        encoder: the split's samples.
        folder: where the chunks go.
        chunk: LitData's ``chunk_size`` or ``chunk_bytes``.
        shuffle_seed: write the samples in this seed's random order (the training split: readers
            list samples by class or folder, and a streaming reader shuffles chunks and samples
            within a window, never the whole split, so chunks must already be mixed); ``None``
            keeps the reader's order.
    """
    from litdata.streaming.writer import BinaryWriter

    order = list(range(len(encoder.dataset)))
    if shuffle_seed is not None:
        order = torch.randperm(len(order), generator=torch.Generator().manual_seed(shuffle_seed))
        order = order.tolist()
    writer = BinaryWriter(str(folder), **chunk)
    written = 0
    for index in order:
        stored = encoder(index)
        if stored is not None:
            writer[written] = stored
            written += 1
    writer.done()
    writer.merge()
    return written


def convert(cfg: DictConfig, options: ConvertOptions) -> dict[str, Any]:
    """Write the shards of ``cfg``'s data into ``options.output``; returns the index."""
    output = Path(options.output).expanduser()
    if output.exists() and any(output.iterdir()) and not options.overwrite:
        raise ValueError(f"output={output} exists and is not empty; add overwrite=true")
    plugins.load(list(cfg.get("plugins") or []))
    chunk = options.chunk()
    datamodule = build_datamodule(cfg)
    datamodule.setup("test")
    name = str(cfg.data.name)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        meta = _write_splits(datamodule, name, staging, chunk, cfg)
        write_json(staging / INDEX, meta)
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return meta


def _write_splits(
    datamodule: Any, name: str, staging: Path, chunk: dict[str, Any], cfg: DictConfig
) -> dict[str, Any]:
    codec, arguments, sizes, skipped, labels = None, {}, {}, {}, []
    on_bad = str(cfg.data.get("on_bad_image", "error"))
    for split in SPLITS:
        dataset = getattr(datamodule, f"{split}_dataset", None)
        if dataset is None:
            continue
        codec = codec_for(dataset, name)
        arguments.update(codec.arguments(dataset))
        encoder = Encoder(codec, dataset, on_bad)
        seed = int(cfg.get("seed", 0)) if split == "train" else None
        sizes[split] = write_split(encoder, staging / split, chunk, shuffle_seed=seed)
        skipped[split] = encoder.skipped
        if split == "train":
            labels = encoder.labels
        note = f", {len(encoder.skipped)} skipped" if encoder.skipped else ""
        print(f"{split}: {sizes[split]} samples{note}")
    if codec is None:
        raise ValueError(f"data={name} has no train, val or test split to convert")
    arguments.update(codec.datamodule_arguments(datamodule))
    source = OmegaConf.to_container(cfg.data, resolve=True)
    task_keys = {
        key: getattr(datamodule, key)
        for key in DATA_TO_TASK_KEYS
        if key not in ("num_classes", "class_names") and hasattr(datamodule, key)
    }
    return {
        "version": INDEX_VERSION,
        "codec": codec.name,
        "target_kind": codec.target_kind,
        "class_names": list(datamodule.class_names),
        "arguments": arguments,
        "splits": sizes,
        "skipped": {k: v for k, v in skipped.items() if v},
        "task_keys": task_keys,
        "source": source,
        **({"train_labels": labels} if codec.indexes_labels else {}),
    }


def main(args: Sequence[str]) -> int:
    """``data convert``: returns the exit code (2 after one error line)."""
    try:
        options, overrides = split_arguments(args)
        cfg = compose_train(overrides)
        meta = convert(cfg, options)
    except (ConfigError, FileNotFoundError, ValueError, KeyError, BadImageError) as err:
        exit_with(err, 2)
    total = sum(meta["splits"].values())
    print(
        f"wrote {total} samples ({meta['codec']}) to {options.output}; train with: "
        f"python train.py data=shards data.root={options.output}",
        file=sys.stdout,
    )
    return 0
