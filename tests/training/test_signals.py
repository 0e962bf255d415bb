"""SIGTERM stops a run at once outside Lightning's training loop, and is only noted inside it."""

import os
import signal

import pytest

from cvtasks.training.signals import SIGTERM_EXIT, PreemptionError, SigtermWatch


def sigterm_self():
    os.kill(os.getpid(), signal.SIGTERM)


def test_outside_the_training_loop_sigterm_stops_at_once_naming_the_phase():
    reached = []
    with SigtermWatch() as watch, pytest.raises(PreemptionError, match="during the final test"):
        watch.enter("the final test")
        sigterm_self()
        reached.append("after the signal")
    assert reached == [] and watch.received


def test_while_lightning_listens_the_signal_is_noted_and_check_stops_later():
    with SigtermWatch() as watch:
        with watch.fitting():
            watch.lightning_listens = True  # what SigtermRelay sets when the loop starts
            sigterm_self()
            assert watch.received
        assert not watch.lightning_listens
        with pytest.raises(PreemptionError, match="during training"):
            watch.check()
        with pytest.raises(PreemptionError):
            watch.enter("the writing of metrics.json")


def test_the_previous_handler_comes_back_and_the_exit_status_is_a_shells():
    before = signal.getsignal(signal.SIGTERM)
    with SigtermWatch():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
    assert SIGTERM_EXIT == 143


def test_preemption_is_not_swallowed_by_except_exception():
    with SigtermWatch(), pytest.raises(PreemptionError):
        try:
            sigterm_self()
        except Exception:  # a plugin loader or a dataset writer guarding its own failures
            pytest.fail("PreemptionError was caught as an ordinary failure")
