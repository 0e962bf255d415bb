"""Augmentations repeat for the same seed and differ between DataLoader workers."""

import torch

from cvtasks.registry import DATASETS

AUGMENT = [{"name": "Affine", "rotate": [-30, 30], "translate_percent": [-0.2, 0.2], "p": 1.0}]


def first_batch(seed: int, num_workers: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    dm = DATASETS.build(
        "digits", augment=AUGMENT, batch_size=8, num_workers=num_workers, persistent_workers=False
    )
    dm.prepare_data()
    dm.setup("fit")
    loader = torch.utils.data.DataLoader(
        dm.train_dataset,
        batch_size=4,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=dm.train_dataloader().worker_init_fn,
    )
    return torch.cat([b["image"] for b, _ in zip(loader, range(2))])


def test_same_seed_same_augmentations_other_seed_other_ones():
    assert torch.equal(first_batch(3), first_batch(3))
    assert not torch.equal(first_batch(3), first_batch(4))


def test_workers_draw_different_augmentations(tmp_path, png):
    # Every image is the same grey square, so two workers with one shared random stream would
    # return identical first samples; seeded per worker, their augmentations differ.
    for cls in ("a", "b"):
        for i in range(4):
            png(tmp_path / "same" / cls / f"{i}.png", value=100)
    torch.manual_seed(0)
    dm = DATASETS.build(
        "image_folder",
        root=str(tmp_path / "same"),
        augment=AUGMENT,
        image_size=8,
        num_workers=2,
        persistent_workers=False,
        val_fraction=0.25,
        test_fraction=0.25,
    )
    dm.setup("fit")
    loader = torch.utils.data.DataLoader(
        dm.train_dataset,
        batch_size=1,
        num_workers=2,
        worker_init_fn=dm.train_dataloader().worker_init_fn,
    )
    first, second = [b["image"] for b, _ in zip(loader, range(2))]
    assert not torch.equal(first, second)
