"""Resumable loaders: the epoch's order comes from (seed, epoch); a restored position skips."""

import torch

from cvtasks.data.resumable import EpochRandomSampler, ResumableDataLoader, resumable_loader


def batches(loader):
    return [b.tolist() for b in loader]


def test_order_depends_on_seed_and_epoch_only():
    data = torch.arange(20)
    a = resumable_loader(data, shuffle=True, batch_size=4)
    b = resumable_loader(data, shuffle=True, batch_size=4)
    a.sampler.seed = b.sampler.seed = 7
    torch.rand(5)  # the global RNG does not matter
    assert batches(a) == batches(b)
    a.sampler.set_epoch(1)
    assert batches(a) != batches(b)
    assert sorted(i for batch in batches(a) for i in batch) == list(range(20))


def test_restored_position_skips_done_batches_without_reading_them():
    reads = []

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 12

        def __getitem__(self, i):
            reads.append(i)
            return i

    full = ResumableDataLoader(Data(), sampler=EpochRandomSampler(range(12), seed=3), batch_size=3)
    expected = batches(full)
    resumed = ResumableDataLoader(
        Data(), sampler=EpochRandomSampler(range(12), seed=3), batch_size=3
    )
    iterator = iter(resumed)  # made before the state arrives, as Lightning does on resume
    resumed.load_state_dict({"batches_done": 2})
    reads.clear()
    assert [b.tolist() for b in iterator] == expected[2:]
    assert len(reads) == 6  # the two skipped batches were never loaded
    assert resumed.state_dict() == {"batches_done": 4}
    assert batches(resumed) == expected  # the next epoch starts from its beginning


def test_state_of_a_finished_epoch_does_not_leak_into_the_next():
    loader = resumable_loader(torch.arange(8), shuffle=False, batch_size=2)
    iter(loader)  # an epoch whose iterator Lightning never pulls (it was already complete)
    loader.load_state_dict({"batches_done": 4})
    assert len(batches(loader)) == 4
