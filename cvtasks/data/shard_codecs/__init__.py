"""How each reader's samples go into shards and come back as the same training samples.

A codec per kind of target (:mod:`~cvtasks.data.shard_codecs.base` has the contract):
class labels, label sets and masks (:mod:`.images`), one box, many boxes and keypoints
(:mod:`.objects`), identities and pairs (:mod:`.identities`). :data:`CODECS` maps a reader's
dataset class to its codec; :func:`codec_for` finds the codec of a split's dataset, or says
which readers can be converted.
"""

from __future__ import annotations

from typing import Any

from cvtasks.data.shard_codecs.base import Decoder, Sample, ShardCodec, Stored
from cvtasks.data.shard_codecs.identities import IdentityCodec
from cvtasks.data.shard_codecs.images import LabelCodec, LabelSetCodec, MaskCodec
from cvtasks.data.shard_codecs.objects import BoxCodec, DetectionCodec, KeypointCodec

__all__ = [
    "BY_NAME",
    "CODECS",
    "BoxCodec",
    "Decoder",
    "DetectionCodec",
    "IdentityCodec",
    "KeypointCodec",
    "LabelCodec",
    "LabelSetCodec",
    "MaskCodec",
    "Sample",
    "ShardCodec",
    "Stored",
    "codec_for",
]

_ALL = (
    LabelCodec(),
    LabelSetCodec(),
    MaskCodec(),
    BoxCodec(),
    DetectionCodec(),
    KeypointCodec(),
    IdentityCodec(),
)
#: dataset class → codec (exact classes: a subclass may carry targets its base does not)
CODECS: dict[type, ShardCodec] = {kind: codec for codec in _ALL for kind in codec.dataset_types}
BY_NAME: dict[str, ShardCodec] = {codec.name: codec for codec in _ALL}


def codec_for(dataset: Any, reader: str) -> ShardCodec:
    """The codec of ``dataset``'s class, else a ``ValueError`` naming what converts.

    Only exact classes match: a subclass may add targets (keypoints on top of class folders)
    that its base's codec would drop.
    """
    codec = CODECS.get(type(dataset))
    if codec is not None:
        return codec
    kinds = ", ".join(sorted(c.__name__ for c in CODECS))
    raise ValueError(
        f"data={reader}: its samples ({type(dataset).__name__}) cannot be written as shards; "
        f"data convert writes readers whose samples are {kinds}"
    )
