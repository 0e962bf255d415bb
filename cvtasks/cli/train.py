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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from cvtasks import __version__, plugins
from cvtasks.auto_inputs import resolve_inputs
from cvtasks.cli.build import build_datamodule, build_task, build_trainer
from cvtasks.cli.common import ConfigInCheckpoint
from cvtasks.cli.errors import SetupError, exit_with, one_line, unknown_key_error
from cvtasks.config import (
    CONFIG_DIR,
    ConfigError,
    check_group_choices,
    compose_train,
    setup_hydra,
)
from cvtasks.data.images import BadImageError
from cvtasks.io import atomic_open, write_json
from cvtasks.schema import validate_config
from cvtasks.training.faults import REPORTED, is_out_of_memory, out_of_memory_message
from cvtasks.training.launch import launch_overrides, rank_zero_outcome
from cvtasks.training.resume import (
    check_resume_compatible,
    checkpoints_in,
    newest,
    resolve_overrides,
    resumable_in,
)
from cvtasks.training.run_folder import RunFolderLock, check_new_run, remove_stale_temps_in
from cvtasks.training.signals import SIGTERM_EXIT, PreemptionError, SigtermRelay, SigtermWatch

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float | None:
    """Train and test one configuration; return the monitored validation metric (for sweeps).

    Args:
        cfg: the composed config of ``conf/train.yaml``.

    Returns:
        The best value of the task's monitored metric (e.g. ``val/acc``), or ``None`` if the run
        validated nothing.

    Raises:
        SystemExit: with status 143 when SIGTERM stops the run, whatever it was doing (after
            saving ``last.ckpt`` when it was training), saying how to resume.
    """
    start = time.perf_counter()
    run_dir = Path(cfg.paths.output_dir)
    with SigtermWatch() as sigterm:
        try:
            return _train(cfg, run_dir, sigterm, start)
        except (SIGTERMException, PreemptionError) as err:
            _stop_on_sigterm(sigterm, run_dir, err)


def _train(cfg: DictConfig, run_dir: Path, sigterm: SigtermWatch, start: float) -> float | None:
    sigterm.enter("the set-up of the run")
    with _setup_errors(cfg):
        plugins.load(list(cfg.get("plugins") or []))
        resolve_inputs(cfg)  # `auto` sizes and channels become numbers the checkpoint keeps
        validate_config(cfg)
    with _claim_run_folder(cfg, run_dir) as ckpt_path:
        pl.seed_everything(cfg.seed, workers=True)
        sigterm.enter("the set-up of data and model")
        with _setup_errors(cfg):
            datamodule = build_datamodule(cfg)
            module = build_task(cfg, datamodule)
            if ckpt_path is not None:
                check_resume_compatible(ckpt_path, cfg, module)
            trainer = build_trainer(cfg)
        trainer.callbacks.append(ConfigInCheckpoint(cfg))  # what predict/evaluate/export rebuild
        trainer.callbacks.append(SigtermRelay(sigterm))
        if trainer.is_global_zero:
            _write_config(cfg, run_dir, resumed=ckpt_path is not None)
        if ckpt_path is not None:
            log.info("resuming from %s into %s", ckpt_path, run_dir)
        with sigterm.fitting():
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        results = {**_split_metrics(trainer, "train/"), **_split_metrics(trainer, "val/")}
        checkpoint = trainer.checkpoint_callback
        best = _best_checkpoint(checkpoint)
        if cfg.get("test", True):
            sigterm.enter("the final test")
            trainer.test(
                module, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False
            )
            results.update(_split_metrics(trainer, "test/"))
        sigterm.enter("the writing of metrics.json")
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


@contextmanager
def _setup_errors(cfg: DictConfig) -> Iterator[None]:
    """Turn what a wrong config or unusable data raises while the run is built into one line."""
    try:
        yield
    except TypeError as err:
        known = unknown_key_error(err, cfg)
        if known is None:
            raise
        raise known from err
    except (ValueError, KeyError, OSError) as err:
        if isinstance(err, ConfigError):
            raise
        raise SetupError(one_line(err)) from err


