import pytest
import torch
from torch.utils.data import Dataset

from cvtasks.data import VisionDataModule
from cvtasks.data.datamodule import DropBadSamples, check_choice


def _sample(label: int) -> dict[str, torch.Tensor]:
    return {"image": torch.full((3, 4, 4), float(label)), "label": torch.tensor(label)}


class _Listed(Dataset):
    def __init__(self, samples: list) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        return self.samples[i]


def test_collate_drops_and_counts_none() -> None:
    collate = DropBadSamples(VisionDataModule(image_size=4).empty_batch())
    batch = collate([_sample(1), None, _sample(2), None])
    assert batch["image"].shape == (2, 3, 4, 4)
    assert batch["label"].tolist() == [1, 2]
    assert batch["label"].dtype == torch.int64
    assert batch["skipped"].item() == 2
    assert batch["skipped"].dtype == torch.int64
    assert collate([_sample(0)])["skipped"].item() == 0


def test_all_bad_batch_is_empty_not_an_error() -> None:
    module = VisionDataModule(image_size=(4, 6))
    batch = DropBadSamples(module.empty_batch())([None, None, None])
    assert batch["image"].shape == (0, 3, 4, 6)
    assert batch["image"].dtype == torch.float32
    assert batch["label"].shape == (0,)
    assert batch["label"].dtype == torch.int64
    assert batch["skipped"].item() == 3
    batch["image"].mean(dim=(2, 3))  # shapes stay usable downstream
    assert module.empty_batch()["image"].shape == (0, 3, 4, 6)  # the template is not shared


def test_list_keys_keep_one_tensor_per_kept_sample() -> None:
    # per-image box counts differ: stacking would fail, so such keys stay lists
    collate = DropBadSamples({"image": torch.empty(0, 3, 4, 4), "boxes": []}, list_keys=["boxes"])
    first = {"image": torch.zeros(3, 4, 4), "boxes": torch.ones(2, 4)}
    second = {"image": torch.ones(3, 4, 4), "boxes": torch.zeros(0, 4)}
    batch = collate([first, None, second])
    assert batch["image"].shape == (2, 3, 4, 4) and batch["skipped"].item() == 1
    assert [b.shape for b in batch["boxes"]] == [(2, 4), (0, 4)]
    assert batch["boxes"][0] is first["boxes"]
    empty = collate([None])
    assert empty["boxes"] == [] and empty["image"].shape == (0, 3, 4, 4)
    empty["boxes"].append(1)
    assert collate([None])["boxes"] == []  # the template list is not shared


def test_loaders() -> None:
    module = VisionDataModule(batch_size=3, image_size=4)
    module.train_dataset = _Listed([_sample(i) for i in range(7)])
    module.val_dataset = _Listed([_sample(i) for i in range(5)])
    train = module.train_dataloader()
    assert train.drop_last is False
    assert isinstance(train.sampler, torch.utils.data.RandomSampler)
    assert sorted(b["image"].shape[0] for b in train) == [1, 3, 3]
    val = module.val_dataloader()
    assert isinstance(val.sampler, torch.utils.data.SequentialSampler)
    assert [b["label"].tolist() for b in val] == [[0, 1, 2], [3, 4]]
    with pytest.raises(RuntimeError, match="no test dataset"):
        module.test_dataloader()


def test_worker_options() -> None:
    assert VisionDataModule().pin_memory == torch.cuda.is_available()
    assert VisionDataModule(pin_memory=True).pin_memory is True
    assert VisionDataModule(num_workers=0).persistent_workers is False
    assert VisionDataModule(num_workers=2).persistent_workers is True
    assert VisionDataModule(num_workers=2, persistent_workers=False).persistent_workers is False


def test_on_bad_image_is_validated() -> None:
    with pytest.raises(ValueError) as info:
        VisionDataModule(on_bad_image="ignore")
    message = str(info.value)
    assert "data.on_bad_image" in message
    assert "'ignore'" in message
    assert "'error'" in message
    assert "'skip'" in message


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"batch_size": 0}, "data.batch_size"),
        ({"batch_size": 2.0}, "data.batch_size"),
        ({"num_workers": -1}, "data.num_workers"),
        ({"image_size": 0}, "data.image_size"),
        ({"augment": [{"name": "Flipp"}]}, r"data.augment\[0\].name"),
    ],
)
def test_bad_options_fail_at_construction(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        VisionDataModule(**kwargs)


def test_class_names_before_setup() -> None:
    module = VisionDataModule()
    with pytest.raises(RuntimeError, match="setup"):
        _ = module.num_classes
    module.class_names = ["a", "b"]
    assert module.num_classes == 2


def test_check_choice() -> None:
    check_choice("data.x", "a", ("a", "b"))
    with pytest.raises(ValueError, match=r"data\.x must be one of 'a', 'b'; got 'c'"):
        check_choice("data.x", "c", ("a", "b"))
