"""Where cvtasks keeps files it generates once and reuses (built-in datasets)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """The folder for cvtasks' generated files.

    ``$CVTASKS_CACHE`` when set, else ``$XDG_CACHE_HOME/cvtasks``, else ``~/.cache/cvtasks``.
    The folder is not created here: callers create what they write into.

    Returns:
        The cache folder, with ``~`` expanded.
    """
    explicit = os.environ.get("CVTASKS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "cvtasks"
    return Path.home() / ".cache" / "cvtasks"
