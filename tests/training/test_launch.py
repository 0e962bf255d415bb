"""What torchrun and srun tell a process, the overrides train.py adds for their processes, and
rank zero's outcome told to the others."""

import threading
from datetime import timedelta

import pytest
from torch.distributed import TCPStore

from cvtasks.config import ConfigError
from cvtasks.training.launch import (
    ExternalLaunch,
    external_launch,
    launch_overrides,
    rank_zero_outcome,
)

TORCHRUN = {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}
SRUN = {"SLURM_NTASKS": "16", "SLURM_PROCID": "9", "SLURM_JOB_NAME": "train"}
SHARED = ("task=segmentation", "hydra.run.dir=/shared/runs/a")


def test_torchrun_and_srun_are_read_from_their_variables():
    assert external_launch({**TORCHRUN, "RANK": "3"}) == ExternalLaunch("torchrun", 3, 4)
    assert external_launch(SRUN) == ExternalLaunch("srun", 9, 16)
    # torchrun inside a SLURM allocation: the processes are torchrun's
    assert external_launch({**SRUN, **TORCHRUN, "RANK": "1"}) == ExternalLaunch("torchrun", 1, 4)
    # a SLURM job named so starts its processes some other way (as Lightning reads it)
    assert external_launch({**SRUN, "SLURM_JOB_NAME": "interactive"}) is None
    assert external_launch({}) is None


def test_processes_no_launcher_started_as_several_keep_their_overrides():
    overrides = ["task=segmentation", "hydra.job.name=mine"]
    assert launch_overrides(overrides, {}) == overrides
    # a copy that Lightning's own launcher (trainer=ddp_cpu) started
    lightning_child = {"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}
    assert launch_overrides(overrides, lightning_child) == overrides
    # one process under torchrun or srun: nobody to share the folder with
    assert launch_overrides(overrides, {**TORCHRUN, "WORLD_SIZE": "1", "RANK": "0"}) == overrides
    assert launch_overrides(overrides, {**SRUN, "SLURM_NTASKS": "1"}) == overrides


def test_rank_zero_writes_hydra_files_and_other_ranks_log_apart():
    assert launch_overrides(SHARED, {**TORCHRUN, "RANK": "0"}) == list(SHARED)
    given = [*SHARED, "hydra.job.name=mine", "hydra.output_subdir=.hydra"]
    assert launch_overrides(given, {**TORCHRUN, "RANK": "3"}) == [
        *SHARED,
        "hydra.output_subdir=null",
        "hydra.job.name=train_rank3",
    ]
    assert launch_overrides(SHARED, SRUN)[-1] == "hydra.job.name=train_rank9"


@pytest.mark.parametrize(
    ("environ", "launcher", "example"),
    [
        ({**TORCHRUN, "RANK": "2"}, "torchrun", "logs/multinode/NAME"),
        ({**SRUN, "SLURM_PROCID": "0"}, "srun", "logs/slurm/$SLURM_JOB_ID"),
    ],
)
def test_a_run_folder_named_after_the_clock_is_refused_on_every_rank(
    compose_train, environ, launcher, example
):
    with pytest.raises(ConfigError) as err:
        launch_overrides(["task=segmentation"], environ)
    world = environ.get("WORLD_SIZE") or environ["SLURM_NTASKS"]
    assert str(err.value) == (
        f"{launcher} started this run as {world} processes, which must share one run folder, "
        "but hydra.run.dir (${paths.log_dir}/${task.name}/runs/${now:%Y-%m-%d_%H-%M-%S}) is "
        "named after each process's clock: give every process the same folder, e.g. "
        f"hydra.run.dir={example}"
    )
    # a sweep's folders are Hydra's to name
    assert launch_overrides(["-m", "seed=1,2"], environ)[:2] == ["-m", "seed=1,2"]


def run_ranks(ranks, body, restart="0"):
    """Each rank's ``rank_zero_outcome`` block (``body(rank)``) in its own thread, on a store
    standing in for the torchrun agents'; each rank's error (``None``: none)."""
    store = TCPStore("127.0.0.1", 0, is_master=True, timeout=timedelta(seconds=20))
    errors = {}

    def rank_process(rank):
        env = {
            **TORCHRUN,
            "WORLD_SIZE": str(len(ranks)),
            "RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(store.port),
            "TORCHELASTIC_USE_AGENT_STORE": "True",
            "TORCHELASTIC_RESTART_COUNT": restart,
        }
        try:
            with rank_zero_outcome(env):
                body(rank)
            errors[rank] = None
        except Exception as err:  # what each rank raised is the result
            errors[rank] = err

    threads = [threading.Thread(target=rank_process, args=(rank,)) for rank in ranks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return store, errors


def test_a_refusal_on_rank_zero_stops_every_rank_with_its_message():
    def claim(rank):
        if rank == 0:
            raise ConfigError("/runs/a already holds a run (metrics.json): resume it")

    _, errors = run_ranks([0, 1, 2], claim)
    assert str(errors[0]) == "/runs/a already holds a run (metrics.json): resume it"
    for rank in (1, 2):
        assert isinstance(errors[rank], ConfigError)
        assert str(errors[rank]) == "rank 0: /runs/a already holds a run (metrics.json): resume it"


def test_a_claim_that_succeeds_lets_every_rank_go_on():
    store, errors = run_ranks([0, 1], lambda rank: None, restart="3")
    assert errors == {0: None, 1: None}
    # the outcome is kept per attempt: a restarted attempt waits for its own rank zero
    assert store.get("cvtasks/rank_zero_outcome/3") == b""
    assert not store.check(["cvtasks/rank_zero_outcome/0"])


def test_any_failure_of_rank_zero_is_told_in_one_line():
    def claim(rank):
        if rank == 0:
            raise PermissionError("[Errno 13] Permission denied: '/runs/a'\n(read-only)")

    _, errors = run_ranks([0, 1], claim)
    assert isinstance(errors[0], PermissionError)
    assert str(errors[1]) == (
        "rank 0: PermissionError: [Errno 13] Permission denied: '/runs/a' (read-only)"
    )


def test_without_torchrun_the_block_just_runs():
    ran = []
    with rank_zero_outcome({**SRUN}):
        ran.append("srun")
    with rank_zero_outcome({}):
        ran.append("alone")
    with pytest.raises(ConfigError, match="refused"), rank_zero_outcome({}):
        raise ConfigError("refused")
    assert ran == ["srun", "alone"]
