"""``python -m cvtasks tune lr key=value ...``: find a learning rate with Lightning's ``lr_find``.

The overrides are those of ``train.py`` (``task=``, ``data=``, ``backbone=``, ...). The finder
trains from the initial weights for ``tune.num_training`` steps while the learning rate grows
from ``tune.min_lr`` to ``tune.max_lr`` (exponentially by default), records the loss of each
step, and suggests the rate where the loss falls fastest (Smith 2017, "Cyclical Learning Rates
for Training Neural Networks"). The command prints the suggestion and the override to train
with, and writes ``lr_find.png`` (the loss against the rate) and ``lr_find.json`` (the curve)
into ``tune.output``. Nothing is trained for good: the model's weights are not kept.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.tuner import Tuner

from cvtasks import plugins
from cvtasks.cli.build import build_datamodule, build_task
from cvtasks.cli.common import save_picture
from cvtasks.cli.errors import exit_with
from cvtasks.config import ConfigError, compose_train
from cvtasks.io import write_json
from cvtasks.schema import validate_config
from cvtasks.training.checkpoint_io import AtomicCheckpointIO
from cvtasks.viz.charts import line_chart

log = logging.getLogger(__name__)

#: steps the suggestion and the plot leave out at the start (Lightning's ``skip_begin``)
SKIP_BEGIN = 10

USAGE = "usage: python -m cvtasks tune lr [train.py overrides] [tune.KEY=VALUE ...]"


@dataclass
class FinderOptions:
    """The ``tune.*`` options: the range swept, the steps and where results go."""

    min_lr: float = 1e-6
    max_lr: float = 1.0
    num_training: int = 100
    mode: str = "exponential"
    early_stop_threshold: float | None = 4.0
    output: str = "lr_find"

    def __post_init__(self) -> None:
        if not 0 < self.min_lr < self.max_lr:
            raise ValueError(
                f"tune.min_lr and tune.max_lr must satisfy 0 < min_lr < max_lr; got "
                f"{self.min_lr} and {self.max_lr}"
            )
        if self.num_training < SKIP_BEGIN + 3:
            raise ValueError(
                f"tune.num_training must be at least {SKIP_BEGIN + 3} steps (the suggestion "
                f"skips the first {SKIP_BEGIN}), got {self.num_training}"
            )
        if self.mode not in ("exponential", "linear"):
            raise ValueError(f"tune.mode must be exponential or linear, got {self.mode!r}")


def split_arguments(args: Sequence[str]) -> tuple[FinderOptions, list[str]]:
    """``tune.KEY=VALUE`` arguments as options; the others are ``train.py`` overrides.

    Raises:
        ValueError: an unknown ``tune.`` key, or a value of the wrong type.
    """
    fields = FinderOptions.__dataclass_fields__
    chosen: dict[str, Any] = {}
    overrides = []
    for arg in args:
        if not arg.startswith("tune."):
            overrides.append(arg)
            continue
        key, sep, value = arg[len("tune.") :].partition("=")
        if not sep or key not in fields:
            raise ValueError(
                f"{arg}: not a tune option; use tune.KEY=VALUE with KEY one of {', '.join(fields)}"
            )
        kind = fields[key].type
        try:
            if value.lower() in ("null", "none") and "None" in str(kind):
                chosen[key] = None
            elif key == "num_training":
                chosen[key] = int(value)
            elif key in ("min_lr", "max_lr", "early_stop_threshold"):
                chosen[key] = float(value)
            else:
                chosen[key] = value
        except ValueError:
            raise ValueError(f"{arg}: {value!r} is not a valid {key}") from None
    return FinderOptions(**chosen), overrides


def build_finder_trainer(cfg: DictConfig, root: Path) -> pl.Trainer:
    """The run's Trainer settings (device, precision, ...) without its loggers and callbacks:
    the finder replaces them while it runs and nothing of it is to be kept."""
    plugins = [instantiate(node) for node in cfg.trainer.get("plugins") or []]
    return instantiate(
        cfg.trainer,
        default_root_dir=str(root),
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[*plugins, AtomicCheckpointIO()],  # its weights snapshot: loaded safely
    )


def find_lr(cfg: DictConfig, options: FinderOptions) -> dict[str, Any]:
    """Run the finder on the configured task and data.

    Args:
        cfg: the composed ``train.py`` config.
        options: the sweep.

    Returns:
        ``{"suggestion": float | None, "lr": [...], "loss": [...], "override": str | None}``.
    """
    plugins.load(list(cfg.get("plugins") or []))
    validate_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    output = Path(options.output)
    output.mkdir(parents=True, exist_ok=True)
    datamodule = build_datamodule(cfg)
    module = build_task(cfg, datamodule)
    trainer = build_finder_trainer(cfg, output)
    finder = Tuner(trainer).lr_find(
        module,
        datamodule=datamodule,
        min_lr=options.min_lr,
        max_lr=options.max_lr,
        num_training=options.num_training,
        mode=options.mode,
        early_stop_threshold=options.early_stop_threshold,
        update_attr=False,  # the rate lives in task.optimizer, printed as an override instead
    )
    lrs = [float(x) for x in finder.results["lr"]]
    losses = [float(x) for x in finder.results["loss"]]
    suggestion = finder.suggestion(skip_begin=SKIP_BEGIN)
    override = None if suggestion is None else f"task.optimizer.lr={suggestion:.3g}"
    return {"suggestion": suggestion, "override": override, "lr": lrs, "loss": losses}


def loss_chart(result: dict[str, Any]) -> Any:
    """The loss against log10 of the rate, scaled to [0, 1], with the suggestion marked.

    The first :data:`SKIP_BEGIN` steps are left out, as the suggestion leaves them out: their
    smoothed losses are still warming up (Lightning's running average starts low).
    """
    steps = list(zip(result["lr"], result["loss"]))
    steps = steps[SKIP_BEGIN:] if len(steps) > 2 * SKIP_BEGIN else steps
    pairs = [(lr, loss) for lr, loss in steps if math.isfinite(loss)]
    if not pairs:
        return None
    low, high = min(p[1] for p in pairs), max(p[1] for p in pairs)
    span = (high - low) or 1.0
    xs = [math.log10(lr) for lr, _ in pairs]
    ys = [(loss - low) / span for _, loss in pairs]
    mark = None
    if result["suggestion"] is not None:
        best = min(range(len(pairs)), key=lambda k: abs(pairs[k][0] - result["suggestion"]))
        mark = (xs[best], ys[best], f"{result['suggestion']:.2g}")
    title = f"learning-rate finder: loss {low:.3g} (bottom) to {high:.3g} (top)"
    return line_chart(xs, ys, title, "log10 learning rate", "loss", mark=mark)


def lr_command(args: Sequence[str]) -> int:
    """``tune lr``: run the finder, print the suggestion and the override, save the plot.

    Returns:
        The exit code: 0, or 2 after one error line on stderr.
    """
    try:
        options, overrides = split_arguments(args)
        cfg = compose_train([*overrides, f"paths.output_dir={options.output}"])
        result = find_lr(cfg, options)
    except (ConfigError, FileNotFoundError, ValueError, KeyError) as err:
        exit_with(err, 2)
    output = Path(options.output)
    write_json(output / "lr_find.json", result)
    chart = loss_chart(result)
    if chart is not None:
        save_picture(chart, output / "lr_find.png")
    if result["suggestion"] is None:
        print(
            "no suggestion: the loss did not fall over the range; widen it (tune.min_lr, "
            f"tune.max_lr) or train longer (tune.num_training). Curve in {output}"
        )
        return 1
    print(f"suggested learning rate: {result['suggestion']:.3g}")
    print(f"train with: {result['override']}")
    print(f"plot: {output / 'lr_find.png'}, curve: {output / 'lr_find.json'}")
    return 0


def main(argv: Sequence[str]) -> int:
    """``python -m cvtasks tune <what> ...``; only ``lr`` so far."""
    if not argv or argv[0] != "lr":
        print(f"error: tune needs what to tune, 'lr'\n{USAGE}", file=sys.stderr)
        return 2
    return lr_command(argv[1:])
