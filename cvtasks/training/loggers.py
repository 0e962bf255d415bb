"""Loggers that keep a run's history: a resumed run appends to the files it continues.

Lightning's ``CSVLogger`` with a fixed version deletes ``metrics.csv`` when it finds the folder
in use, so resuming a run (``ckpt_path=last``, a SLURM requeue) threw away the history of every
step before the interruption, and a resume that failed early left only ``hparams.yaml``.
:class:`CSVLogger` appends instead: it reads the existing file's columns, writes new rows after
the old ones, and widens the header (rewriting the file atomically) when new metrics appear.
It also writes its buffered rows whenever a checkpoint is saved, so a run killed outright
(SIGKILL, power loss) and resumed from that checkpoint has on disk every row up to it
(Lightning's writes only every ``flush_logs_every_n_steps`` steps).
"""

from __future__ import annotations

import csv
import os
from typing import Any

from pytorch_lightning.loggers import CSVLogger as LightningCSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from cvtasks.io import atomic_open


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV experiment writer, minus the deletion of an existing ``metrics.csv``.

    Rows of an interrupted attempt after its last checkpoint stay in the file; the resumed run's
    rows for the same steps follow them (the ``step`` column tells them apart by position).
    """

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as file:
                header = next(csv.reader(file), [])
            self.metrics_keys = sorted(key for key in header if key)

    def _check_log_dir_exists(self) -> None:
        """Keep what the folder holds (Lightning deletes ``metrics.csv`` here)."""

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        """Rewrite the file with a wider header, atomically (a kill leaves the old file)."""
        with open(self.metrics_file_path, newline="") as file:
            rows = list(csv.DictReader(file))
        with atomic_open(self.metrics_file_path, "w") as file:
            writer = csv.DictWriter(file, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)


class CSVLogger(LightningCSVLogger):
    """``pytorch_lightning.loggers.CSVLogger`` that appends to an existing ``metrics.csv`` and
    writes its rows whenever a checkpoint is saved."""

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Write the buffered rows: what a resume from this checkpoint continues is on disk."""
        self.save()

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The :class:`AppendingExperimentWriter` of this run's log folder."""
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
