"""Reading image files into arrays, with one error type for files that cannot be decoded.

:func:`read_image` is the one decoder every path to the model uses (training, evaluation,
``predict``, ``features``): whatever Pillow opens becomes ``uint8`` RGB in the frame a viewer
shows. The rules, per kind of file:

- EXIF orientation is applied (a phone photo tagged "rotate 90°" comes out upright), so
  annotations and masks are taken in that displayed frame, as annotation tools show it;
- 16-bit grayscale (``I;16``, ``I;16B``, and ``I``, Pillow's mode for 16-bit PGM and some PNG
  and TIFF files) is scaled, ``v * 255 / 65535`` rounded, never clipped; 16-bit colour PNG and
  PPM files come out of Pillow as 8-bit already (its scaling is within one level of that);
- float images (``F``, e.g. a 32-bit TIFF) in [0, 1] are scaled by 255: that is the convention of
  float image data. Float or 32-bit integer values outside those ranges have no agreed scale
  (depth in metres, photon counts), so each such image is stretched from its own minimum to its
  own maximum, with one :class:`ImageScaleWarning` per process; NaN reads as 0, infinities as
  0 and 255;
- transparency (``RGBA``, ``LA``, ``PA``, palette or grayscale images with a transparent colour)
  is composited over white, as a page shows it, so the colour hidden under transparent pixels
  never reaches the model;
- palette, 1-bit, CMYK, YCbCr and other modes are converted by Pillow.

Only regular files are opened: a FIFO, socket or device node with an image name would block
``open()`` forever, so it is refused with :class:`BadImageError` instead.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
ORIENTATION_TAG = 274  # EXIF Orientation
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_NAMES = {
    2: "mirrored",
    3: "rotated 180°",
    4: "flipped upside down",
    5: "mirrored and rotated 90°",
    6: "rotated 90° clockwise",
    7: "mirrored and rotated 270°",
    8: "rotated 90° counter-clockwise",
}
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_HEADER_EXIF = frozenset({"JPEG", "MPO", "WEBP", "PNG"})  # orientation readable from the header
_stretch_warned = False  # ImageScaleWarning is given once per process


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


class ImageScaleWarning(UserWarning):
    """An image whose values have no standard scale was stretched to its own range."""


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


def file_kind(mode: int) -> str:
    """What an ``st_mode`` is, in words: ``"regular file"``, ``"FIFO (named pipe)"``, ..."""
    kinds = (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as a file (``"does not exist"``, ``"is a FIFO (named pipe),
    not a regular file"``, ...), or ``None`` for a regular file (links followed)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    return None if stat.S_ISREG(mode) else f"is a {file_kind(mode)}, not a regular file"


def _refuse_special(path: str | os.PathLike[str], mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise BadImageError(path, f"it is a {file_kind(mode)}, not a regular file")


@contextmanager
def open_image(path: str | os.PathLike[str]) -> Iterator[Image.Image]:
    """``Image.open`` for regular files only (header read; pixels not yet decoded).

    The file is opened non-blocking and checked before Pillow reads it, so a FIFO or device
    node is refused at once instead of blocking forever.

    Raises:
        BadImageError: the file is missing, not a regular file, or not an image Pillow knows.
    """
    with decode_errors(path):
        _refuse_special(path, os.stat(path).st_mode)  # a socket cannot even be opened
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as file:
            _refuse_special(path, os.fstat(file.fileno()).st_mode)  # swapped since the stat
            with Image.open(file) as image:
                yield image


@contextmanager
def decode_errors(name: str | os.PathLike[str]) -> Iterator[None]:
    """Turn what Pillow raises on a file it cannot read into :class:`BadImageError` naming it."""
    try:
        yield
    except BadImageError:
        raise
    except _DECODE_ERRORS as err:
        # bytes decoded from memory (shards) are named by Pillow as a BytesIO object: say the file
        text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", repr(os.fspath(name)), str(err))
        raise BadImageError(name, f"{type(err).__name__}: {text}") from err


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation of an open image, 1 (as stored) when absent or unreadable."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except (*_DECODE_ERRORS, KeyError, IndexError, TypeError):
        return 1  # a damaged EXIF block: the pixels are still good, read them as stored
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def apply_orientation(image: Image.Image) -> Image.Image:
    """The loaded ``image`` turned as its EXIF orientation tag says (itself when untagged)."""
    method = _TRANSPOSE.get(exif_orientation(image))
    return image if method is None else image.transpose(method)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to an RGB array, in the frame a viewer shows.

    See the module docstring for how each kind of file is scaled. The pixels are fully decoded
    here, so a truncated file fails in this call rather than later inside a transform.

    Args:
        path: the image file.

    Returns:
        A writable ``uint8`` array of shape ``(H, W, 3)``.

    Raises:
        BadImageError: the file is missing, not a regular file, not an image, or corrupt; the
            message names the file and the reason.
    """
    with decode_errors(path), open_image(path) as image:
        return _loaded_rgb(image, path)


