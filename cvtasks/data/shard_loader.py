"""LitData's streaming loader, made to resume one epoch mid-way under Lightning and no more.

``StreamingDataLoader.load_state_dict`` marks the loader ``restore``: its next iterator starts at
the saved position instead of a new epoch. LitData clears the mark only when an iterator runs
to its end, but Lightning never lets one: it knows the loader's length and stops after the last
batch. The mark then stays for good, and each epoch after the resumed one starts again from the
stale position of an epoch already finished, with the same epoch number (so the same order).
Measured with LitData 0.2.76 and Lightning 2.6: without loader workers, when the batches fill
an epoch exactly, those epochs yield nothing (the resumed run trained no step after the epoch
it resumed); iterated by hand with one worker, the next epoch repeated part of the resumed one.
:class:`StreamingLoader` applies a loaded state to the first epoch iterated after it only.

Imported when the training loader is made (``import litdata`` takes seconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from litdata import StreamingDataLoader


class StreamingLoader(StreamingDataLoader):
    """``StreamingDataLoader`` whose loaded position resumes one epoch, the next one started.

    Takes every ``StreamingDataLoader`` argument unchanged.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._state_loaded = False

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        """Resume at ``obj``'s position in the next epoch iterated (LitData's ``restore``)."""
        super().load_state_dict(obj)
        self._state_loaded = True

    def __iter__(self) -> Iterator[Any]:
        # a generator, as LitData's: nothing runs until the first batch is asked for, so an
        # iterator made and dropped unused does not spend the loaded state
        if not self._state_loaded:
            self.restore = False  # a resumed epoch's mark, left by a loop that stopped at its end
        self._state_loaded = False
        yield from super().__iter__()
