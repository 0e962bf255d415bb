"""Identity folders, LFW pairs files, the P x K sampler and the identity DataModule."""

from pathlib import Path

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from cvtasks.data.identity_folders import IdentityDataWarning, scan_identities
from cvtasks.data.identity_sampler import IdentityBatchSampler
from cvtasks.data.pairs import (
    PairEntry,
    draw_pairs,
    parse_pairs_file,
    resolve_pairs,
    write_pairs_file,
)
from cvtasks.data.scan import DataScanWarning, DuplicateFileError
from cvtasks.registry import DATASETS
from tests.data.conftest import deadline, make_fifo, write_png

LFW_SAMPLE = """2\t1
Abel_Pacheco\t1\t4
Aaron_Sorkin\t2\tAbel_Pacheco\t1
Akhmed_Zakayev\t1\t3

Abdullah\t1\tAkhmed_Zakayev\t2
"""


def make_identities(root: Path, counts: dict[str, int], suffix: str = ".png") -> Path:
    """``root/<name>/<name>_0001.png`` ... with ``counts[name]`` images each."""
    for k, (name, count) in enumerate(counts.items()):
        for i in range(1, count + 1):
            write_png(root / name / f"{name}_{i:04d}{suffix}", value=(7 * k + i) % 256)
    return root


def test_scan_identities_lists_people_and_skips_hidden_and_empty(tmp_path):
    make_identities(tmp_path, {"ann": 2, "bob": 3})
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "bob" / "notes.txt").write_text("x")
    found = scan_identities(tmp_path)
    assert list(found) == ["ann", "bob"] and len(found["bob"]) == 3
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_identities(tmp_path / "missing")


def test_parse_lfw_pairs_file(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text(LFW_SAMPLE)
    entries = parse_pairs_file(path)
    assert entries[0] == PairEntry("Abel_Pacheco", 1, "Abel_Pacheco", 4, 2)
    assert entries[1] == PairEntry("Aaron_Sorkin", 2, "Abel_Pacheco", 1, 3)
    assert [e.same for e in entries] == [1, 0, 1, 0]


def test_bad_pairs_line_names_file_and_line(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("10\nann 1 2\nann one 2\n")
    with pytest.raises(ValueError, match=r"pairs.txt:3: expected 'name i j'"):
        parse_pairs_file(path)
    path.write_text("ann 1 2 bob 3\n")
    with pytest.raises(ValueError, match=r"pairs.txt:1"):
        parse_pairs_file(path)


def test_write_then_parse_round_trips(tmp_path):
    entries = [PairEntry("a", 1, "a", 2), PairEntry("a", 1, "b", 3)]
    write_pairs_file(tmp_path / "p.txt", entries, folds=1)
    assert (tmp_path / "p.txt").read_text().splitlines() == ["2", "a\t1\t2", "a\t1\tb\t3"]
    assert [e[:4] for e in parse_pairs_file(tmp_path / "p.txt")] == [e[:4] for e in entries]


def test_resolve_pairs_finds_any_image_suffix_and_names_missing_files(tmp_path):
    make_identities(tmp_path, {"ann": 2}, suffix=".jpg")
    make_identities(tmp_path, {"bob": 1})
    entries = [PairEntry("ann", 1, "ann", 2, 2), PairEntry("ann", 1, "bob", 3, 3)]
    with pytest.raises(FileNotFoundError, match=r"pairs.txt:3: image .*bob_0003\.\* does not"):
        resolve_pairs(entries, tmp_path, "pairs.txt")
    pairs, skipped = resolve_pairs(entries, tmp_path, "pairs.txt", on_missing_file="skip")
    assert skipped == 1 and len(pairs) == 1
    assert pairs[0][0].endswith("ann_0001.jpg") and pairs[0][2] == 1


def test_draw_pairs_is_seeded_balanced_and_without_repeats():
    counts = {"a": 3, "b": 1, "c": 4, "d": 2}
    entries = draw_pairs(counts, 20, seed=3, folds=2)
    assert entries == draw_pairs(counts, 20, seed=3, folds=2)
    assert entries != draw_pairs(counts, 20, seed=4, folds=2)
    assert [e.same for e in entries] == [1] * 5 + [0] * 5 + [1] * 5 + [0] * 5
    keys = {tuple(sorted([(e.name_a, e.idx_a), (e.name_b, e.idx_b)])) for e in entries}
    assert len(keys) == 20
    for e in entries:
        assert 1 <= e.idx_a <= counts[e.name_a] and 1 <= e.idx_b <= counts[e.name_b]
        assert e.same == (e.name_a == e.name_b) and (e.name_a, e.idx_a) != (e.name_b, e.idx_b)
        assert not e.same or counts[e.name_a] >= 2


# -- the P x K sampler ---------------------------------------------------------------------------
IDS = [i for i in range(10) for _ in range(4 + i % 3)]  # 10 identities with 4-6 images each


def check_batches(batches, p=3, k=2):
    for batch in batches:
        people = [IDS[i] for i in batch]
        assert len(batch) == p * k and len(set(people)) == p
        assert all(people.count(person) == k for person in set(people))
        assert len(set(batch)) == p * k  # no image twice


def test_sampler_yields_p_identities_times_k_images_and_knows_its_length():
    sampler = IdentityBatchSampler(
        range(len(IDS)), IDS, identities_per_batch=3, seed=1, images_per_identity=2
    )
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    check_batches(batches)
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))  # no image twice within an epoch
    assert list(sampler) != batches  # the next epoch draws anew
    sampler.set_epoch(0)
    assert list(sampler) == batches  # ... and epoch 0 again repeats