def _loaded_rgb(image: Image.Image, name: str | os.PathLike[str]) -> np.ndarray:
    image.load()  # every pixel, so truncation shows here
    # after load(): Pillow turns some formats itself (TIFF) and then drops the tag
    return to_rgb(apply_orientation(image), name)


def decode_image(data: bytes, name: str) -> np.ndarray:
    """:func:`read_image` for the bytes of an image file (an archive's member, a shard's field).

    Args:
        data: the file's bytes, any format Pillow reads.
        name: what messages call it (the original path).

    Raises:
        BadImageError: the bytes are not a decodable image.
    """
    with decode_errors(name), Image.open(io.BytesIO(data)) as image:
        return _loaded_rgb(image, name)


def decode_indices(data: bytes, name: str) -> np.ndarray:
    """The values of a single-channel PNG's bytes (a mask of class indices), as stored.

    Raises:
        BadImageError: the bytes are not a decodable image.
    """
    with decode_errors(name), Image.open(io.BytesIO(data)) as image:
        return np.array(image, dtype=np.uint8)


def image_mode(path: str | os.PathLike[str]) -> str:
    """The Pillow mode of an image file, from its header (``"L"``, ``"RGB"``, ...).

    Raises:
        BadImageError: the file is missing, special or not an image.
    """
    with open_image(path) as image:
        return image.mode


