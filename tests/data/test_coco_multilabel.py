import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cvtasks.data.annotations import AnnotationError
from cvtasks.registry import DATASETS
from tests.data.conftest import write_png

CATEGORIES = [{"id": 7, "name": "tree"}, {"id": 2, "name": "dog"}, {"id": 4, "name": "cat"}]


def write_coco(path: Path, images: dict[str, list[int]], categories=CATEGORIES) -> Path:
    """A COCO file whose image ``name`` has one box of each listed category id."""
    entries, annotations = [], []
    for k, (name, cats) in enumerate(images.items(), start=1):
        entries.append({"id": k, "file_name": name, "width": 5, "height": 6})
        for cat in cats:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": k,
                    "category_id": cat,
                    "bbox": [0, 0, 2, 2],
                }
            )
    data = {"images": entries, "annotations": annotations, "categories": categories}
    path.write_text(json.dumps(data))
    return path


def build(root: Path, annotations: Path, **kw):
    return DATASETS.build(
        "coco_multilabel",
        root=root,
        annotations=annotations,
        augment=[],
        image_size=8,
        num_workers=0,
        **kw,
    )


def test_label_sets_are_the_categories_of_each_image(tmp_path):
    for name in ("a.png", "b.png", "c.png", "d.png"):
        write_png(tmp_path / "images" / name)
    coco = write_coco(
        tmp_path / "train.json", {"a.png": [2, 4, 2], "b.png": [], "c.png": [7], "d.png": [4]}
    )
    val = write_coco(tmp_path / "val.json", {"a.png": [7, 2]})
    data = build(tmp_path / "images", coco, val_annotations=val, test_fraction=0.25)
    assert data.class_names == ["dog", "cat", "tree"]  # category ids 2, 4, 7
    data.setup("fit")
    by_name = {
        Path(path).name: data.train_dataset.targets[k].tolist()
        for k, (path, _) in enumerate(data.train_dataset.samples)
    }
    test_name = Path(data.test_dataset.samples[0][0]).name
    expected = {"a.png": [1, 1, 0], "b.png": [0, 0, 0], "c.png": [0, 0, 1], "d.png": [0, 1, 0]}
    assert len(by_name) == 3 and test_name not in by_name
    assert {**by_name, test_name: data.test_dataset.targets[0].tolist()} == expected
    torch.testing.assert_close(data.val_dataset.targets, torch.tensor([[1.0, 0.0, 1.0]]))


def test_missing_image_and_unknown_category_name_the_entry(tmp_path):
    write_png(tmp_path / "a.png")
    coco = write_coco(tmp_path / "train.json", {"a.png": [2], "gone.png": [4]})
    with pytest.raises(AnnotationError, match=r"train.json: images\[1\].file_name: 'gone.png'"):
        build(tmp_path, coco).setup("fit")
    skipped = build(tmp_path, coco, on_bad_annotation="skip", val_fraction=0.0, test_fraction=0.0)
    with pytest.warns(UserWarning, match="skipped 1 bad annotation"):
        skipped.setup("fit")
    assert len(skipped.train_dataset) == 1

    bad = write_coco(tmp_path / "bad.json", {"a.png": [99]})
    with pytest.raises(AnnotationError, match=r"annotations\[0\].category_id: 99 names no entry"):
        build(tmp_path, bad).setup("fit")


def test_split_files_must_share_the_categories(tmp_path):
    write_png(tmp_path / "a.png")
    coco = write_coco(tmp_path / "train.json", {"a.png": [2]})
    other = write_coco(tmp_path / "val.json", {"a.png": [1]}, [{"id": 1, "name": "car"}])
    with pytest.raises(ValueError, match=r"data.val_annotations: .*val.json has categories"):
        build(tmp_path, coco, val_annotations=other).setup("fit")


def test_shipped_config_builds(tmp_path, compose_train):
    write_png(tmp_path / "a.png")
    coco = write_coco(tmp_path / "train.json", {"a.png": [2, 7]})
    cfg = compose_train(
        "task=multilabel",
        "data=coco_multilabel",
        f"data.root={tmp_path}",
        f"data.annotations={coco}",
    )
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert data.pop("name") == "coco_multilabel"
    module = DATASETS.build(
        "coco_multilabel", **{**data, "num_workers": 0, "val_fraction": 0.0, "test_fraction": 0.0}
    )
    module.setup("fit")
    assert module.class_names == ["dog", "cat", "tree"]
    torch.testing.assert_close(module.train_dataset[0]["labels"], torch.tensor([1.0, 0.0, 1.0]))
