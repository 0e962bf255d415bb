"""Training batches of P identities x K images, each process its own share under DDP.

Batch-hard and semi-hard triplet mining (:mod:`cvtasks.losses.metric_learning`) need several images
of each person in a batch, and several people: every anchor then has positives and negatives to
choose from (seed 001 §6.6, after eq. 6.28: the triplet loss needs "a properly curated dataset").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import BatchSampler, DistributedSampler, Sampler


class IdentityBatchSampler(BatchSampler):
    """Batches of P identities x K images, a different share of them on each process.

    Each epoch every identity's images are shuffled and cut into chunks of K (an identity with
    fewer than K images is topped up by repeats), at most ``chunks_per_identity`` of them kept;
    each batch then takes one chunk from each of the P identities with the most chunks left
    (ties broken at random), so no image repeats within an epoch and the number of batches is
    known in advance. The epoch's batches are identical on every process (same seed), which
    keeps every ``rank``-th one.

    The world is ``num_replicas``/``rank`` when given, else that of ``sampler`` when it is a
    ``DistributedSampler`` over several processes (what Lightning injects under DDP with
    ``use_distributed_sampler=True``; only its rank and size are read, never its indices), else
    ``torch.distributed``'s when initialized (``use_distributed_sampler=False``), else one
    process. The epoch is that of ``sampler`` when it is a ``DistributedSampler`` (Lightning
    calls its ``set_epoch`` every epoch, resumed runs included); otherwise each iteration starts
    the next epoch, or the one given to :meth:`set_epoch`.

    Args:
        sampler: a placeholder over the dataset; :class:`IdentityFoldersDataModule` passes a
            one-process ``DistributedSampler`` so that Lightning keeps it informed of the epoch.
        identities: the identity of every sample of the dataset.
        identities_per_batch: P.
        images_per_identity: K (>= 2, so every anchor has a positive).
        chunks_per_identity: chunks of K images each identity gives per epoch (``None``: all);
            1 makes an epoch "every identity once", with fresh images drawn each epoch.
        seed: the seed; epoch ``e`` draws from ``(seed, e)``.
        num_replicas: the number of processes (``None``: found as above).
        rank: this process's index.
        drop_last: kept for ``BatchSampler`` compatibility; batches are always whole.
    """

    def __init__(
        self,
        sampler: Sampler | Sequence[int],
        identities: Sequence[int],
        identities_per_batch: int = 16,
        images_per_identity: int = 4,
        chunks_per_identity: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = True,
    ) -> None:
        p, k = int(identities_per_batch), int(images_per_identity)
        super().__init__(sampler, batch_size=p * k, drop_last=True)
        if k < 2:
            raise ValueError(f"data.images_per_identity must be >= 2 to form positives, got {k}")
        groups: dict[int, list[int]] = {}
        for index, identity in enumerate(identities):
            groups.setdefault(int(identity), []).append(index)
        if p < 2 or len(groups) < p:
            raise ValueError(
                f"data.identities_per_batch must be in [2, {len(groups)}] (the number of training "
                f"identities), got {p}"
            )
        if chunks_per_identity is not None and chunks_per_identity < 1:
            raise ValueError(f"data.chunks_per_identity must be >= 1, got {chunks_per_identity}")
        self.groups = groups
        self.p, self.k, self.seed = p, k, int(seed)
        self.cap = chunks_per_identity
        self.num_replicas, self.rank = num_replicas, rank
        self._epoch = 0
        chunks = {i: self._count(len(idx)) for i, idx in groups.items()}
        self._batches = sum(1 for _ in self._rounds(chunks, None))  # the same every epoch

    def _count(self, images: int) -> int:
        chunks = max(1, images // self.k)
        return chunks if self.cap is None else min(chunks, self.cap)

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s batches on the next iteration."""
        self._epoch = int(epoch)
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(epoch)

    def world(self) -> tuple[int, int]:
        """``(num_replicas, rank)`` as found (see the class docstring)."""
        if self.num_replicas is not None:
            return int(self.num_replicas), int(self.rank or 0)
        if isinstance(self.sampler, DistributedSampler) and self.sampler.num_replicas > 1:
            return self.sampler.num_replicas, self.sampler.rank
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def _rounds(self, left: dict[int, int], rng: np.random.Generator | None) -> Iterator[list[int]]:
        """The identities of each batch: the P with the most chunks ``left`` (updated in place)."""
        while sum(1 for n in left.values() if n > 0) >= self.p:
            alive = [i for i, n in left.items() if n > 0]
            ties = rng.random(len(alive)) if rng is not None else np.zeros(len(alive))
            chosen = [alive[j] for j in np.lexsort((ties, [-left[i] for i in alive]))[: self.p]]
            for i in chosen:
                left[i] -= 1
            yield chosen

    def __len__(self) -> int:
        return self._batches // self.world()[0]

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.sampler.epoch if isinstance(self.sampler, DistributedSampler) else self._epoch
        self._epoch += 1
        rng = np.random.default_rng([self.seed, epoch])
        chunks: dict[int, list[list[int]]] = {}
        for identity, indices in self.groups.items():
            order = rng.permutation(indices).tolist()
            order += rng.choice(indices, size=max(0, self.k - len(order))).tolist()
            count = self._count(len(indices))
            chunks[identity] = [order[c * self.k : (c + 1) * self.k] for c in range(count)]
        left = {i: len(c) for i, c in chunks.items()}
        batches = [
            [index for i in chosen for index in chunks[i][left[i]]]
            for chosen in self._rounds(left, rng)
        ]
        world, rank = self.world()
        usable = len(batches) // world * world  # every process runs the same number of steps
        order = rng.permutation(len(batches))[:usable]
        for b in order[rank::world]:
            yield batches[b]
