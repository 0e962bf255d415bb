"""The fine-tuning switches: head-first epochs, the backbone's learning rate, frozen BatchNorm."""

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from cvtasks.tasks.classification import ClassificationTask
from cvtasks.tasks.transfer import TransferSettings, check_strategy
from tests.tasks.conftest import quiet_trainer
from tests.tasks.test_base import TinyBackbone
from tests.training.test_ema import Bright

STEPS_PER_EPOCH = 4  # 64 images in batches of 16


def make_task(**kw) -> ClassificationTask:
    torch.manual_seed(0)
    kw.setdefault("scheduler", {"name": "constant", "warmup_epochs": 0})
    return ClassificationTask(backbone=TinyBackbone(width=4), num_classes=2, **kw)


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class Snapshots(pl.Callback):
    """The backbone's state (parameters and BatchNorm statistics) at the end of each epoch, the
    BatchNorm's mode during training, and every parameter group's lr at each step."""

    def __init__(self) -> None:
        self.backbone: list[dict[str, torch.Tensor]] = []
        self.head: list[dict[str, torch.Tensor]] = []
        self.bn_training: list[bool] = []
        self.lrs: list[list[tuple[bool, float]]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.bn_training.append(pl_module.backbone.stem[1].training)
        in_backbone = {id(p) for p in pl_module.backbone.parameters()}
        optimizer = trainer.optimizers[0]
        self.lrs.append(
            [(id(g["params"][0]) in in_backbone, g["lr"]) for g in optimizer.param_groups]
        )

    def on_train_epoch_end(self, trainer, pl_module):
        self.backbone.append(state(pl_module.backbone))
        self.head.append(state(pl_module.head))


def fit(module: ClassificationTask, max_epochs: int) -> Snapshots:
    snapshots = Snapshots()
    trainer = quiet_trainer(max_epochs=max_epochs, callbacks=[snapshots], num_sanity_val_steps=0)
    trainer.fit(
        module,
        DataLoader(Bright(), batch_size=16),
        DataLoader(Bright(16, seed=1), batch_size=16),
    )
    return snapshots


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_frozen_backbone_is_unchanged_until_the_unfreeze_epoch():
    module = make_task(freeze_backbone_epochs=2)
    start = state(module.backbone)
    snaps = fit(module, max_epochs=3)
    # epochs 0 and 1: nothing in the backbone moved (weights, BatchNorm statistics), the head did
    assert changed(start, snaps.backbone[0]) == set()
    assert changed(start, snaps.backbone[1]) == set()
    assert snaps.head[0].keys() == changed(state(make_task().head), snaps.head[0])
    assert snaps.bn_training == [False] * 8 + [True] * 4
    # epoch 2: every backbone weight and statistic learns
    moved = changed(snaps.backbone[1], snaps.backbone[2])
    assert moved == set(start)
    assert all(p.requires_grad for p in module.backbone.parameters())


def test_backbone_groups_learn_at_the_scaled_rate_through_the_schedule():
    schedule = {"name": "cosine", "warmup_epochs": 1, "min_lr_ratio": 0.0}
    module = make_task(backbone_lr_scale=0.1, scheduler=schedule)
    snaps = fit(module, max_epochs=3)
    head_lr = module.optimizer_cfg["lr"]
    for step in (0, 2, 5, 9, 11):
        groups = snaps.lrs[step]
        backbone = [lr for is_backbone, lr in groups if is_backbone]
        head = [lr for is_backbone, lr in groups if not is_backbone]
        assert len(backbone) == 2 and len(head) == 2  # decay and no-decay parts of each
        assert len(set(head)) == 1 and head[0] > 0
        assert backbone == pytest.approx([0.1 * head[0]] * 2)
    # the schedule drives both: warmup then cosine, as the head's lr alone shows
    assert snaps.lrs[0][-1][1] == pytest.approx(head_lr * 1 / STEPS_PER_EPOCH)
    assert snaps.lrs[11][0][1] < snaps.lrs[4][0][1]


def test_freeze_bn_keeps_statistics_and_affine_parameters_while_the_rest_learns():
    module = make_task(freeze_bn=True)
    bn = module.backbone.stem[1]
    with torch.no_grad():  # statistics unlike the data's, so an update would show
        bn.running_mean.fill_(0.5)
        bn.running_var.fill_(2.0)
    start = state(module.backbone)
    snaps = fit(module, max_epochs=2)
    moved = changed(start, snaps.backbone[-1])
    assert moved == {"stem.0.weight", "stem.0.bias"}  # the convolution learns; the BatchNorm not
    assert snaps.bn_training == [False] * 8
    torch.testing.assert_close(bn.running_mean, torch.full((4,), 0.5))
    torch.testing.assert_close(bn.running_var, torch.full((4,), 2.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"freeze_backbone_epochs": -1}, r"task\.freeze_backbone_epochs=-1: use an integer >= 0"),
        ({"freeze_backbone_epochs": 1.5}, r"task\.freeze_backbone_epochs=1\.5: use an integer"),
        ({"backbone_lr_scale": 0}, r"task\.backbone_lr_scale=0: use a number > 0 .*freeze_back"),
        ({"backbone_lr_scale": "low"}, r"task\.backbone_lr_scale='low': use a number > 0"),
        ({"freeze_bn": "yes"}, r"task\.freeze_bn='yes': use true or false"),
    ],
)
def test_bad_switch_values_name_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_task(**kwargs)


def test_ddp_without_unused_parameter_search_is_refused_while_the_backbone_starts_frozen():
    def trainer(find_unused):
        strategy = SimpleNamespace(_ddp_kwargs={"find_unused_parameters": find_unused})
        return SimpleNamespace(world_size=2, strategy=strategy)

    frozen = TransferSettings(freeze_backbone_epochs=1)
    with pytest.raises(ValueError, match=r"trainer\.strategy=ddp_find_unused_parameters_true"):
        check_strategy(trainer(False), frozen)
    check_strategy(trainer(True), frozen)
    check_strategy(trainer(False), TransferSettings(freeze_bn=True))  # frozen before DDP wraps
    check_strategy(SimpleNamespace(world_size=1, strategy=None), frozen)