def test_sampler_ranks_get_disjoint_equal_shares_under_a_fake_world():
    def share(rank):
        return list(
            IdentityBatchSampler(range(len(IDS)), IDS, 3, 2, seed=5, num_replicas=2, rank=rank)
        )

    ranks = [share(0), share(1)]
    assert len(ranks[0]) == len(ranks[1]) > 0
    check_batches(ranks[0] + ranks[1])
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}
    whole = IdentityBatchSampler(range(len(IDS)), IDS, 3, 2, seed=5)
    assert len(ranks[0]) == len(whole) // 2


def test_sampler_reads_rank_and_epoch_from_an_injected_distributed_sampler():
    # What Lightning's use_distributed_sampler=True does with a BatchSampler subclass: it rebuilds
    # it with its saved arguments and a DistributedSampler in place of ``sampler``.
    from lightning_fabric.utilities.data import _replace_dunder_methods
    from pytorch_lightning.utilities.data import _update_dataloader

    dataset = list(range(len(IDS)))
    with _replace_dunder_methods(BatchSampler):
        loader = DataLoader(dataset, batch_sampler=IdentityBatchSampler(range(len(IDS)), IDS, 3, 2))
    injected = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=True)
    updated = _update_dataloader(loader, injected)
    assert isinstance(updated.batch_sampler, IdentityBatchSampler)
    assert updated.batch_sampler.world() == (2, 1)
    injected.set_epoch(3)
    reference = IdentityBatchSampler(range(len(IDS)), IDS, 3, 2, num_replicas=2, rank=1)
    reference.set_epoch(3)
    assert [b.tolist() for b in updated] == list(reference)


def test_sampler_rejects_impossible_batches():
    with pytest.raises(ValueError, match="identities_per_batch must be in"):
        IdentityBatchSampler(range(len(IDS)), IDS, identities_per_batch=11)
    with pytest.raises(ValueError, match="images_per_identity must be >= 2"):
        IdentityBatchSampler(range(len(IDS)), IDS, 3, images_per_identity=1)