def to_rgb(image: Image.Image, path: str | os.PathLike[str] = "<image>") -> np.ndarray:
    """A loaded Pillow image as a writable ``uint8`` ``(H, W, 3)`` array (module rules).

    Args:
        image: the image, any mode.
        path: its file, for messages.

    Raises:
        BadImageError: a mode that Pillow cannot convert to RGB.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return np.array(image, dtype=np.uint8)
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        gray = _scale_to_8bit(np.asarray(image), mode, path)
    elif mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)
        rgb, alpha = rgba[..., :3], rgba[..., 3:]
        over_white = (rgb * alpha + 255 * (255 - alpha) + 127) // 255  # rounded
        return over_white.astype(np.uint8)
    elif mode in ("L", "1"):
        gray = np.asarray(image.convert("L") if mode == "1" else image, dtype=np.uint8)
    else:
        try:
            return np.array(image.convert("RGB"), dtype=np.uint8)
        except ValueError as err:
            raise BadImageError(path, f"mode {mode} cannot be converted to RGB: {err}") from err
    return np.repeat(gray[..., None], 3, axis=2)


def _scale_to_8bit(values: np.ndarray, mode: str, path: str | os.PathLike[str]) -> np.ndarray:
    """One-channel 16-bit, 32-bit integer or float values as ``uint8`` (module rules)."""
    if mode in _SIXTEEN_BIT:
        return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v / 257)
    v = values.astype(np.float64)
    finite = v[np.isfinite(v)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if mode == "I" and low >= 0 and high <= 65535:
        return ((values.astype(np.int64) + 128) // 257).astype(np.uint8)
    if mode == "F" and low >= 0 and high <= 1:
        scaled = v * 255
    else:
        _warn_stretch(path, mode, low, high)
        scaled = (v - low) * (255 / (high - low)) if high > low else np.zeros_like(v)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _warn_stretch(path: str | os.PathLike[str], mode: str, low: float, high: float) -> None:
    global _stretch_warned
    if _stretch_warned:
        return
    _stretch_warned = True
    kind = "float" if mode == "F" else "32-bit integer"
    warnings.warn(
        f"{os.fspath(path)}: {kind} values {low:g}..{high:g} have no standard scale, so the "
        f"image is stretched from its minimum to its maximum (and so is every such image; this "
        f"is said once). Save 8- or 16-bit images, or floats in [0, 1], to keep one scale.",
        ImageScaleWarning,
        stacklevel=3,
    )


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(height, width)`` of the image :func:`read_image` returns (EXIF orientation applied).

    Read from the header for JPEG, WebP and PNG; other formats are decoded, since Pillow may
    apply their orientation itself while loading (it does for TIFF).

    Raises:
        BadImageError: the file cannot be opened as an image.
    """
    try:
        with open_image(path) as image:
            if image.format in _HEADER_EXIF:
                # A PNG's EXIF block is seen in the header only when it precedes the pixels.
                turned = exif_orientation(image) in (5, 6, 7, 8)
                return (image.width, image.height) if turned else (image.height, image.width)
            image.load()
            oriented = apply_orientation(image)
            return oriented.height, oriented.width
    except BadImageError:
        raise
    except _DECODE_ERRORS as err:
        raise BadImageError(path, f"{type(err).__name__}: {err}") from err


def orientation_note(path: str | os.PathLike[str]) -> str:
    """For size-mismatch messages: how the file's EXIF orientation turns it, or ``""``."""
    try:
        with open_image(path) as image:
            orientation = exif_orientation(image)  # before loading: Pillow drops TIFF's tag
    except BadImageError:
        return ""
    if orientation == 1:
        return ""
    return (
        f"; its EXIF orientation tag ({orientation}: {_ORIENTATION_NAMES[orientation]}) is "
        "applied when it is read, as viewers show it, so annotations and masks must be in that "
        "displayed frame (or save the image without the tag, e.g. `mogrify -auto-orient`)"
    )


def lossy_format(image: Image.Image, path: str | os.PathLike[str]) -> str | None:
    """The name of the lossy format the open ``image`` (file ``path``) is stored in, or ``None``.

    JPEG, JPEG 2000 (which may be lossless, but the file does not say), lossy WebP and TIFF with
    JPEG compression are lossy; PNG, BMP, GIF, PPM/PGM, lossless WebP and other TIFFs are not.
    """
    fmt = image.format or ""
    if fmt in ("JPEG", "MPO"):
        return "JPEG"
    if fmt == "JPEG2000":
        return "JPEG 2000"
    if fmt == "TIFF" and str(image.info.get("compression", "")) in ("jpeg", "tiff_jpeg"):
        return "TIFF with JPEG compression"
    if fmt == "WEBP" and _webp_codec(path) == b"VP8 ":
        return "lossy WebP"
    return None


def _webp_codec(path: str | os.PathLike[str]) -> bytes | None:
    """The image chunk of a WebP file: ``b"VP8 "`` (lossy) or ``b"VP8L"`` (lossless)."""
    with open(path, "rb") as file:
        if file.read(12)[8:] != b"WEBP":
            return None
        while len(header := file.read(8)) == 8:
            fourcc, size = header[:4], struct.unpack("<I", header[4:])[0]
            if fourcc in (b"VP8 ", b"VP8L"):
                return fourcc
            file.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to even sizes
    return None
