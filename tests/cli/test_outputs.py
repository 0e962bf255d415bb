"""The tools never write over one of their inputs or over a training run's results."""

import json
import os

import pytest
from PIL import Image

from cvtasks.cli.outputs import (
    atomic_path,
    refuse_output_inside_input,
    refuse_overwriting_inputs,
    refuse_run_folder,
)
from tests.conftest import cvtasks_in_process


def test_an_output_that_is_an_input_is_refused_even_through_a_link(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"weights")
    (tmp_path / "alias.ckpt").symlink_to(ckpt)
    for output in (ckpt, tmp_path / "alias.ckpt", tmp_path / "sub" / ".." / "model.ckpt"):
        with pytest.raises(ValueError, match=r"refusing to write .*: it is the input ckpt="):
            refuse_overwriting_inputs([output], {"ckpt": str(ckpt)})
    refuse_overwriting_inputs([tmp_path / "model.onnx"], {"ckpt": str(ckpt)})
    assert ckpt.read_bytes() == b"weights"


def test_an_output_folder_inside_the_input_folder_is_refused(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for output in (images, images / "out"):
        with pytest.raises(ValueError, match="is inside the input folder input="):
            refuse_output_inside_input(output, "input", str(images))
    refuse_output_inside_input(tmp_path / "out", "input", str(images))
    refuse_output_inside_input(tmp_path / "out", "input", str(images / "*.png"))  # a glob


def test_a_training_run_folder_is_refused_as_evaluate_output(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.yaml").write_text("task: {}")
    with pytest.raises(ValueError, match="is the folder of a training run"):
        refuse_run_folder(tmp_path)
    refuse_run_folder(tmp_path / "evaluation")


def test_atomic_path_renames_on_success_and_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("export failed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["model.onnx"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["model.onnx"]


def test_the_commands_refuse_to_write_over_their_inputs(tiny_checkpoint, tmp_path):
    def cvtasks(*args):
        return cvtasks_in_process(*args, cwd=tmp_path)

    ckpt = tiny_checkpoint("classification")
    before = ckpt.read_bytes()
    export = cvtasks("export", f"ckpt={ckpt}", f"output={ckpt}", "check=false")
    assert export.returncode == 2 and f"refusing to write {ckpt}" in export.stderr
    assert ckpt.read_bytes() == before

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (20, 20)).save(images / "a.png")
    inside = images / "predictions"
    predict = cvtasks("predict", f"ckpt={ckpt}", f"input={images}", f"output={inside}")
    assert predict.returncode == 2 and "is inside the input folder input=" in predict.stderr
    assert not inside.exists()

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("task: {}\n")
    (run / "metrics.json").write_text(json.dumps({"test/acc": 0.99}))
    evaluate = cvtasks("evaluate", f"ckpt={ckpt}", f"output={run}")
    assert evaluate.returncode == 2 and "is the folder of a training run" in evaluate.stderr
    assert json.loads((run / "metrics.json").read_text()) == {"test/acc": 0.99}


def test_evaluate_refuses_data_that_names_other_classes(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint("classification")  # trained on cat, dog, eel
    root = tmp_path / "animals"
    for split in ("train", "test"):
        for name in ("ant", "bee", "cow"):
            (root / split / name).mkdir(parents=True)
            Image.new("RGB", (20, 20)).save(root / split / name / "0.png")
    proc = cvtasks_in_process(
        "evaluate", f"ckpt={ckpt}", "data=image_folder", f"data.root={root}", cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "has class names ['ant', 'bee', 'cow'], but the model was trained on" in proc.stderr
