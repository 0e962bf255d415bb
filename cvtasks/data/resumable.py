"""Data loaders that resume mid-epoch where a killed run stopped, in the same order.

Lightning restores the loop counters from a checkpoint and, for a loader with
``state_dict``/``load_state_dict``, the loader's position too (``fit_loop`` stores
``combined_loader`` states). Two things are needed for the resumed run to see exactly the
batches the uninterrupted one would have seen:

* the epoch's order must be a function of ``(seed, epoch)``, not of the global RNG at the moment
  the iterator is made: :class:`EpochRandomSampler` (a ``RandomSampler``, so under DDP Lightning
  still swaps in its ``DistributedSampler``, which is seeded the same way);
* the iterator must start *after* Lightning sets the sampler's epoch: on resume Lightning makes
  the iterator in ``setup_data`` before calling ``set_epoch``, so :class:`ResumableDataLoader`
  makes its real iterator lazily, at the first ``next()``, and skips the batches already done by
  index (no image is read for them).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sized
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, RandomSampler


def global_seed() -> int:
    """The run's seed: Lightning's ``PL_GLOBAL_SEED`` (set by ``seed_everything``) or torch's."""
    return int(os.environ.get("PL_GLOBAL_SEED", torch.initial_seed() % 2**63))


class EpochRandomSampler(RandomSampler):
    """A random permutation per epoch drawn from ``(seed, epoch)`` alone.

    Args:
        data_source: the dataset (only its length is used).
        seed: the seed; ``None`` reads :func:`global_seed` now.
    """

    def __init__(self, data_source: Sized, seed: int | None = None) -> None:
        super().__init__(data_source)
        self.seed = global_seed() if seed is None else int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s permutation on the next iteration (Lightning calls this)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class _SkipFirst:
    """The loader's index sampler, dropping the batches a resumed epoch has already done."""

    def __init__(self, base: Any, loader: ResumableDataLoader) -> None:
        self.base = base
        self.loader = loader

    def __iter__(self) -> Iterator[Any]:
        skip, self.loader._pending_skip = self.loader._pending_skip, 0
        return itertools.islice(iter(self.base), skip, None)

    def __len__(self) -> int:
        return len(self.base)


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` whose position within the epoch is saved in checkpoints and restored.

    Its state is ``{"batches_done": n}``, the batches handed out by the current iterator (Lightning
    does not prefetch from loaders with a length, so that is the number trained on). A state
    loaded after the iterator was made but before it started applies to that iterator (Lightning
    makes it early, see :func:`cvtasks.training.callbacks.RunState`). Takes every ``DataLoader``
    argument unchanged (Lightning re-creates it with a distributed sampler).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches_done = 0
        self._skip_next = 0
        self._pending_skip = 0
        self._unstarted: dict[str, int] | None = None

    @property
    def _index_sampler(self) -> Any:
        return _SkipFirst(super()._index_sampler, self)

    def __iter__(self) -> Iterator[Any]:
        # run the real iterator lazily, at the first next() (see the module docstring)
        plan = {"skip": self._skip_next}
        self._skip_next = 0
        self._unstarted = plan
        return self._iterate(plan)

    def _iterate(self, plan: dict[str, int]) -> Iterator[Any]:
        if self._unstarted is plan:
            self._unstarted = None
        self._batches_done = self._pending_skip = plan["skip"]
        # DataLoader draws its workers' base seed when an iterator starts, from the global RNG
        # unless it has a generator: draw it from (seed, epoch) so that starting an iterator
        # late, as a resumed epoch does, neither shifts the global RNG nor the workers' seeds
        sampler = self.sampler
        seed = getattr(sampler, "seed", None)
        self.generator = torch.Generator().manual_seed(
            (global_seed() if seed is None else int(seed)) + int(getattr(sampler, "epoch", 0))
        )
        for batch in super().__iter__():
            self._batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """The position in the current epoch, for a checkpoint."""
        return {"batches_done": self._batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Skip ``state["batches_done"]`` batches: in the iterator made but not started, if any,
        else in the next one."""
        skip = int(state.get("batches_done", 0))
        if self._unstarted is not None:
            self._unstarted["skip"] = skip
        else:
            self._skip_next = skip
        self._batches_done = skip


def eval_sampler(dataset: Dataset, trainer: Any) -> Any:
    """A sampler that shows each evaluation sample exactly once per process group, or ``None``.

    Lightning's ``DistributedSampler`` pads a split to a multiple of the world size by repeating
    samples, so synced metrics count a few samples twice. Under a DDP strategy each process takes
    ``rank::world`` without padding instead (uneven shard sizes are safe: DDP's forward in eval
    mode runs no collective after the first batch, and every metric syncs once at epoch end).
    FSDP gathers parameters in every forward, so it keeps Lightning's padded sampler.
    """
    from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
    from pytorch_lightning.strategies import DDPStrategy

    strategy = getattr(trainer, "strategy", None)
    if not isinstance(strategy, DDPStrategy) or not (dist.is_available() and dist.is_initialized()):
        return None
    if dist.get_world_size() < 2:
        return None
    return UnrepeatedDistributedSampler(dataset, shuffle=False)


def resumable_loader(
    dataset: Dataset, *, shuffle: bool, trainer: Any = None, **kwargs: Any
) -> ResumableDataLoader:
    """A :class:`ResumableDataLoader`: seeded per-epoch shuffling, or exact-once evaluation."""
    sampler = EpochRandomSampler(dataset) if shuffle else eval_sampler(dataset, trainer)
    return ResumableDataLoader(dataset, sampler=sampler, shuffle=False, **kwargs)
