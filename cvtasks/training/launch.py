"""Runs whose processes an outside launcher starts: torchrun, or SLURM's ``srun``.

torchrun and ``srun`` start every process of a multi-node run themselves, each running the whole
``train.py`` command, Hydra included (Lightning's own launcher, ``trainer=ddp_cpu``, instead
starts copies of rank zero's command with rank zero's run folder). One run keeps one run folder
whatever the number of processes, so:

* every process must be given the same folder: the default one is named after the clock, read
  separately by each process on each node, so :func:`launch_overrides` refuses it;
* only rank zero writes Hydra's ``.hydra/`` copies of the config (every process writing the same
  files at once could leave any of them half written); each other rank logs to its own
  ``train_rank<N>.log`` beside rank zero's ``train.log``, as Lightning's launcher does;
* rank zero alone claims the folder, and under torchrun tells every other process whether it
  could (:func:`rank_zero_outcome`): a refused claim stops them all with rank zero's message,
  where they would otherwise wait for it in Lightning's set-up until the distributed timeout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from omegaconf import OmegaConf
from torch.distributed import TCPStore

from cvtasks.config import ConfigError, compose_train

#: the overrides a process other than rank zero gets, by key (its own values replace the user's)
_HYDRA_KEYS = ("hydra.output_subdir", "hydra.job.name")
#: how long the other processes wait for rank zero's outcome (Lightning's distributed timeout)
OUTCOME_TIMEOUT = timedelta(minutes=30)
#: how long a refused rank zero waits for the others to read its outcome before it exits
READ_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ExternalLaunch:
    """One process of a run that torchrun or ``srun`` started.

    Attributes:
        launcher: ``"torchrun"`` or ``"srun"``.
        rank: this process's global rank.
        world_size: how many processes the run has, over all nodes.
    """

    launcher: str
    rank: int
    world_size: int


def external_launch(environ: Mapping[str, str] | None = None) -> ExternalLaunch | None:
    """What torchrun or ``srun`` told this process, from the variables they set.

    torchrun is recognised as Lightning recognises it (``TORCHELASTIC_RUN_ID``), and SLURM too
    (``SLURM_NTASKS``, unless the job is named ``bash`` or ``interactive``, SLURM's way of
    saying that something else starts the processes).

    Args:
        environ: the environment to read; ``None`` means ``os.environ``.

    Returns:
        The launcher, rank and world size, or ``None`` for a process started some other way.
    """
    env = os.environ if environ is None else environ
    if "TORCHELASTIC_RUN_ID" in env:
        rank, world_size = int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
        return ExternalLaunch("torchrun", rank, world_size)
    if "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return ExternalLaunch("srun", int(env.get("SLURM_PROCID", "0")), int(env["SLURM_NTASKS"]))
    return None


def launch_overrides(
    overrides: Sequence[str], environ: Mapping[str, str] | None = None
) -> list[str]:
    """``train.py``'s overrides for this process of a multi-process outside launch.

    Unchanged for a process that torchrun or ``srun`` did not start as one of several. Otherwise
    the run folder must be one every process computes alike (see :func:`check_shared_run_dir`),
    and a process other than rank zero gets ``hydra.output_subdir=null`` and its own log,
    ``hydra.job.name=train_rank<N>`` (replacing those keys when given).

    Args:
        overrides: the command line's overrides (``sys.argv[1:]``).
        environ: the environment to read; ``None`` means ``os.environ``.

    Returns:
        The overrides to compose the run with.

    Raises:
        ConfigError: the run folder is named after the clock (no ``hydra.run.dir``).
    """
    launch = external_launch(environ)
    if launch is None or launch.world_size < 2:
        return list(overrides)
    check_shared_run_dir(overrides, launch)
    if launch.rank == 0:
        return list(overrides)
    kept = [a for a in overrides if a.lstrip("+~").split("=", 1)[0] not in _HYDRA_KEYS]
    return [*kept, "hydra.output_subdir=null", f"hydra.job.name=train_rank{launch.rank}"]


def check_shared_run_dir(overrides: Sequence[str], launch: ExternalLaunch) -> None:
    """Refuse a run folder that each process would name after its own clock.

    ``hydra.run.dir`` on the command line, or a config whose ``hydra.run.dir`` does not use
    ``${now:...}``, names the same folder in every process. A sweep (``-m``) is left to Hydra.

    Args:
        overrides: the command line's overrides.
        launch: what the launcher told this process.

    Raises:
        ConfigError: one line naming the launcher, the problem and the override that fixes it.
    """
    if any(a in ("-m", "--multirun") for a in overrides):
        return
    if any(a.lstrip("+").startswith("hydra.run.dir=") for a in overrides):
        return
    plain = [a for a in overrides if not a.startswith(("hydra.", "-"))]
    hydra_run = compose_train(plain, return_hydra_config=True).hydra.run
    run_dir = OmegaConf.to_container(hydra_run, resolve=False)["dir"]  # type: ignore[index]
    if "${now:" not in str(run_dir):
        return
    example = "logs/slurm/$SLURM_JOB_ID" if launch.launcher == "srun" else "logs/multinode/NAME"
    raise ConfigError(
        f"{launch.launcher} started this run as {launch.world_size} processes, which must share "
        f"one run folder, but hydra.run.dir ({run_dir}) is named after each process's clock: "
        f"give every process the same folder, e.g. hydra.run.dir={example}"
    )


@contextmanager
def rank_zero_outcome(environ: Mapping[str, str] | None = None) -> Iterator[None]:
    """Tell every process of a torchrun launch whether rank zero's block succeeded.

    Rank zero runs the block and publishes ``""`` or, when it raises, its error in one line, on
    the store the torchrun agents share (``MASTER_ADDR:MASTER_PORT``); the other processes run
    the block, then read that outcome and raise :class:`ConfigError` with rank zero's message.
    A refused rank zero stays until every other process has read it (up to
    :data:`READ_TIMEOUT_S`): its exit takes the store down with its agent. Elsewhere (no
    torchrun, one process, an agent without a store) the block just runs.

    Args:
        environ: the environment to read; ``None`` means ``os.environ``.

    Raises:
        ConfigError: on a process other than rank zero, when rank zero's block failed.
    """
    env = os.environ if environ is None else environ
    launch = external_launch(env)
    if (
        launch is None
        or launch.launcher != "torchrun"
        or launch.world_size < 2
        or env.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() != "true"
    ):
        yield
        return
    store = TCPStore(
        env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False, timeout=OUTCOME_TIMEOUT
    )
    # a restarted attempt (torchrun --max-restarts) must not read the last attempt's outcome
    key = f"cvtasks/rank_zero_outcome/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    if launch.rank != 0:
        yield
        message = store.get(key).decode()
        store.add(f"{key}/read", 1)
        if message:
            raise ConfigError(message)
        return
    try:
        yield
    except Exception as err:  # not SIGTERM or Ctrl-C: torchrun stops every process then
        message = str(err) if isinstance(err, ConfigError) else f"{type(err).__name__}: {err}"
        store.set(key, f"rank 0: {message}".replace("\n", " "))
        _wait_for_readers(store, f"{key}/read", launch.world_size - 1)
        raise
    store.set(key, "")


def _wait_for_readers(store: TCPStore, counter: str, readers: int) -> None:
    deadline = time.monotonic() + READ_TIMEOUT_S
    while store.add(counter, 0) < readers and time.monotonic() < deadline:
        time.sleep(0.2)
