"""A training step queues its work without waiting for the device.

On a GPU each step runs under ``torch.cuda.set_sync_debug_mode("error")``, which raises on any
operation that makes the host wait for the GPU (``.item()``, boolean indexing, ``torch.unique``,
a blocking copy to the host). On the CPU the same steps run, without that check.
"""

from types import SimpleNamespace

import pytest
import torch

from cvtasks.registry import TASKS
from cvtasks.training.callbacks import _start_check

B, SIZE = 4, 64
NAMES = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]


def batch_for(task: str, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(B, 3, SIZE, SIZE, generator=g)}
    if task == "classification":
        batch["label"] = torch.tensor([0, 1, 2, 3])
    elif task == "localization":
        batch["label"] = torch.tensor([0, 1, 2, 0])  # two images of nothing
        batch["box"] = torch.rand(B, 4, generator=g) * 0.5 + 0.25
    elif task == "landmarks":
        batch["keypoints"] = torch.rand(B, 5, 2, generator=g) * SIZE
        batch["visible"] = torch.rand(B, 5, generator=g) > 0.2
    elif task == "segmentation":
        batch["mask"] = torch.randint(0, 3, (B, SIZE, SIZE), generator=g)
        batch["mask"][:, :4] = 255  # ignored pixels
    return {k: v.to(device) for k, v in batch.items()}


TASK_ARGS = {
    "classification": {"num_classes": 4},
    "localization": {"num_classes": 3},
    "landmarks": {"num_keypoints": 5, "keypoint_names": NAMES},
    "segmentation": {"num_classes": 3},
}
DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
    ),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(TASK_ARGS))
def test_a_training_step_never_waits_for_the_device(name, device):
    device = torch.device(device)
    torch.manual_seed(0)
    task = TASKS.build(name, backbone={"name": "resnet18"}, **TASK_ARGS[name]).to(device).train()
    batch = batch_for(name, device)
    trainer = SimpleNamespace(world_size=1)

    def step() -> torch.Tensor:
        outputs = task(batch["image"])
        loss = task.compute_loss(outputs, batch)
        task.update_metrics(task.train_metrics, outputs, batch)
        check = _start_check(loss, trainer, batch_idx=0)  # the NaN guard's part of the step
        loss.backward()
        return check.values

    step()  # warm-up: lazy initialisation (cuBLAS handles, ...) may synchronize once
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        values = step()
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode(0)
            torch.cuda.synchronize()
    loss, bad = (float(v) for v in values)
    assert bad == 0.0 and loss > 0
    assert all(p.grad is not None for p in task.net.parameters() if p.requires_grad)