# -- the data module -----------------------------------------------------------------------------
def build(root, **kwargs):
    options = dict(image_size=8, batch_size=4, identities_per_batch=2, images_per_identity=2)
    return DATASETS.build("identity_folders", root=root, **{**options, **kwargs})


def test_split_layout_trains_on_train_and_draws_pairs_of_unseen_people(tmp_path):
    make_identities(tmp_path / "train", {"a": 3, "b": 2, "c": 4})
    make_identities(tmp_path / "val", {"v1": 2, "v2": 2})
    make_identities(tmp_path / "test", {"t1": 3, "t2": 2})
    dm = build(tmp_path, num_pairs=6)
    dm.setup("fit")
    assert dm.class_names == ["a", "b", "c"] and len(dm.train_dataset) == 9
    loader = dm.train_dataloader()
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 8, 8) and batch["identity"].dtype == torch.int64
    assert len(set(batch["identity"].tolist())) == 2
    # the epoch comes from the placeholder DistributedSampler, whose set_epoch Lightning calls
    epoch0 = [b for b in loader.batch_sampler]
    assert [b for b in loader.batch_sampler] == epoch0
    loader.batch_sampler.sampler.set_epoch(1)
    assert [b for b in loader.batch_sampler] != epoch0
    sample = dm.test_dataset[0]
    assert set(sample) == {"image", "image_b", "same", "path", "path_b"}
    test_people = {
        Path(p).parent.name
        for a, b, _ in dm.test_dataset.pairs
        for p in (dm.test_dataset.images.samples[a][0], dm.test_dataset.images.samples[b][0])
    }
    assert test_people <= {"t1", "t2"}
    pair_batch = next(iter(dm.val_dataloader()))
    assert pair_batch["image_b"].shape[1:] == (3, 8, 8) and pair_batch["same"].dtype == torch.int64


def test_flat_layout_holds_out_the_people_named_by_the_pairs_file(tmp_path):
    make_identities(tmp_path / "people", {n: 3 for n in "abcdefgh"})
    (tmp_path / "people" / "pairs.txt").write_text("2\na 1 2\na 1 b 2\n")
    dm = build(tmp_path / "people", test_pairs="pairs.txt", val_fraction=0.2)
    dm.setup()
    assert len(dm.test_dataset) == 2
    assert "a" not in dm.class_names and "b" not in dm.class_names
    assert len(dm.class_names) == 8 - 2 - 1  # one of six carved out for val (0.2, rounded)


def test_identity_with_one_image_is_an_error_naming_its_folder_or_skipped(tmp_path):
    make_identities(tmp_path / "train", {"a": 3, "b": 2, "solo": 1})
    make_identities(tmp_path / "val", {"v1": 2, "v2": 2})
    make_identities(tmp_path / "test", {"t1": 2, "t2": 2})
    with pytest.raises(ValueError, match=r"identity folder .*solo has one image"):
        build(tmp_path).setup()
    dm = build(tmp_path, on_single_image="skip")
    with pytest.warns(IdentityDataWarning, match="1 training identities with one image"):
        dm.setup()
    assert dm.skipped_identities == ["solo"] and dm.class_names == ["a", "b"]


def test_pairs_file_naming_missing_files_is_an_error_or_skipped_and_counted(tmp_path):
    make_identities(tmp_path / "train", {"a": 3, "b": 2, "c": 2})
    make_identities(tmp_path / "test", {"t1": 2, "t2": 2})
    (tmp_path / "test_pairs.txt").write_text("t1 1 2\nt1 1 t2 9\nt1 7 t2 1\n")
    with pytest.raises(FileNotFoundError, match=r"test_pairs.txt:2: image .*t2_0009"):
        build(tmp_path, test_pairs="test_pairs.txt", val_fraction=0.3).setup()
    dm = build(tmp_path, test_pairs="test_pairs.txt", on_missing_file="skip", val_fraction=0.3)
    with pytest.warns(IdentityDataWarning, match="2 pair"):
        dm.setup()
    assert dm.skipped_pairs["test"] == 2 and len(dm.test_dataset) == 1


