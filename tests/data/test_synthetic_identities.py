"""The built-in identity datasets: procedural faces and open-set digits, written once."""

import numpy as np
import pytest

from cvtasks.data.builtin.digits_identities import write_digits_identities
from cvtasks.data.builtin.synthetic_identities import (
    dataset_dir_name,
    draw_identity,
    render_face,
    write_synthetic_identities,
)
from cvtasks.data.pairs import parse_pairs_file
from cvtasks.registry import DATASETS

SMALL = (4, 2, 3)


def test_faces_are_written_once_as_identity_folders_with_pairs(tmp_path):
    folder = write_synthetic_identities(tmp_path, SMALL, images=3)
    assert folder.name == dataset_dir_name(SMALL, 3) == "synthetic-identities-v1-4-2-3x3"
    people = {s: sorted(p.name for p in (folder / s).iterdir()) for s in ("train", "val", "test")}
    assert people["train"] == [f"person_{n:04d}" for n in range(4)]
    assert people["test"] == ["person_0006", "person_0007", "person_0008"]
    files = sorted(p.name for p in (folder / "train" / "person_0001").iterdir())
    assert files == ["person_0001_0001.jpg", "person_0001_0002.jpg", "person_0001_0003.jpg"]
    entries = parse_pairs_file(folder / "test_pairs.txt")
    assert entries and {e.name_a for e in entries} <= set(people["test"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    stamp = (folder / "train" / "person_0000" / "person_0000_0001.jpg").stat().st_mtime_ns
    assert write_synthetic_identities(tmp_path, SMALL, images=3) == folder
    assert (folder / "train" / "person_0000" / "person_0000_0001.jpg").stat().st_mtime_ns == stamp


def test_faces_are_deterministic(tmp_path):
    a = write_synthetic_identities(tmp_path / "a", (2, 2, 2), images=2)
    b = write_synthetic_identities(tmp_path / "b", (2, 2, 2), images=2)
    for path in sorted(a.rglob("*.*")):
        assert path.read_bytes() == (b / path.relative_to(a)).read_bytes(), path


def test_a_person_is_fixed_and_each_image_of_them_varies():
    person = draw_identity(np.random.default_rng([1, 2]))
    assert person == draw_identity(np.random.default_rng([1, 2]))
    images = [render_face(person, np.random.default_rng([1, 2, i])) for i in range(6)]
    assert images[0].shape == (64, 64, 3) and images[0].dtype == np.uint8
    assert all(not np.array_equal(images[0], other) for other in images[1:])
    # colour alone does not tell a person: their images' mean colours spread widely
    means = np.array([img.reshape(-1, 3).mean(axis=0) for img in images])
    assert means.std(axis=0).max() > 8.0


def test_faces_datamodule_reads_what_it_wrote(tmp_path):
    dm = DATASETS.build(
        "synthetic_identities",
        root=tmp_path,
        identities=[6, 3, 3],
        images_per_person=4,
        identities_per_batch=3,
        images_per_identity=2,
        num_pairs=10,
    )
    dm.prepare_data()
    dm.setup()
    assert len(dm.class_names) == 6 and len(dm.train_dataset) == 24
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (6, 3, 40, 40) and len(set(batch["identity"].tolist())) == 3
    assert len(dm.val_dataset) > 0 and len(dm.test_dataset) > 0


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"data\.identities must be 3 counts"):
        write_synthetic_identities(tmp_path, (4, 1, 3))


def test_digits_split_open_set_0_to_6_train_7_to_9_verify(tmp_path):
    folder = write_digits_identities(tmp_path)
    train = sorted(p.name for p in (folder / "train").iterdir())
    assert train == [f"digit_{d}" for d in range(7)]
    for split in ("val", "test"):
        assert sorted(p.name for p in (folder / split).iterdir()) == [
            "digit_7",
            "digit_8",
            "digit_9",
        ]
        names = {n for e in parse_pairs_file(folder / f"{split}_pairs.txt") for n in e[:3:2]}
        assert names <= {"digit_7", "digit_8", "digit_9"}
    val = {p.name for p in (folder / "val" / "digit_7").iterdir()}
    assert len(val) > 80 and len(parse_pairs_file(folder / "test_pairs.txt")) == 1000
    dm = DATASETS.build("digits_identities", root=tmp_path)
    dm.setup()
    assert dm.class_names == train and len(dm.test_dataset) == 1000