@contextmanager
def _claim_run_folder(cfg: DictConfig, run_dir: Path) -> Iterator[str | None]:
    """Hold the run folder for this run; yield the checkpoint to resume (``None``: a new run).

    Rank zero locks the folder (a second run into it is refused), deletes what killed atomic
    writes left, and refuses a new run into a folder holding another run's results unless
    ``overwrite=true``. ``ckpt_path=last`` with nothing to resume starts afresh, as a first start
    in a stable folder (a SLURM job's) must.
    """
    lock = RunFolderLock(run_dir) if rank_zero_only.rank == 0 else None
    try:
        with rank_zero_outcome():  # torchrun: a refusal stops every node, not rank zero alone
            if lock is not None:
                lock.acquire()
            requested = cfg.get("ckpt_path")
            ckpt_path = _resume_path(requested, run_dir)
            if lock is not None:
                for path in remove_stale_temps_in(run_dir):
                    log.info("removed %s, left by an interrupted write", path)
                # ckpt_path=last with nothing to resume: the leftovers of an attempt killed
                # before its first checkpoint are no result to keep, but a finished run's
                # metrics are
                if ckpt_path is None and (requested is None or (run_dir / "metrics.json").exists()):
                    check_new_run(run_dir, overwrite=bool(cfg.get("overwrite", False)))
                elif requested is not None and ckpt_path is None:
                    log.info("ckpt_path=last: nothing to resume in %s, starting there", run_dir)
        yield ckpt_path
    finally:
        if lock is not None:
            lock.release()


def _write_config(cfg: DictConfig, run_dir: Path, resumed: bool) -> None:
    """``config.yaml``; a resumed run keeps the first one and writes its own beside it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"config.resumed-{stamp}.yaml" if resumed else "config.yaml"
    with atomic_open(run_dir / name) as f:
        f.write(OmegaConf.to_yaml(cfg, resolve=True))


def _stop_on_sigterm(sigterm: SigtermWatch, run_dir: Path, err: BaseException) -> NoReturn:
    """Say where SIGTERM stopped the run and how to go on; exit with status 143."""
    found = newest(checkpoints_in(run_dir))
    if found is None:
        what = "nothing to resume yet: run the same command again"
    else:
        what = f"resume with ckpt_path=last (or ckpt_path={found})"
    phase = "training" if isinstance(err, SIGTERMException) else sigterm.phase
    log.warning("stopped by SIGTERM during %s in %s: %s", phase, run_dir, what)
    raise SystemExit(SIGTERM_EXIT) from None


def _resume_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``ckpt_path`` as Lightning takes it; ``last`` means this run folder's newest checkpoint
    that loads (``None``, a first start, when it has none).

    (Without ``hydra.run.dir``, :func:`main` has already pointed ``ckpt_path=last`` at a file
    and its run folder.)
    """
    if ckpt_path != "last":
        return ckpt_path
    found = resumable_in(run_dir)
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
    except (ConfigError, SetupError) as err:
        exit_with(err, 2)
    except (*REPORTED, BadImageError) as err:
        exit_with(err, 1)
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
    """Console entry point: load the command line's plugins, check the group choices, resolve a
    resume, fit a torchrun/srun process into the run's one folder, then hand over to Hydra."""
    # from the first line: a plugin loaded here may take a while, and SIGTERM's default kills
    # the process without a word (train() watches again, with the run folder known)
    with SigtermWatch() as sigterm:
        sigterm.enter("the set-up of the run")
        try:
            try:
                setup_hydra(sys.argv[1:])  # a plugin's backbone needs its config to compose
                check_group_choices(sys.argv[1:])
                sys.argv[1:] = resume_overrides(sys.argv[1:])
                # torchrun/srun: one run folder for every process, Hydra's files from rank 0
                sys.argv[1:] = launch_overrides(sys.argv[1:])
            except ConfigError as err:
                print(f"error: {err}", file=sys.stderr)
                raise SystemExit(2) from None
            _hydra_main()
        except PreemptionError:
            print(
                "stopped by SIGTERM during the set-up of the run: nothing to resume yet: "
                "run the same command again",
                file=sys.stderr,
            )
            raise SystemExit(SIGTERM_EXIT) from None
