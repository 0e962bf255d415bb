"""Reading image files into arrays, with one error type for files that cannot be decoded."""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)
"""Lower-case file suffixes that dataset readers treat as images."""

# What Pillow raises for unreadable, unknown, truncated or corrupt files (a bad PNG chunk can
# surface as SyntaxError or struct.error), and for images too large to decode safely.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)


class BadImageError(OSError, ValueError):
    """An image file that cannot be read or decoded.

    Args:
        path: the file.
        reason: what went wrong. When omitted, ``path`` is taken as the whole message; this
            one-argument form is how pickling and DataLoader worker processes rebuild the error,
            so it crosses process boundaries as the same type.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str | None = None) -> None:
        if reason is None:
            super().__init__(str(path))
            self.path: str | None = None
        else:
            super().__init__(f"cannot read image {os.fspath(path)}: {reason}")
            self.path = os.fspath(path)
        self.reason = reason


class BadImageWarning(UserWarning):
    """Warned once per file when a dataset skips an image it cannot decode."""


T = TypeVar("T")


def load_or_skip(load: Callable[[int], T], index: int, on_bad_image: str) -> T | None:
    """``load(index)``; for an unreadable image, raise (``"error"``) or warn and return ``None``.

    Datasets return ``None`` for a skipped sample; the loader's collate drops it and counts it.
    """
    try:
        return load(index)
    except BadImageError as err:
        if on_bad_image == "error":
            raise
        warnings.warn(f"{err} (skipped: data.on_bad_image=skip)", BadImageWarning, stacklevel=3)
        return None


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has an image suffix (see ``IMAGE_EXTENSIONS``) and is not hidden."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to an RGB array.

    Grayscale, palette and RGBA images are converted to RGB. The pixels are fully decoded here,
    so a truncated file fails in this call rather than later inside a transform.

    Args:
        path: the image file.

    Returns:
        A writable ``uint8`` array of shape ``(H, W, 3)``.

    Raises:
        BadImageError: the file is missing, unreadable, not an image, or corrupt; the message
            names the file and the reason.
    """
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")  # convert() loads every pixel, so truncation shows here
        return np.array(rgb, dtype=np.uint8)
    except _DECODE_ERRORS as err:
        raise BadImageError(path, f"{type(err).__name__}: {err}") from err
