"""Pretrained weights by name: ``pretrained=torchvision`` or ``torchvision:ENTRY``.

What a name means comes from torchvision's own weight tables
(``torchvision.models.get_model_weights``): the URL, the file name with its SHA-256 prefix, the
categories and the preprocessing. ``torchvision`` is the architecture's ``DEFAULT`` entry;
``torchvision:IMAGENET1K_V2`` (or the full ``ResNet50_Weights.IMAGENET1K_V2``) picks another.

Files go where torch.hub keeps them, ``$TORCH_HOME/hub/checkpoints/<file name>`` (torchvision's
own cache, so a file torchvision fetched serves cvtasks too, and the reverse). A file already
there is read without any request. A missing one is downloaded by torch.hub with its SHA-256
prefix checked (a mismatch keeps nothing) under a socket time-out, so an unreachable host fails
in seconds with one line naming the URL and the path to put the file at, rather than hanging.

Two environment variables serve mirrors and air-gapped machines: ``CVTASKS_TORCHVISION_URL``
replaces the folder part of every torchvision URL (the file name stays), and
``CVTASKS_DOWNLOAD_TIMEOUT`` sets the socket time-out in seconds (default 10).
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch

TORCHVISION = "torchvision"
#: replaces ``https://download.pytorch.org/models`` (everything before the file name) in URLs
MIRROR_ENV = "CVTASKS_TORCHVISION_URL"
TIMEOUT_ENV = "CVTASKS_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT_S = 10.0
#: Weights whose network expects inputs scaled to [-1, 1]. torchvision builds it with
#: ``transform_input=True``, a first step that turns ImageNet-normalized inputs into
#: ``(x - 0.5) / 0.5``, so its table states ImageNet's mean and std. A network without that step
#: (cvtasks' GoogLeNet) computes the same function on inputs normalized with 0.5 and 0.5.
_UNIT_RANGE_INPUTS = ("GoogLeNet_Weights",)


class WeightsDownloadError(ConnectionError):
    """A weights file is neither cached nor downloadable; the message says where to put it."""


class WeightsChecksumError(ValueError):
    """A downloaded weights file does not have the SHA-256 its name promises; nothing was kept."""


def is_torchvision_name(pretrained: object) -> bool:
    """True for ``"torchvision"`` and ``"torchvision:ENTRY"``, false for paths and ``None``."""
    return isinstance(pretrained, str) and (
        pretrained == TORCHVISION or pretrained.startswith(TORCHVISION + ":")
    )


def torchvision_weights(variant: str, name: str = TORCHVISION) -> Any:
    """The torchvision ``WeightsEnum`` member that ``name`` picks for architecture ``variant``.

    Args:
        variant: the registered backbone name, which is torchvision's builder name for the
            architectures both have (``resnet18``, ``vgg16_bn``, ``efficientnet_b0`` ...).
        name: ``"torchvision"`` (the ``DEFAULT`` entry) or ``"torchvision:ENTRY"``, ``ENTRY``
            being ``IMAGENET1K_V1``-style or the full ``ResNet18_Weights.IMAGENET1K_V1``.

    Raises:
        ValueError: torchvision has no weights for ``variant``, or no such entry; the message
            lists what exists.
    """
    from torchvision import models

    entry = name.partition(":")[2] or "DEFAULT"
    try:
        table = models.get_model_weights(variant)
    except (ValueError, KeyError):
        having = ", ".join(sorted(set(models.list_models()) & _registered_names()))
        raise ValueError(
            f"backbone.pretrained={name}: torchvision has no weights for {variant!r}; the "
            f"backbones with torchvision weights are: {having}. Use one of them, a local weights "
            "file, or train from scratch (backbone.pretrained=null)."
        ) from None
    member = entry.rpartition(".")[2]
    if entry.count(".") == 1 and entry.partition(".")[0] != table.__name__:
        member = ""  # another architecture's table: refused below
    if member == "DEFAULT" or member in table.__members__:
        return table[member]
    entries = ", ".join(f"{TORCHVISION}:{m}" for m in ["DEFAULT", *table.__members__])
    raise ValueError(
        f"backbone.pretrained={name}: {table.__name__} has no entry {entry!r}; choose one of "
        f"{entries}."
    )


def _registered_names() -> set[str]:
    from cvtasks.registry import BACKBONES

    return set(BACKBONES.names())


def pretrained_cfg(weights: Any) -> dict[str, Any]:
    """What a torchvision weights entry says about its inputs and outputs, timm-style.

    Returns:
        ``source``, ``weights`` (the entry's full name), ``url``, ``categories``, and from its
        transform ``crop_size``, ``resize_size``, ``interpolation``, ``mean`` and ``std``: the
        normalization the network computes on, which for GoogLeNet's entry is
        mean 0.5 and std 0.5 (torchvision's ``transform_input``, a step cvtasks' networks lack).
    """
    transform = weights.transforms()
    mean, std = list(getattr(transform, "mean", [])), list(getattr(transform, "std", []))
    if type(weights).__name__ in _UNIT_RANGE_INPUTS:
        mean, std = [0.5] * len(mean), [0.5] * len(std)
    return {
        "source": TORCHVISION,
        "weights": f"{type(weights).__name__}.{weights.name}",
        "url": weights.url,
        "categories": list(weights.meta.get("categories") or []),
        "crop_size": list(getattr(transform, "crop_size", [])),
        "resize_size": list(getattr(transform, "resize_size", [])),
        "interpolation": str(getattr(transform, "interpolation", "")).rpartition(".")[2].lower(),
        "mean": mean,
        "std": std,
    }


def download_url(url: str) -> str:
    """``url`` with its folder replaced by ``$CVTASKS_TORCHVISION_URL`` when that is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    return f"{mirror.rstrip('/')}/{url.rpartition('/')[2]}"


def cache_path(url: str) -> Path:
    """Where torch.hub caches the file of ``url``: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rpartition("/")[2]


def fetch_torchvision(variant: str, name: str = TORCHVISION) -> tuple[Path, dict[str, Any]]:
    """The local file of the torchvision weights ``name`` for ``variant``, downloaded if need be.

    Returns:
        The cached file and :func:`pretrained_cfg` of the entry.

    Raises:
        ValueError: no such weights (see :func:`torchvision_weights`).
        WeightsDownloadError: not cached and the download failed or timed out.
        WeightsChecksumError: the downloaded bytes do not match the file name's SHA-256 prefix.
    """
    weights = torchvision_weights(variant, name)
    path = cache_path(weights.url)
    fetch(download_url(weights.url), path, label=f"torchvision weights {weights}")
    return path, pretrained_cfg(weights)


def fetch(url: str, path: Path, label: str = "weights") -> None:
    """Download ``url`` to ``path`` with torch.hub, checking the SHA-256 prefix in the file name.

    A file already at ``path`` is kept and nothing is requested. The bytes go to a temporary
    file beside ``path`` that is renamed only once complete and checked, so ``path`` never holds
    half a file or a tampered one.

    Raises:
        WeightsDownloadError: the host is unreachable, answers with an error, or stalls for
            longer than the time-out.
        WeightsChecksumError: the SHA-256 of the bytes does not start with the name's prefix.
    """
    if path.is_file():
        return
    match = re.search(torch.hub.HASH_REGEX, path.name)
    hash_prefix = match.group(1) if match else None
    timeout = _timeout()
    previous = socket.getdefaulttimeout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # torch.hub's urlopen takes no time-out; new sockets take the default one
        socket.setdefaulttimeout(timeout)
        torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix, progress=False)
    except RuntimeError as err:
        if "invalid hash value" not in str(err):
            raise
        raise WeightsChecksumError(
            f"{label}: the file downloaded from {url} does not have the SHA-256 its name "
            f"promises ({err}); it was not kept. Check the mirror ({MIRROR_ENV}) or the proxy, "
            f"or put a good copy at {path}"
        ) from err
    except (URLError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise WeightsDownloadError(
            f"cannot download {label} from {url} ({reason}; time-out {timeout:g} s): with no "
            f"network, fetch that URL elsewhere and put the file at {path}"
        ) from err
    finally:
        socket.setdefaulttimeout(previous)


def _timeout() -> float:
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(
            f"{TIMEOUT_ENV}={value!r} is not a number of seconds; set e.g. {TIMEOUT_ENV}=10"
        ) from None
    if seconds <= 0:
        raise ValueError(f"{TIMEOUT_ENV} must be > 0 seconds, got {value!r}")
    return seconds


def timm_cached_file(model_name: str) -> tuple[str, Path | None, Path]:
    """Where timm's pretrained weights for ``model_name`` come from, and whether they are cached.

    Returns:
        The URL timm downloads from, the cached file (``None`` when not cached), and the cache
        folder: the Hugging Face hub cache for weights hosted there, else torch.hub's.
    """
    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    cfg = timm.get_pretrained_cfg(model_name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if hub_id:
        for filename in ("model.safetensors", "pytorch_model.bin"):  # timm's order
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str):
                return f"{constants.ENDPOINT}/{hub_id}/resolve/main/{filename}", Path(found), Path()
        url = f"{constants.ENDPOINT}/{hub_id}/resolve/main/model.safetensors"
        return url, None, Path(constants.HF_HUB_CACHE)
    url = getattr(cfg, "url", "") if cfg is not None else ""
    if not url:
        raise ValueError(
            f"backbone.pretrained=true: timm has no pretrained weights for {model_name!r}; pick a "
            'tagged model with weights (python -c "import timm; '
            'print(timm.list_models(pretrained=True))") or use a local weights file'
        )
    path = cache_path(url)
    return url, path if path.is_file() else None, path.parent


def check_reachable(url: str, label: str, put_at: str) -> None:
    """Open (and close) a connection to ``url``'s host within the time-out, or raise one line.

    Raises:
        WeightsDownloadError: the host cannot be reached; the message names ``url`` and
            ``put_at`` (what to do with the file instead).
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timeout = _timeout()
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
    except OSError as err:
        raise WeightsDownloadError(
            f"cannot download {label} from {url} ({err}; time-out {timeout:g} s): with no "
            f"network, fetch that URL elsewhere and {put_at}"
        ) from err
