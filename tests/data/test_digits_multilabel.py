import json

import torch

from cvtasks.registry import DATASETS


def test_label_sets_are_the_distinct_digits_of_each_canvas(tmp_path):
    data = DATASETS.build(
        "digits_multilabel",
        root=tmp_path,
        num_train=12,
        num_val=4,
        num_test=4,
        augment=[],
        batch_size=4,
    )
    data.prepare_data()
    data.setup("fit")
    assert data.class_names == [str(d) for d in range(10)]
    assert (len(data.train_dataset), len(data.val_dataset), len(data.test_dataset)) == (12, 4, 4)
    folder = next(tmp_path.glob("digits-det-v1-12-4-4"))
    coco = json.loads((folder / "annotations" / "test.json").read_text())
    for k, (path, _) in enumerate(data.test_dataset.samples):
        image = next(i for i in coco["images"] if (folder / i["file_name"]).as_posix() == path)
        digits = {a["category_id"] - 1 for a in coco["annotations"] if a["image_id"] == image["id"]}
        expected = torch.zeros(10)
        expected[sorted(digits)] = 1.0
        torch.testing.assert_close(data.test_dataset.targets[k], expected)
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (4, 3, 96, 96) and batch["labels"].shape == (4, 10)
    assert (batch["labels"].sum(1) >= 1).all()  # every canvas holds a digit
