"""Speed switches: `auto` per device, TF32, fused optimizers, compiled checkpoints loading eager."""

import warnings

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from cvtasks.training import speed
from tests.tasks.test_base import make_task


def test_auto_is_on_for_cuda_only_and_bad_values_name_the_key():
    assert speed.resolve("auto", torch.device("cuda")) is True
    assert speed.resolve("auto", torch.device("cpu")) is False
    assert speed.resolve("max-autotune", torch.device("cpu")) == "max-autotune"
    assert speed.check_compile("auto") == "auto"
    with pytest.raises(ValueError, match=r"channels_last='yes'.*true, false or auto"):
        speed.check_switch("channels_last", "yes")


@pytest.mark.parametrize("name", ["AdamW", "Adam", "SGD"])
def test_fused_step_is_asked_for_on_cuda_only_and_never_overrides(name):
    cls = getattr(torch.optim, name)
    cfg: dict = {}
    speed.add_fused(cfg, cls, torch.device("cuda", 0))
    assert cfg == {"fused": True}
    cfg = {}
    speed.add_fused(cfg, cls, torch.device("cpu"))
    assert cfg == {}
    cfg = {"fused": False}
    speed.add_fused(cfg, cls, torch.device("cuda", 0))
    assert cfg == {"fused": False}


def test_tf32_switch_warns_not_and_leaves_both_flag_apis_readable_and_in_agreement():
    # The flags are process state, not device state: settable and readable without a GPU.
    before = torch.backends.cuda.matmul.allow_tf32
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a deprecated setter would warn (torch 2.9-2.11)
            speed.enable_cuda_fast_math()
        # torch raises on a read of either API once the two were set apart (mixed)
        assert torch.get_float32_matmul_precision() == "high"  # what Lightning reads
        assert torch.backends.cuda.matmul.allow_tf32 is True
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"  # what inductor reads
        assert torch.backends.cudnn.allow_tf32 is True
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def test_optimizers_without_a_fused_step_are_left_alone():
    cfg: dict = {}
    speed.add_fused(cfg, torch.optim.LBFGS, torch.device("cuda", 0))
    assert cfg == {}


def test_auto_switches_stay_off_on_the_cpu():
    task = make_task(channels_last="auto", compile="auto")
    task.configure_model()
    assert task.compile_mode is False and task.channels_last is False
    assert task.backbone.stem[0].weight.is_contiguous()
    assert task.net._compiled_call_impl is None  # what nn.Module.compile would set


def batches(count: int = 4):
    torch.manual_seed(0)
    return [
        {"image": torch.randn(4, 3, 16, 16), "label": torch.randint(0, 4, (4,))}
        for _ in range(count)
    ]


def test_a_compiled_run_checkpoint_loads_into_an_eager_model(tmp_path):
    torch.manual_seed(0)
    compiled = make_task(compile=True, scheduler={"name": "constant"})
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(compiled, train_dataloaders=DataLoader(batches(), batch_size=None))
    path = tmp_path / "compiled.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert not [k for k in state if "_orig_mod" in k]
    eager = make_task()
    eager.load_state_dict(state)
    compiled.eval(), eager.eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-5, atol=1e-5)
