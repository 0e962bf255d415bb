"""Files in and out: atomic writes, and loading of tensors and checkpoints that runs no pickled
code and tells a damaged file from an unsafe one."""

from __future__ import annotations

import builtins
import errno
import importlib.util
import json
import os
import pickle
import re
import struct
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch

# mkstemp creates files readable by their owner only; give the final file the usual mode instead
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    A crash or an exception inside the block leaves the old file (or none) in place, never half
    of a new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def remove_stale_temps(path: str | os.PathLike[str]) -> None:
    """Delete temporary files :func:`atomic_open` left beside ``path`` when a process was killed.

    A SIGKILL between ``mkstemp`` and the rename leaves ``.<name>.<random>.tmp``; only one process
    (rank zero) writes a given file, so any such file is an orphan.
    """
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def save_torch_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` into a temporary file, then rename it over ``path``.

    A reader never sees half a file: ``path`` holds either the previous complete file or the new
    one, whatever moment the writer is killed at.
    """
    remove_stale_temps(path)
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


# -- safe, truthful loading ----------------------------------------------------------------------
#: what a ``.ckpt`` / ``.pt`` / ``.pth`` file must be.
TORCH_FILE = "a PyTorch checkpoint (zip archive) written by torch.save"
#: what a ``.safetensors`` file must be.
SAFETENSORS_FILE = "a safetensors file"
#: what to do about a damaged file, unless the caller knows better.
REPLACE_IT = "Copy or download it again, or use another checkpoint"

#: ``torch.save``'s legacy (non-zip) files start with this pickled magic number.
_LEGACY_MAGIC = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)[2:]
_ZIP_MAGIC = b"PK\x03\x04"
#: torch's own tests for a weights_only refusal (serialization.py, ``_get_wo_message``)
_UNSAFE_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global by default")
_REFUSED = re.compile(r"whose module \S+ is blocked|\S+ must be \S+ to load")
#: RuntimeError texts of torch's readers that mean the bytes are damaged, not that memory ran out
_DAMAGED = re.compile(
    r"PytorchStreamReader|inline_container|hasRecord|magic number|protocol version|unexpected EOF"
    r"|wrong byte size|corrupt|mmap can only be used"
)
#: exceptions torch.load raises while parsing garbage (pickle opcodes, lengths, UTF-8, keys)
_PARSE_ERRORS = (
    EOFError,
    IndexError,
    KeyError,
    UnicodeDecodeError,
    struct.error,
    AssertionError,
    AttributeError,
    TypeError,
    ValueError,
    OverflowError,
)


class CorruptFileError(ValueError):
    """A file that cannot be parsed as what it should be: empty, cut short, damaged, a folder.

    Args:
        path: the file.
        reason: what is wrong with it (``"the file is empty"``).
        expected: what it should have been (:data:`TORCH_FILE`, :data:`SAFETENSORS_FILE`).
        advice: what to do about it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        reason: str,
        expected: str = TORCH_FILE,
        advice: str = REPLACE_IT,
    ) -> None:
        self.path = Path(path)
        self.reason = reason
        self.expected = expected
        self.size = describe_size(self.path)
        super().__init__(
            f"corrupt file {self.path} ({self.size}): {reason}; expected {expected}. {advice}."
        )


def describe_size(path: Path) -> str:
    """``"1,234 bytes"``, ``"a folder"`` or ``"missing"``: what a message says a file's size is."""
    if path.is_dir():
        return "a folder"
    try:
        size = path.stat().st_size
    except OSError:
        return "missing"
    return "1 byte" if size == 1 else f"{size:,} bytes"


def torch_load_safe(
    path: str | os.PathLike[str], map_location: Any = "cpu", mmap: bool = False
) -> Any:
    """``torch.load(weights_only=True)``; a damaged file and a code-running file are told apart.

    Args:
        path: a file written by ``torch.save``.
        map_location: where tensors go (``torch.load``'s argument).
        mmap: map the tensors' bytes instead of reading them (zip archives only; legacy files are
            read whole). Parsing then costs milliseconds whatever the checkpoint's size, which is
            how :func:`probe_checkpoint` checks a file.

    Raises:
        FileNotFoundError: the path does not exist.
        CorruptFileError: the file is empty, a folder, cut short, damaged, or not a torch.save
            file at all (its path, size, what was expected and what to do).
        ValueError: the file is intact but holds Python objects that only arbitrary unpickling
            could rebuild (which can run code), with the reason and what to do instead.
    """
    path = Path(path).expanduser()
    legacy = _torch_format(path) == "legacy"
    try:
        return torch.load(
            path, map_location=map_location, weights_only=True, mmap=mmap and not legacy
        )
    except pickle.UnpicklingError as err:
        detail = _unpickler_detail(err)
        if _is_refusal(detail):
            raise _refusal(path, detail) from err
        raise CorruptFileError(path, f"its pickled data cannot be read ({detail})") from err
    except RuntimeError as err:
        if not _DAMAGED.search(str(err)):
            raise  # out of memory, a device problem, ...: not the file's fault
        raise CorruptFileError(path, f"the archive is damaged ({_reader_detail(err)})") from err
    except OSError as err:
        if err.errno != errno.EINVAL:  # permissions, I/O errors: say what the OS said
            raise
        raise CorruptFileError(path, f"cut short ({err.strerror})") from err
    except _PARSE_ERRORS as err:
        raise CorruptFileError(
            path, f"its pickled data cannot be read ({type(err).__name__}: {err})"
        ) from err


def probe_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check that a checkpoint loads, without reading its tensors (memory-mapped, milliseconds).

    The zip archive's directory, every member the pickled data refers to and the pickled data
    itself are checked: a file cut short, an archive missing a member and damaged pickled data
    fail here as they would in a full load. Use the returned mapping for small values only
    (``epoch``, ``hyper_parameters``, the stored config, tensor shapes); its tensors map the file.

    Raises:
        FileNotFoundError, CorruptFileError, ValueError: as :func:`torch_load_safe`; also
            :class:`CorruptFileError` when the file holds something other than a mapping.
    """
    data = torch_load_safe(path, mmap=True)
    if not isinstance(data, dict):
        raise CorruptFileError(path, f"it holds a {type(data).__name__}, not a checkpoint dict")
    return data


def _torch_format(path: Path) -> str:
    """``"zip"`` or ``"legacy"``; anything else raises the error that says what the file is."""
    if path.is_dir():
        raise CorruptFileError(
            path, "it is a folder, not a file", advice="Give the checkpoint file itself"
        )
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        raise CorruptFileError(path, "the file is empty")
    if head.startswith(_ZIP_MAGIC):
        _check_zip(path)
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        if _LEGACY_MAGIC in head[:32]:
            return "legacy"
        raise ValueError(
            f"refusing to load {path}: it is a plain pickle, not a file written by torch.save; "
            "only arbitrary unpickling can read it, which can run code. Save plain tensors "
            "(state_dict) with torch.save, or use safetensors."
        )
    if head[257:262] == b"ustar":
        raise ValueError(
            f"refusing to load {path}: it is in torch.save's old tar format, which only arbitrary "
            "unpickling can read (it can run code). Save it again with a current torch.save."
        )
    if head.startswith(b"version https://git-lfs"):
        raise CorruptFileError(
            path, "it is a Git LFS pointer, not the file", advice="Fetch it with git lfs pull"
        )
    raise CorruptFileError(path, f"it is neither a zip archive nor a pickle (starts {head[:8]!r})")


def _check_zip(path: Path) -> None:
    """The archive's directory is readable and names a ``data.pkl`` (cheap: no member is read)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CorruptFileError(
            path, f"the zip archive is cut short or damaged (no readable directory: {err})"
        ) from err
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        raise CorruptFileError(path, "the zip archive has no data.pkl member")


def _unpickler_detail(err: BaseException) -> str:
    """The WeightsUnpickler's own reason, without torch's advice around it."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    text = text.split("Check the documentation of torch.load", 1)[0]
    return " ".join(text.split()) or type(err).__name__


def _is_refusal(detail: str) -> bool:
    """True when the unpickler refused a real object, false when it met garbage.

    A damaged file can also trip the "unsupported global" test, with a name that is no Python
    object (``torch.FloatSt@rage``, ``collectionN.OrderedDict``): the name is checked (without
    importing anything) before the file is called unsafe rather than damaged.
    """
    if _REFUSED.search(detail):
        return True
    match = _UNSAFE_GLOBAL.search(detail)
    if match is None:
        return False
    full_path = match.group(1)
    parts = full_path.split(".")
    if not all(part.isidentifier() for part in parts):
        return False
    if len(parts) == 1:  # torch strips "builtins." from the name it reports
        return hasattr(builtins, full_path)
    top = parts[0]
    if top in sys.modules:
        return True
    try:  # locating a top-level module runs none of its code
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _refusal(path: Path, detail: str) -> ValueError:
    return ValueError(
        f"refusing to load {path}: it holds Python objects that only arbitrary unpickling can "
        f"restore, which can run code. Save plain tensors (state_dict) or use safetensors. "
        f"Detail: {detail}"
    )


def _reader_detail(err: BaseException) -> str:
    """torch's reader error without its advice (``... This is an internal miniz error ...``)."""
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", _first_line(err))
    return re.split(r"\. This is an internal|\. If you are seeing", text)[0].rstrip(". ")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_tensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint or weights file without running arbitrary pickled code.

    ``.safetensors`` files go through safetensors; ``.pt``/``.pth``/``.ckpt`` through
    :func:`torch_load_safe`. A file that needs arbitrary unpickling is refused with a message
    saying why; a damaged one raises :class:`CorruptFileError`.

    Raises:
        FileNotFoundError: the path does not exist.
        CorruptFileError: the file is empty, cut short, damaged or a folder.
        ValueError: the file is not a mapping of tensors, or needs unsafe unpickling.
    """
    path = Path(path).expanduser()
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    data = torch_load_safe(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, expected a dict of tensors")
    return data


def _load_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.is_dir():
        raise CorruptFileError(
            path,
            "it is a folder, not a file",
            SAFETENSORS_FILE,
            advice="Give the weights file itself",
        )
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as err:
        raise CorruptFileError(path, _first_line(err), SAFETENSORS_FILE) from err
