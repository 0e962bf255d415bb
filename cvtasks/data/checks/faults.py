"""What a data check finds wrong, and the checks the readers leave to it (keypoints on images).

A :class:`Fault` names its place (a file, or a file and an annotation entry), its kind and what
is wrong, in one line. The readers find most faults themselves (boxes outside their image or
without area, mask values outside the classes, flip pairs that pair a point twice, identities
with one image); the keypoint readers take points as the file gives them, so
:func:`keypoint_faults` checks each labelled point against the image it is read with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: COCO keypoint visibility flags: 0 not labelled, 1 labelled but hidden, 2 labelled and visible
VISIBILITY_FLAGS = (0, 1, 2)


@dataclass(frozen=True)
class Fault:
    """One thing wrong with the data.

    Attributes:
        kind: ``unreadable``, ``annotation`` (found by the reader), ``keypoint_outside``,
            ``visibility``, ``mask``, ``single_identity``, ``duplicate`` or ``unusable``
            (the data could not be read at all).
        where: the file (and entry) it concerns.
        message: what is wrong, in one line.
        split: the split it was found in, ``None`` when the reader does not say.
    """

    kind: str
    where: str
    message: str
    split: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """The fault as a JSON-ready mapping."""
        return asdict(self)


def keypoint_faults(
    where: str,
    keypoints: np.ndarray,
    flags: np.ndarray,
    size: tuple[int, int],
    names: Sequence[str],
) -> list[Fault]:
    """Visibility flags other than 0, 1, 2 and labelled points outside the image.

    A point lies inside when ``0 <= x <= width`` and ``0 <= y <= height`` (pixel edges, so a
    point on the last pixel's far edge is still on the image). Points flagged 0 (not labelled)
    carry no position and are not checked.

    Args:
        where: the file and annotation entry, for messages.
        keypoints: ``[K, 2]`` pixel positions ``(x, y)``.
        flags: ``[K]`` COCO visibility flags.
        size: ``(height, width)`` of the image as it is read.
        names: the ``K`` point names.

    Returns:
        One fault per bad point.
    """
    height, width = size
    faults = []
    for k, (flag, (x, y)) in enumerate(zip(flags.tolist(), keypoints.tolist())):
        name = names[k] if k < len(names) else str(k)
        if flag not in VISIBILITY_FLAGS:
            faults.append(
                Fault(
                    "visibility",
                    where,
                    f"{where}: keypoint {k} ({name!r}) has visibility flag {flag}; COCO flags "
                    "are 0 (not labelled), 1 (hidden) or 2 (visible)",
                )
            )
        elif flag > 0 and not (0 <= x <= width and 0 <= y <= height):
            faults.append(
                Fault(
                    "keypoint_outside",
                    where,
                    f"{where}: keypoint {k} ({name!r}) at ({x:g}, {y:g}) lies outside its "
                    f"{width}x{height} image",
                )
            )
    return faults
