import json
import re

import numpy as np
import pytest
from PIL import Image

from cvtasks.__main__ import main
from cvtasks.cli.tune import FinderOptions, split_arguments

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_DATA = ("data.batch_size=16", "data.num_workers=0", "data.augment=[]")


def test_lr_finder_prints_the_suggestion_and_the_override(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "lr"
    code = main(["tune", "lr", *TINY_DATA, "tune.num_training=16", f"tune.output={out}"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    curve = json.loads((out / "lr_find.json").read_text())
    lrs, losses = np.array(curve["lr"]), np.array(curve["loss"])
    assert len(lrs) == 16 and lrs[0] == pytest.approx(1e-6) and (np.diff(lrs) > 0).all()
    # the suggestion is the rate of steepest loss descent past the first 10 steps and before
    # the last (Lightning's rule), computed here with NumPy
    grad = np.gradient(losses[10:-1], lrs[10:-1])
    expected = lrs[10 + int(np.argmin(grad))]
    assert curve["suggestion"] == pytest.approx(expected, rel=1e-6)
    assert f"suggested learning rate: {expected:.3g}" in printed
    assert f"train with: task.optimizer.lr={expected:.3g}" in printed
    assert curve["override"] == f"task.optimizer.lr={expected:.3g}"
    assert Image.open(out / "lr_find.png").size[0] > 100
    assert not list(out.glob(".lr_find*.ckpt"))  # the finder's weights snapshot is removed


def test_tune_options_are_split_from_train_overrides():
    options, overrides = split_arguments(
        ["task=multilabel", "tune.max_lr=0.1", "tune.num_training=50", "data.batch_size=8"]
    )
    assert options == FinderOptions(max_lr=0.1, num_training=50)
    assert overrides == ["task=multilabel", "data.batch_size=8"]


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("tune.speed=3", r"tune.speed=3: not a tune option; use tune.KEY=VALUE with KEY one of"),
        ("tune.num_training=ten", r"tune.num_training=ten: 'ten' is not a valid num_training"),
        ("tune.num_training=5", r"tune.num_training must be at least 13 steps"),
        ("tune.min_lr=2", r"0 < min_lr < max_lr; got 2.0 and 1.0"),
    ],
)
def test_bad_tune_options_end_with_one_line(arg, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["tune", "lr", arg])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err


def test_tune_without_what_shows_usage(capsys):
    assert main(["tune"]) == 2
    assert "usage: python -m cvtasks tune lr" in capsys.readouterr().err