def test_bad_options_fail_when_the_config_is_read(tmp_path):
    with pytest.raises(ValueError, match=r"data\.on_single_image"):
        build(tmp_path, on_single_image="ignore")
    with pytest.raises(ValueError, match=r"data\.val_fraction"):
        build(tmp_path, val_fraction=0.7)


@pytest.mark.parametrize("root", [None, ""])
def test_a_missing_root_is_an_error_naming_data_root(root):
    with pytest.raises(ValueError, match=r"data\.root is not set.*data\.root=/data/lfw"):
        DATASETS.build("identity_folders", root=root)
    with pytest.raises(ValueError, match=r"data\.root is not set"):
        DATASETS.build("identity_folders")  # what the config's `root: null` becomes


def test_draw_pairs_stops_when_every_distinct_pair_is_drawn():
    # 2 people x 2 images: 2 same pairs and 4 different ones exist, however many are asked for
    entries = draw_pairs({"a": 2, "b": 2}, 1000, seed=0)
    assert sorted(e.same for e in entries) == [0, 0, 0, 0, 1, 1]


def test_an_identity_folder_linking_to_another_is_an_error(tmp_path):
    make_identities(tmp_path, {"ann": 2, "bob": 3})
    (tmp_path / "robert").symlink_to(tmp_path / "bob")
    with pytest.raises(DuplicateFileError, match=r"identity folders .*bob and .*robert are the"):
        scan_identities(tmp_path)


def test_one_image_in_two_identity_folders_is_an_error(tmp_path):
    make_identities(tmp_path, {"ann": 2, "bob": 3})
    (tmp_path / "ann" / "ann_0003.png").symlink_to(tmp_path / "bob" / "bob_0001.png")
    both = r"ann_0003\.png \(ann\) and .*bob_0001\.png \(bob\) are the same file"
    with pytest.raises(DuplicateFileError, match=both):
        scan_identities(tmp_path)


def test_fifos_links_out_of_the_root_and_empty_files(tmp_path):
    root = make_identities(tmp_path / "root", {"ann": 2, "bob": 3})
    make_identities(tmp_path / "other", {"cy": 2})
    (root / "cy").symlink_to(tmp_path / "other" / "cy")
    make_fifo(root / "ann" / "ann_0009.png")
    with deadline(), pytest.warns(DataScanWarning, match=r"leaving.*follow_links.*FIFO"):
        found = scan_identities(root)
    assert {n: len(p) for n, p in found.items()} == {"ann": 2, "bob": 3}
    with deadline(), pytest.warns(DataScanWarning, match="special file"):
        assert "cy" in scan_identities(root, follow_links=True)
    (root / "bob" / "bob_0004.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.*bob_0004\.png"), pytest.warns(DataScanWarning):
        scan_identities(root)


def test_resolve_pairs_refuses_two_files_for_one_image_and_skips_fifos(tmp_path):
    make_identities(tmp_path, {"ann": 2})
    make_fifo(tmp_path / "ann" / "ann_0003.png")
    entries = [PairEntry("ann", 1, "ann", 3, 1)]
    with deadline(), pytest.raises(FileNotFoundError, match=r"ann_0003\.\* does not exist"):
        resolve_pairs(entries, tmp_path, "pairs.txt")
    write_png(tmp_path / "ann" / "ann_0001.jpg")
    with pytest.raises(ValueError, match=r"ann_0001\.jpg and .*ann_0001\.png are both image"):
        resolve_pairs([PairEntry("ann", 1, "ann", 2, 1)], tmp_path, "pairs.txt")


def test_follow_links_is_checked_by_the_datamodule(tmp_path):
    with pytest.raises(ValueError, match=r"data\.follow_links must be one of False, True"):
        DATASETS.build("identity_folders", root=tmp_path, follow_links="maybe")
