"""The streaming loader resumes one epoch at its saved position; the epochs after it are whole.

Epochs are taken as Lightning takes them from a loader with a length: exactly that many batches,
the iterator then dropped without being run to its end.
"""

from __future__ import annotations

import itertools

import pytest

from cvtasks.data.shard_loader import StreamingLoader

SAMPLES = 23  # chunks of 3, batches of 4: positions fall inside chunks, the last batch is short
BATCH = 4


@pytest.fixture(scope="module")
def stream_dir(tmp_path_factory):
    from litdata.streaming import Cache

    folder = tmp_path_factory.mktemp("stream")
    cache = Cache(str(folder), chunk_size=3)
    for index in range(SAMPLES):
        cache[index] = index
    cache.done()
    cache.merge()
    return str(folder)


def loader(stream_dir, num_workers=0):
    from litdata import StreamingDataset

    stream = StreamingDataset(stream_dir, shuffle=True, seed=7)
    return StreamingLoader(stream, batch_size=BATCH, num_workers=num_workers)


def take(loader, batches):
    """The samples of the first ``batches`` batches of a new epoch, in order."""
    return [int(x) for batch in itertools.islice(iter(loader), batches) for x in batch]


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_loaded_state_resumes_that_epoch_and_the_next_epochs_are_whole(stream_dir, num_workers):
    first = loader(stream_dir, num_workers)
    per_epoch = len(first)
    assert per_epoch == -(-SAMPLES // BATCH) == 6
    before = take(first, 2)  # stopped after two steps, mid-epoch
    state = first.state_dict()
    assert state["num_samples_yielded"] == 2 * BATCH

    resumed = loader(stream_dir, num_workers)
    resumed.load_state_dict(state)
    unused = iter(resumed)  # an iterator made and dropped unstarted spends nothing
    del unused
    after = take(resumed, per_epoch - 2)
    assert len(after) == SAMPLES - len(before)
    assert sorted(before + after) == list(range(SAMPLES))  # each sample once, none replayed
    for _ in range(2):  # LitData's loader alone, with a worker, repeated part of `after` here
        epoch = take(resumed, per_epoch)
        assert sorted(epoch) == list(range(SAMPLES))


def test_the_epochs_after_a_resume_are_those_of_an_uninterrupted_loader(stream_dir):
    reference = loader(stream_dir)
    epochs = [take(reference, len(reference)) for _ in range(3)]
    assert epochs[1] != epochs[2]  # shuffled anew each epoch

    stopped = loader(stream_dir)
    assert take(stopped, 3) == epochs[0][: 3 * BATCH]
    resumed = loader(stream_dir)
    resumed.load_state_dict(stopped.state_dict())
    assert take(resumed, len(resumed) - 3) == epochs[0][3 * BATCH :]
    assert take(resumed, len(resumed)) == epochs[1]
    assert take(resumed, len(resumed)) == epochs[2]
