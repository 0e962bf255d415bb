"""SIGTERM at any moment of a run: stop with status 143 and say how to resume.

A scheduler (SLURM, Kubernetes, a spot-instance reclaim) sends SIGTERM and, some seconds later,
SIGKILL. Inside ``Trainer.fit`` / ``Trainer.test`` Lightning notes the signal and raises
``SIGTERMException`` at the next batch boundary (and :class:`~cvtasks.training.callbacks.
SaveOnSigterm` writes ``last.ckpt``); but that exception is a ``SystemExit`` without a code, so the
process would exit 0, and outside those loops (writing the dataset, building the model, between
training and the final test, writing ``metrics.json``) nobody listened at all. A job that looks
successful is not requeued, and its results are missing.

:class:`SigtermWatch` listens for the whole run. While Lightning trains (from the sanity check
or the first training batch to the end of ``fit``, told by :class:`SigtermRelay`) it only takes
note: Lightning's own handler, which calls ours too, stops the loop at a batch boundary, where a
checkpoint is consistent. Anywhere else it stops the run at once by raising :class:`PreemptionError`
(nothing there needs saving: the test and the writing of results run again on resume), and
:meth:`SigtermWatch.check` stops a run whose training loop ended normally although the signal came.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn

#: exit status of a run stopped by SIGTERM (128 + SIGTERM, as a shell reports it)
SIGTERM_EXIT = 128 + int(signal.SIGTERM)


class PreemptionError(BaseException):
    """SIGTERM arrived; the message names the phase of the run it arrived in.

    A ``BaseException``, as ``KeyboardInterrupt`` is, so that no ``except Exception`` on the way
    (a plugin loader, a dataset writer) mistakes it for a failure of its own and carries on.
    """


class SigtermWatch:
    """Listen for SIGTERM from entering until leaving; see the module docstring.

    Only the main thread can install a signal handler: elsewhere the watch stays inert (and so
    does :meth:`check`), leaving the process's handling as it was.
    """

    def __init__(self) -> None:
        self.received = False
        self.phase = "start-up"
        #: Lightning's training loop is listening (set by :class:`SigtermRelay`)
        self.lightning_listens = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> SigtermWatch:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = not self.received
        self.received = True
        if first and not self.lightning_listens:
            raise PreemptionError(f"SIGTERM during {self.phase}")

    def enter(self, phase: str) -> None:
        """Name the phase the run is in now (for the message); stop if the signal came already."""
        self.check()
        self.phase = phase

    @contextmanager
    def fitting(self) -> Iterator[None]:
        """Around ``Trainer.fit``: Lightning listens only while :class:`SigtermRelay` says so."""
        self.enter("training")
        try:
            yield
        finally:
            self.lightning_listens = False

    def check(self) -> None:
        """Raise :class:`PreemptionError` if SIGTERM arrived (while a loop ran on to its end)."""
        if self.received:
            raise PreemptionError(f"SIGTERM during {self.phase}")


class SigtermRelay(pl.Callback):
    """Tells a :class:`SigtermWatch` when Lightning's training loop listens for SIGTERM itself.

    Lightning installs its handler just before the sanity check and restores ours after
    ``fit``; a signal that came between ``Trainer.fit`` and then stops the run as the loop
    starts (nothing of this attempt is trained yet, so nothing needs saving).
    """

    def __init__(self, watch: SigtermWatch) -> None:
        self.watch = watch

    def _listen(self, trainer: pl.Trainer) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return
        self.watch.check()
        self.watch.lightning_listens = True

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Lightning's handler is in place from here on."""
        self._listen(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Lightning's handler is in place (when the sanity check is off)."""
        self._listen(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Lightning has put our handler back."""
        self.watch.lightning_listens = False
