"""train.py with the fine-tuning switches and weight EMA: checkpoints, resume, the final test."""

import pytest
import torch

from cvtasks.io import torch_load_safe
from tests.conftest import TINY
from tests.e2e.test_bad_input import assert_one_line

pytestmark = pytest.mark.slow

SWITCHES = (
    "callbacks.ema.enabled=true",
    "callbacks.ema.decay=0.5",
    "task.freeze_backbone_epochs=1",
    "task.backbone_lr_scale=0.1",
    "task.freeze_bn=true",
)


def test_ema_checkpoints_resume_and_the_switches_run_through_train(run_train, tmp_path):
    first = run_train(*TINY, *SWITCHES).check()
    ckpt = torch_load_safe(first.run_dir / "checkpoints" / "last.ckpt")
    trained, averaged = ckpt["current_model_state"], ckpt["state_dict"]
    assert int(ckpt["averaging_state"]["n_averaged"]) == 3  # one update per optimizer step
    head = [k for k in averaged if k.startswith("net.head.") and k.endswith("weight")]
    assert head and not torch.equal(averaged[head[-1]], trained[head[-1]])
    # epoch 0 trained the head only: the backbone's weights are as built in both states
    conv = "net.backbone.c1.weight"
    assert conv in trained and torch.equal(trained[conv], averaged[conv])

    moved = tmp_path / "first.ckpt"
    (first.run_dir / "checkpoints" / "last.ckpt").rename(moved)
    second = run_train(*TINY, *SWITCHES, "trainer.max_epochs=2", f"ckpt_path={moved}").check()
    resumed = torch_load_safe(second.run_dir / "checkpoints" / "last.ckpt")
    assert int(resumed["averaging_state"]["n_averaged"]) == 6  # the average went on from 3
    assert not torch.equal(resumed["current_model_state"][conv], trained[conv])  # unfrozen
    assert 0.0 <= second.metrics["test/acc"] <= 1.0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["task.backbone_lr_scale=0"], "task.backbone_lr_scale=0: must be a number > 0"),
        (["task.freeze_backbone_epochs=-2"], "task.freeze_backbone_epochs=-2: must be an integer"),
        (["task.freeze_bn=maybe"], "task.freeze_bn='maybe': must be true or false"),
        (["callbacks.ema.decay=1"], "callbacks.ema.decay=1: must be a number between 0 and 1"),
    ],
)
def test_bad_switch_values_stop_the_run_in_one_line(train_in_process, args, expected):
    run = train_in_process(*TINY, *args)
    assert run.proc.returncode == 2, run.output[-3000:]
    assert expected in run.proc.stderr
    assert_one_line(run)


def test_a_grayscale_folder_trains_a_one_channel_network_that_predicts_and_exports(
    run_train, tmp_path
):
    import json

    import numpy as np
    import onnx
    from PIL import Image

    from tests.conftest import cvtasks_in_process as cvtasks

    rng = np.random.default_rng(0)
    for label in ("dark", "light"):
        (tmp_path / "gray" / label).mkdir(parents=True)
        for i in range(12):
            base = 60 if label == "dark" else 190
            pixels = np.clip(base + rng.normal(0, 20, (25, 25)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(tmp_path / "gray" / label / f"{i}.png")
    run = run_train("data=image_folder", f"data.root={tmp_path / 'gray'}", *TINY).check()
    config = (run.run_dir / "config.yaml").read_text()
    assert "in_chans: 1" in config and "image_size: 32" in config  # LeNet-5's input, one channel
    ckpt = run.run_dir / "checkpoints" / "best.ckpt"
    state = torch_load_safe(ckpt)["state_dict"]
    assert state["net.backbone.c1.weight"].shape[1] == 1

    colour = tmp_path / "inputs"
    colour.mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(colour / "rgb.png")
    out = tmp_path / "predictions"
    proc = cvtasks("predict", f"ckpt={ckpt}", f"input={colour}", f"output={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert record["class_name"] in ("dark", "light")

    onnx_file = tmp_path / "model.onnx"
    args = ("export", f"ckpt={ckpt}", "format=onnx", f"output={onnx_file}")
    proc = cvtasks(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = onnx.load(str(onnx_file))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [1, 32, 32]
    meta = {p.key: p.value for p in model.metadata_props}
    assert len(json.loads(meta["mean"])) == 1 and "[N, 1, H, W]" in meta["input"]
