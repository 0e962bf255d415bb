"""A batch whose images were all skipped: no update alone, a zero loss over every weight in DDP."""

from types import SimpleNamespace

from cvtasks.tasks.classification import ClassificationTask


def empty_batch_loss(world_size):
    task = ClassificationTask(backbone={"name": "lenet5"}, num_classes=10)
    task._trainer = SimpleNamespace(world_size=world_size)
    return task, task._empty_batch_loss("train")


def test_one_process_skips_the_batch():
    assert empty_batch_loss(1)[1] is None


def test_ddp_gets_a_zero_loss_that_reaches_every_parameter():
    task, loss = empty_batch_loss(2)
    assert float(loss) == 0.0
    loss.backward()  # under DDP this is what joins the other processes' gradient all-reduce
    params = [p for p in task.parameters() if p.requires_grad]
    assert params and all(p.grad is not None and not p.grad.any() for p in params)
