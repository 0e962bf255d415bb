"""Shards: written by ``data convert``, read back as the reader's own samples, split over ranks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cvtasks.cli.build import build_datamodule
from cvtasks.cli.data_convert import ConvertOptions, convert, split_arguments
from cvtasks.data.shards import INDEX, read_index


def _class_folders(root, per_class=7, size=12):
    rng = np.random.default_rng(0)
    for label in ("a", "b", "c"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size + i, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def _mask_folders(root, count=10, size=16):
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            root / "images" / f"{i}.png"
        )
        mask = rng.integers(0, 3, (size, size), dtype=np.uint8)
        mask[0, 0] = 255
        Image.fromarray(mask, mode="L").save(root / "masks" / f"{i}.png")
    return root


def _converted(compose_train, tmp_path, data_overrides, shard_size="4"):
    cfg = compose_train(*data_overrides, "data.num_workers=0")
    meta = convert(cfg, ConvertOptions(output=str(tmp_path / "shards"), shard_size=shard_size))
    return cfg, meta, tmp_path / "shards"


def _same_samples(loose, shards, split):
    a, b = getattr(loose, f"{split}_dataset"), getattr(shards, f"{split}_dataset")
    assert len(a) == len(b) > 0
    for index in range(len(a)):
        x, y = a[index], b[index]
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], torch.Tensor):
                assert torch.equal(x[key], y[key]), (split, index, key)
            else:
                assert x[key] == y[key]


@pytest.mark.parametrize(
    "reader",
    [
        ("data=image_folder", "backbone=lenet5"),
        ("task=segmentation", "data=image_masks", "backbone=lenet5", "data.image_size=16"),
    ],
    ids=["class_folders", "image_masks"],
)
def test_shards_give_the_readers_own_evaluation_samples(compose_train, tmp_path, reader):
    root = (_class_folders if "data=image_folder" in reader else _mask_folders)(tmp_path / "raw")
    data = (*reader, f"data.root={root}")
    cfg, meta, out = _converted(compose_train, tmp_path, data)
    loose = build_datamodule(cfg)
    loose.setup("test")
    assert meta["splits"] == {s: len(getattr(loose, f"{s}_dataset")) for s in meta["splits"]}
    assert sorted(p.name for p in (out / "train").glob("*.bin"))  # chunks of 4 samples
    assert len(list((out / "train").glob("*.bin"))) == -(-meta["splits"]["train"] // 4)
    shards_cfg = compose_train(*reader[:1], "data=shards", f"data.root={out}", "backbone=lenet5")
    # `source`: the converted config's values
    assert shards_cfg.data.image_size == cfg.data.image_size
    assert list(shards_cfg.data.mean) == list(cfg.data.mean)
    shards = build_datamodule(shards_cfg)
    shards.setup("test")
    assert shards.class_names == loose.class_names
    for split in ("val", "test"):
        _same_samples(loose, shards, split)


#: built-in data of each remaining kind of target, small
BUILT_IN = {
    "boxes": ("task=localization", "data=digits_localization", "backbone=lenet5"),
    "objects": (
        "task=detection",
        "data=digits_detection",
        "data.num_train=24",
        "data.num_val=8",
        "data.num_test=8",
    ),
    "keypoints": (
        "task=landmarks",
        "data=synthetic_faces",
        "data.num_train=24",
        "data.num_val=8",
        "data.num_test=8",
    ),
    "identities": ("task=siamese", "data=digits_identities", "backbone=lenet5"),
}


@pytest.mark.parametrize("kind", list(BUILT_IN))
def test_every_kind_of_target_comes_back_as_the_readers_sample(compose_train, tmp_path, kind):
    """Boxes (moved by the pipelines' box handling), detection lists, keypoints with their flip
    pairs, identities and evaluation pairs: every split's samples equal the loose files'."""
    reader = (*BUILT_IN[kind], "data.augment=[]")  # a deterministic training pipeline too
    cfg, _meta, out = _converted(compose_train, tmp_path, reader, shard_size="8")
    loose = build_datamodule(cfg)
    loose.setup("test")
    task, *rest = reader
    backbone = [o for o in rest if o.startswith("backbone=")]
    shards = build_datamodule(
        compose_train(task, "data=shards", f"data.root={out}", "data.augment=[]", *backbone)
    )
    shards.setup("fit")
    for split in ("val", "test"):
        _same_samples(loose, shards, split)
    # the training split, written in the seeded order: shard sample i is loose sample order[i]
    listed = len(loose.train_dataset)
    order = torch.randperm(listed, generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    for i in (0, 1, listed - 1):
        x, y = loose.train_dataset[order[i]], shards.train_dataset[i]
        for key in x:
            if key == "index":
                assert y[key] == i
            elif isinstance(x[key], torch.Tensor):
                assert torch.equal(x[key], y[key]), (i, key)
    for key in ("keypoint_names", "flip_pairs", "skeleton"):
        if hasattr(loose, key):
            assert list(map(list, getattr(shards, key))) == list(map(list, getattr(loose, key)))
    empty = shards.empty_batch()
    assert set(empty) == set(loose.empty_batch())
    assert shards.list_keys == loose.list_keys


def test_identity_shards_train_in_p_by_k_batches_of_the_indexed_labels(compose_train, tmp_path):
    reader = BUILT_IN["identities"]
    cfg, meta, out = _converted(compose_train, tmp_path, reader)
    assert len(meta["train_labels"]) == meta["splits"]["train"]
    shards = build_datamodule(
        compose_train("task=siamese", "data=shards", f"data.root={out}", "backbone=lenet5")
    )
    shards.setup("fit")
    batch = next(iter(shards.train_dataloader()))
    p, k = cfg.data.identities_per_batch, cfg.data.images_per_identity
    counts = torch.bincount(batch["identity"])
    assert len(batch["identity"]) == p * k and sorted(counts[counts > 0].tolist()) == [k] * p
    # each image is of the identity the index says (the record's own label)
    stream = shards.train_dataset
    for index in range(0, len(stream), 97):
        record = json.loads(stream.stored(index)["record"])
        assert meta["train_labels"][index] == record["label"] == stream[index]["identity"]


def test_the_training_split_is_written_in_a_seeded_random_order(compose_train, tmp_path):
    from litdata import StreamingDataset

    root = _class_folders(tmp_path / "raw", per_class=10)
    cfg, _meta, out = _converted(
        compose_train, tmp_path, ("data=image_folder", f"data.root={root}")
    )
    loose = build_datamodule(cfg)
    listed = [path for path, _label in loose.train_dataset.samples]  # by class folder
    stream = StreamingDataset(str(out / "train"))
    written = [json.loads(stream[i]["record"])["path"] for i in range(len(stream))]
    assert sorted(written) == sorted(listed) and written != listed
    expected = torch.randperm(len(listed), generator=torch.Generator().manual_seed(cfg.seed))
    assert written == [listed[i] for i in expected.tolist()]


def test_multilabel_rows_survive_the_round_trip(compose_train, tmp_path):
    from tests.data.multilabel_files import write_colour_set

    csv = write_colour_set(tmp_path / "raw", count=20)
    root = tmp_path / "raw" / "images"
    reader = ("task=multilabel", "data=multilabel_csv", f"data.root={root}", f"data.csv={csv}")
    cfg, meta, out = _converted(compose_train, tmp_path, (*reader, "backbone=lenet5"))
    assert meta["codec"] == "label_set"
    loose = build_datamodule(cfg)
    loose.setup("test")
    shards = build_datamodule(
        compose_train("task=multilabel", "data=shards", f"data.root={out}", "backbone=lenet5")
    )
    shards.setup("test")
    _same_samples(loose, shards, "test")


def test_two_ranks_of_two_workers_see_each_training_sample_once(compose_train, tmp_path):
    from litdata import StreamingDataset
    from litdata.utilities.env import _DistributedEnv
    from torch.utils.data import DataLoader

    _cfg, meta, out = _converted(
        compose_train,
        tmp_path,
        ("data=image_folder", f"data.root={_class_folders(tmp_path / 'r', 11)}"),
        shard_size="3",
    )
    total = meta["splits"]["train"]
    seen: list[str] = []
    per_rank = []
    for rank in (0, 1):
        stream = StreamingDataset(str(out / "train"), shuffle=True, seed=0)
        stream.distributed_env = _DistributedEnv(world_size=2, global_rank=rank, num_nodes=1)
        stream.drop_last = True  # what LitData sets under several processes
        loader = DataLoader(stream, batch_size=None, num_workers=2)
        paths = [json.loads(item["record"])["path"] for item in loader]
        per_rank.append(len(paths))
        seen += paths
    assert len(seen) == len(set(seen))  # nothing twice
    # LitData's remainder rule: every rank the same number of samples (the same steps), the
    # fewer than world_size left over dropped: 23 samples, 11 per rank
    assert per_rank == [total // 2] * 2 and total - len(seen) == total % 2 == 1


def test_a_folder_without_an_index_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no cvtasks_shards.json there.*data convert"):
        read_index(str(tmp_path))
    (tmp_path / INDEX).write_text(json.dumps({"version": 99, "splits": {"train": 1}}))
    with pytest.raises(ValueError, match="not a cvtasks shard index of version 1"):
        read_index(str(tmp_path))


def test_convert_refuses_to_overwrite_and_parses_its_options(compose_train, tmp_path):
    options, overrides = split_arguments(["data=digits", "output=/x", "shard_size=64MB"])
    assert overrides == ["data=digits"] and options.chunk() == {"chunk_bytes": "64MB"}
    assert split_arguments(["output=/x", "shard_size=500"])[0].chunk() == {"chunk_size": 500}
    with pytest.raises(ValueError, match="shard_size=lots"):
        split_arguments(["output=/x", "shard_size=lots"])[0].chunk()
    with pytest.raises(ValueError, match="output=DIR is required"):
        split_arguments(["data=digits"])
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "keep.txt").write_text("x")
    cfg = compose_train("data=image_folder", f"data.root={_class_folders(tmp_path / 'r')}")
    with pytest.raises(ValueError, match="exists and is not empty; add overwrite=true"):
        convert(cfg, ConvertOptions(output=str(tmp_path / "shards")))
    assert (tmp_path / "shards" / "keep.txt").exists()


def test_readers_without_a_codec_say_what_converts(compose_train, tmp_path, monkeypatch):
    from cvtasks.data.image_folder import ImageFolderDataset
    from cvtasks.data.shard_codecs import CODECS

    monkeypatch.delitem(CODECS, ImageFolderDataset)  # as a plugin's dataset class would be
    cfg = compose_train("data=image_folder", f"data.root={_class_folders(tmp_path / 'r')}")
    with pytest.raises(ValueError, match=r"cannot be written as shards.*MultilabelDataset"):
        convert(cfg, ConvertOptions(output=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()  # nothing half-written
