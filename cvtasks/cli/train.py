"""``python train.py``: compose the config, fit, test the best checkpoint, write the run folder.

The run folder (Hydra's output folder, one per run whatever the number of processes) holds
``config.yaml`` (the composed, resolved config), ``checkpoints/`` (``best.ckpt``, ``last.ckpt``),
the loggers' files and ``metrics.json``.
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from cvtasks import __version__, plugins
from cvtasks.cli.build import build_datamodule, build_task, build_trainer
from cvtasks.cli.common import ConfigInCheckpoint
from cvtasks.config import (
    CONFIG_DIR,
    ConfigError,
    check_group_choices,
    compose_train,
    setup_hydra,
)
from cvtasks.io import atomic_open, write_json
from cvtasks.schema import validate_config
from cvtasks.training.callbacks import SaveOnSigterm
from cvtasks.training.faults import REPORTED, is_out_of_memory, out_of_memory_message
from cvtasks.training.resume import checkpoints_in, newest, resolve_overrides

log = logging.getLogger(__name__)

#: exit status of a run stopped by SIGTERM after saving its checkpoint (128 + SIGTERM, as a shell)
SIGTERM_EXIT = 143


def train(cfg: DictConfig) -> float | None:
    """Train and test one configuration; return the monitored validation metric (for sweeps).

    Args:
        cfg: the composed config of ``conf/train.yaml``.

    Returns:
        The best value of the task's monitored metric (e.g. ``val/acc``), or ``None`` if the run
        validated nothing.
    """
    start = time.perf_counter()
    plugins.load(list(cfg.get("plugins") or []))
    validate_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_task(cfg, datamodule)
    trainer = build_trainer(cfg)
    trainer.callbacks.append(ConfigInCheckpoint(cfg))  # what predict/evaluate/export rebuild from
    run_dir = Path(cfg.paths.output_dir)
    ckpt_path = _resume_path(cfg.get("ckpt_path"), run_dir)
    if trainer.is_global_zero:
        # a resumed run keeps the first config.yaml and writes its own beside it
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = "config.yaml" if ckpt_path is None else f"config.resumed-{stamp}.yaml"
        with atomic_open(run_dir / name) as f:
            f.write(OmegaConf.to_yaml(cfg, resolve=True))
    if ckpt_path is not None:
        log.info("resuming from %s into %s", ckpt_path, run_dir)

    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        saved = next((c.saved_to for c in trainer.callbacks if isinstance(c, SaveOnSigterm)), None)
        where = f"checkpoint saved to {saved}; " if saved else ""
        log.warning("stopped by SIGTERM: %sresume with ckpt_path=last", where)
        raise SystemExit(SIGTERM_EXIT) from None
    results = {**_split_metrics(trainer, "train/"), **_split_metrics(trainer, "val/")}
    checkpoint = trainer.checkpoint_callback
    best = _best_checkpoint(checkpoint)
    if cfg.get("test", True):
        trainer.test(
            module, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False
        )
        results.update(_split_metrics(trainer, "test/"))

    monitored = _monitored_value(module, checkpoint, results)
    if trainer.is_global_zero:
        summary = {
            **results,
            "monitor": module.monitor,
            "monitor_mode": module.monitor_mode,
            "monitor_value": monitored,
            "best_checkpoint": best,
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "world_size": trainer.world_size,
            "time_s": round(time.perf_counter() - start, 2),
            "reports": {"test": module.test_reports},
            "versions": versions(),
        }
        write_json(run_dir / "metrics.json", summary)
        print_summary(run_dir, results)
    return monitored


def _resume_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``ckpt_path`` as Lightning takes it; ``last`` means this run folder's newest checkpoint.

    (``python train.py ckpt_path=last`` has already been pointed at a file and its run folder by
    :func:`main`; this covers :func:`train` called with a composed config.)
    """
    if ckpt_path != "last":
        return ckpt_path
    found = newest(checkpoints_in(run_dir))
    return None if found is None else str(found)


def _split_metrics(trainer: pl.Trainer, prefix: str) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in sorted(trainer.callback_metrics.items())
        if key.startswith(prefix) and not key.endswith(("_step", "_epoch"))
    }


def _best_checkpoint(checkpoint: ModelCheckpoint | None) -> str | None:
    """The best checkpoint's path, or ``None`` (test the weights in memory) when none was saved."""
    if checkpoint is not None and checkpoint.best_model_path:
        return checkpoint.best_model_path
    return None


def _monitored_value(
    module: pl.LightningModule, checkpoint: ModelCheckpoint | None, results: dict[str, float]
) -> float | None:
    if checkpoint is not None and checkpoint.best_model_score is not None:
        return float(checkpoint.best_model_score)
    return results.get(module.monitor)


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide a run's numbers."""
    import albumentations
    import timm
    import torchmetrics

    return {
        "cvtasks": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
        "torchmetrics": torchmetrics.__version__,
        "timm": timm.__version__,
        "albumentations": albumentations.__version__,
        "hydra": hydra.__version__,
    }


def print_summary(run_dir: Path, results: dict[str, float]) -> None:
    """Print the run folder and a table of the final metrics."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in results.items():
        table.add_row(key, f"{value:.4f}")
    console = Console()
    console.print(table)
    console.print(f"run folder: {run_dir.resolve()}")


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except REPORTED as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except (RuntimeError, MemoryError) as err:
        if not is_out_of_memory(err):
            raise
        print(f"error: {out_of_memory_message(err, cfg)}", file=sys.stderr)
        raise SystemExit(1) from None


def resume_overrides(overrides: list[str]) -> list[str]:
    """Point ``ckpt_path=last|PATH`` at a checkpoint file and its run folder (see ``resume``)."""
    if not any(a.lstrip("+").startswith("ckpt_path=") for a in overrides) or any(
        a in ("-m", "--multirun") for a in overrides
    ):
        return overrides
    plain = [a for a in overrides if not a.startswith(("hydra.", "-"))]
    cfg = compose_train(plain)
    return resolve_overrides(overrides, Path(cfg.paths.log_dir), str(cfg.task.name))


def main() -> None:
    """Console entry point: check the group choices, resolve a resume, then hand over to Hydra."""
    setup_hydra()
    try:
        check_group_choices(sys.argv[1:])
        sys.argv[1:] = resume_overrides(sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    _hydra_main()
