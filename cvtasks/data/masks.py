"""Mask files: class indices read from and written to single-channel or palette images.

A mask is a palette (``P``), grayscale (``L``), binary (``1``) or 16/32-bit integer image whose
pixel values are class indices; :data:`~cvtasks.ops.masks.IGNORE_INDEX` (255) marks pixels to
ignore. Masks are written as palette PNGs coloured by Pascal VOC's palette (:func:`mask_palette`,
also the colours of the pictures). A mask must be stored losslessly:
JPEG (or lossy WebP, JPEG 2000) turns the edge between class 1 and class 3 into 2s, silently
teaching classes that are not there, so lossy masks are refused unless ``lossy_masks="allow"``
(``data.lossy_masks=allow``), which warns once per scan.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable

import numpy as np
from PIL import Image

from cvtasks.data.images import (
    BadImageError,
    apply_orientation,
    lossy_format,
    open_image,
    orientation_note,
)
from cvtasks.ops.masks import IGNORE_INDEX

LOSSY_MASKS = ("error", "allow")
_MASK_MODES = ("P", "L", "1", "I", "I;16", "I;16B", "I;16L")
_FIX = "save masks as PNG, or set data.lossy_masks=allow to read them anyway"
_SHOWN = 3

__all__ = [
    "LOSSY_MASKS",
    "BadMaskError",
    "LossyMaskWarning",
    "check_lossy_masks",
    "check_mask",
    "mask_palette",
    "read_mask",
    "write_mask",
]


class BadMaskError(BadImageError):
    """A mask that cannot go with its image: unreadable, missing, another size, bad values.

    ``path`` is the mask (or the image that has none); see :class:`BadImageError` for the
    one-argument form.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str | None = None) -> None:
        if reason is None:
            super().__init__(path)
            return
        super().__init__(f"bad mask {os.fspath(path)}: {reason}")
        self.path, self.reason = os.fspath(path), reason


class LossyMaskWarning(UserWarning):
    """Masks in a lossy format are read because ``data.lossy_masks=allow``."""


def mask_palette(num_colors: int = 256) -> np.ndarray:
    """Pascal VOC's colour map: bit ``3k + c`` of index ``i`` sets bit ``7 - k`` of channel ``c``.

    Class 0 is black, 1 dark red, 2 dark green, 3 olive, ..., 255 (ignore) a light cream.

    Returns:
        A new ``uint8`` array ``[num_colors, 3]``.
    """
    index = np.arange(num_colors)[:, None]
    colors = np.zeros((num_colors, 3), dtype=np.int64)
    for k in range(8):
        colors |= ((index >> (3 * k + np.arange(3))) & 1) << (7 - k)
    return colors.astype(np.uint8)


def read_mask(path: str | os.PathLike[str], allow_lossy: bool = False) -> np.ndarray:
    """Decode a mask file to its class indices.

    Values are read as stored (a palette image's values are its indices, not its colours). An
    EXIF orientation tag is applied, as for images.

    Args:
        path: the mask file.
        allow_lossy: read masks stored in a lossy format instead of refusing them.

    Returns:
        An ``[H, W]`` integer array.

    Raises:
        BadMaskError: the file cannot be decoded, is stored lossily (unless ``allow_lossy``),
            or has colour channels.
    """
    try:
        with open_image(path) as image:
            lossy = lossy_format(image, path)
            if lossy and not allow_lossy:
                raise BadMaskError(path, f"it is stored as {lossy}, a lossy format; {_FIX}")
            if image.mode not in _MASK_MODES:
                bands = "".join(image.getbands())
                raise BadMaskError(
                    path,
                    f"mode {image.mode} ({bands}): a mask must be a single-channel or palette "
                    "image holding class indices, not colours",
                )
            image.load()
            values = np.array(apply_orientation(image))
    except BadMaskError:
        raise
    except BadImageError as err:
        raise BadMaskError(path, f"cannot decode: {err.reason}") from err
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise BadMaskError(path, f"cannot decode: {type(err).__name__}: {err}") from err
    return values.astype(np.uint8) if values.dtype == bool else values


def check_lossy_masks(paths: Iterable[str | None], lossy_masks: str = "error") -> None:
    """Refuse (``"error"``) or warn once about (``"allow"``) masks stored in a lossy format.

    Only masks not named ``.png`` are opened (a PNG is lossless; one that is really a JPEG is
    still caught by :func:`read_mask`), so the common case costs no reads.

    Raises:
        ValueError: under ``"error"``, one line naming the count, the first files and the fix.
    """
    found = []
    for path in paths:
        if path is None or os.fspath(path).lower().endswith(".png"):
            continue
        try:
            with open_image(path) as image:
                lossy = lossy_format(image, path)
        except BadImageError:
            continue  # unreadable: the dataset reports it under data.on_bad_image
        if lossy:
            found.append(f"{path} ({lossy})")
    if not found:
        return
    shown = ", ".join(found[:_SHOWN]) + (", ..." if len(found) > _SHOWN else "")
    message = f"{len(found)} mask(s) are stored in a lossy format, which changes class values"
    if lossy_masks == "error":
        raise ValueError(f"data.lossy_masks: {message} along edges: {shown}; {_FIX}")
    warnings.warn(
        f"{message} along edges (read anyway: data.lossy_masks=allow): {shown}",
        LossyMaskWarning,
        stacklevel=3,
    )


def write_mask(
    path: str | os.PathLike[str], mask: np.ndarray, palette: np.ndarray | None = None
) -> None:
    """Write class indices ``[H, W]`` (0-255) as a palette PNG, coloured by ``palette``."""
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8)).convert("P")
    image.putpalette((mask_palette() if palette is None else palette).reshape(-1).tolist())
    image.save(path, format="PNG")


def check_mask(
    mask: np.ndarray,
    image_shape: tuple[int, ...],
    num_classes: int,
    path: str,
    image_path: str | None = None,
) -> None:
    """Raise :class:`BadMaskError` naming ``path`` if the mask does not fit its image or classes.

    Args:
        mask: the decoded mask ``[H, W]``.
        image_shape: its image's shape ``(H, W, 3)``, as :func:`~cvtasks.data.images.read_image`
            returns it (EXIF orientation applied).
        num_classes: valid values are ``0 .. num_classes - 1`` and
            :data:`~cvtasks.ops.masks.IGNORE_INDEX`.
        path: the mask file, for the message.
        image_path: the image file: a size mismatch then says whether its EXIF orientation
            turned it.
    """
    if mask.shape != tuple(image_shape[:2]):
        (mh, mw), (ih, iw) = mask.shape, image_shape[:2]
        note = orientation_note(image_path) if image_path else ""
        raise BadMaskError(path, f"is {mw}x{mh} (WxH) but its image is {iw}x{ih}{note}")
    bad = ((mask < 0) | (mask >= num_classes)) & (mask != IGNORE_INDEX)
    if bad.any():
        values = np.unique(mask[bad])
        raise BadMaskError(
            path,
            f"holds values {values[:10].tolist()} outside the {num_classes} classes "
            f"0-{num_classes - 1} ({IGNORE_INDEX} = ignore); check classes.txt",
        )
