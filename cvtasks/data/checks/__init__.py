"""Checking a data set the way training reads it: counts, image sizes, unreadable files, bad
annotations, duplicate images across splits (``python -m cvtasks data check``)."""

from cvtasks.data.checks.check import CHECK_SETTINGS, check_datamodule
from cvtasks.data.checks.faults import Fault
from cvtasks.data.checks.report import DataReport, format_text

__all__ = ["CHECK_SETTINGS", "DataReport", "Fault", "check_datamodule", "format_text"]
