"""A Lightning ``CheckpointIO`` that never leaves half a checkpoint and never runs pickled code.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction; on a local disk we want
the POSIX guarantee instead: write a temporary file beside the target, ``fsync`` it, and
``os.replace`` it over the target (:func:`cvtasks.io.save_torch_atomic`). A process killed at
any moment leaves the previous ``last.ckpt`` intact. Loading always uses ``weights_only=True``:
``Trainer.fit(ckpt_path=...)`` and ``Trainer.test(ckpt_path=...)`` go through here; a checkpoint
whose ``ModelCheckpoint`` state names files outside its folder is refused
(:func:`check_callback_paths`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_fabric.utilities.types import _PATH

from cvtasks.io import save_torch_atomic, torch_load_safe

#: the checkpoint entry holding the run's resolved config (written by ``ConfigInCheckpoint``).
CONFIG_KEY = "cvtasks_config"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save checkpoints by temp file + rename; load them with ``torch.load(weights_only=True)``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically (``storage_options`` must be ``None``)."""
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__} writes local files and takes no storage_options, got "
                f"{storage_options!r}"
            )
        save_torch_atomic(checkpoint, path)

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Load a checkpoint without arbitrary unpickling, whatever ``weights_only`` asks for.

        Raises:
            FileNotFoundError: no file at ``path``.
            CorruptFileError: the file is empty, cut short or damaged (a ``ValueError``).
            ValueError: the file needs arbitrary unpickling (it could run code), or its
                ``ModelCheckpoint`` state names files outside its folder, with the reason.
        """
        if weights_only is False:
            raise ValueError(
                f"refusing to load {path} with weights_only=False: unpickling arbitrary objects "
                "can run code. cvtasks checkpoints hold only tensors and plain values."
            )
        checkpoint = torch_load_safe(path, map_location=map_location or "cpu")
        check_callback_paths(checkpoint, path)
        return checkpoint


#: the ModelCheckpoint state entries that name files, which Lightning restores on a resume
_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def check_callback_paths(checkpoint: Mapping[str, Any], path: _PATH) -> None:
    """Refuse a checkpoint whose ``ModelCheckpoint`` state names files outside its folder.

    Lightning restores ``best_model_path``, ``last_model_path``, ``kth_best_model_path`` and
    ``best_k_models`` from a checkpoint, tests the best one, and deletes the previous one at the
    next save when it lies under the checkpoint folder, a test that ``<folder>/../../any/file``
    passes. Lightning only ever writes names inside the folder, so any other name is refused.

    Raises:
        ValueError: naming the callback, the file name and the folder.
    """
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if not isinstance(state, Mapping) or "best_model_path" not in state:
            continue
        folder = state.get("dirpath")
        names = [state.get(k) for k in _PATH_KEYS] + list(state.get("best_k_models") or {})
        outside = [name for name in names if name and not _inside(name, folder)]
        if outside:
            raise ValueError(
                f"refusing to load {path}: the state of its {str(key).split('{')[0]} names "
                f"{outside[0]!r}, outside its checkpoint folder {folder!r} (Lightning would load "
                "or delete that file). Resume from a checkpoint train.py wrote."
            )


def _inside(name: Any, folder: Any) -> bool:
    """True when ``name`` is a local path inside ``folder`` once ``..`` is collapsed."""
    if not isinstance(name, str) or not isinstance(folder, str) or "://" in name + folder:
        return False  # cvtasks writes local checkpoints only
    name, folder = (os.path.normpath(os.path.abspath(p)) for p in (name, folder))
    return name != folder and os.path.commonpath([name, folder]) == folder
