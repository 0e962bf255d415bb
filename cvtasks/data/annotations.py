"""The ``on_bad_annotation`` policy shared by every annotation reader (COCO, VOC, masks, pairs).

``"error"`` raises :class:`AnnotationError` naming the file and the field; ``"skip"`` drops the
sample, counts it and warns once per file. Inside :func:`collecting_issues` every skipped
problem is also handed to the collector, so a data check lists each one (not only the count).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from cvtasks.data.datamodule import check_choice

ON_BAD_ANNOTATION = ("error", "skip")

_collector: ContextVar[list[str] | None] = ContextVar("annotation_collector", default=None)


@contextmanager
def collecting_issues() -> Iterator[list[str]]:
    """Collect the message of every annotation problem skipped in the block (all readers).

    Yields:
        The list the messages are appended to, in the order the readers found them.
    """
    found: list[str] = []
    token = _collector.set(found)
    try:
        yield found
    finally:
        _collector.reset(token)


class AnnotationError(ValueError):
    """An annotation file, or a field in it, that cannot be used; the message names both."""


class AnnotationWarning(UserWarning):
    """Warned once per annotation file when bad annotations are skipped."""


class AnnotationIssues:
    """Applies the ``on_bad_annotation`` policy and counts what was skipped.

    Args:
        policy: ``"error"`` (raise at the first problem) or ``"skip"`` (count and go on).
        unit: what ``"skip"`` drops, for the message (``"images"``, ``"boxes"``).
    """

    def __init__(self, policy: str = "error", unit: str = "images") -> None:
        check_choice("data.on_bad_annotation", policy, ON_BAD_ANNOTATION)
        self.policy = policy
        self.unit = unit
        self.messages: list[str] = []

    def report(self, message: str) -> None:
        """Raise :class:`AnnotationError` with ``message``, or record it under ``"skip"``."""
        if self.policy == "error":
            raise AnnotationError(
                f"{message} (set data.on_bad_annotation=skip to skip such {self.unit})"
            )
        self.messages.append(message)
        collector = _collector.get()
        if collector is not None:
            collector.append(message)

    def warn(self, source: str | os.PathLike[str]) -> None:
        """Warn once, with the count and the first few problems, if anything was skipped."""
        if self.messages:
            shown = "; ".join(self.messages[:3]) + ("; ..." if len(self.messages) > 3 else "")
            warnings.warn(
                f"{source}: skipped {len(self.messages)} bad annotation(s) "
                f"(data.on_bad_annotation=skip): {shown}",
                AnnotationWarning,
                stacklevel=2,
            )
