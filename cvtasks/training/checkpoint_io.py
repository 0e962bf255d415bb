"""A Lightning ``CheckpointIO`` that never leaves half a checkpoint and never runs pickled code.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction; on a local disk we want
the POSIX guarantee instead: write a temporary file beside the target, ``fsync`` it, and
``os.replace`` it over the target (:func:`cvtasks.io.save_torch_atomic`). A process killed at
any moment leaves the previous ``last.ckpt`` intact. Loading always uses ``weights_only=True``:
``Trainer.fit(ckpt_path=...)`` and ``Trainer.test(ckpt_path=...)`` go through here.
"""

from __future__ import annotations

from typing import Any

from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_fabric.utilities.types import _PATH

from cvtasks.io import save_torch_atomic, torch_load_safe


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
            ValueError: the file needs arbitrary unpickling (it could run code), with the reason.
        """
        if weights_only is False:
            raise ValueError(
                f"refusing to load {path} with weights_only=False: unpickling arbitrary objects "
                "can run code. cvtasks checkpoints hold only tensors and plain values."
            )
        return torch_load_safe(path, map_location=map_location or "cpu")
