"""Built-in datasets, generated once into the cache in the formats the readers already read.

Each module registers its DataModule factory in ``DATASETS`` when imported.
"""

from cvtasks.data.builtin import (  # noqa: F401 -- imported to register them
    digits,
    digits_detection,
    digits_identities,
    digits_localization,
    digits_multilabel,
    synthetic_identities,
)
from cvtasks.data.builtin.shapes import ShapesDataModule  # noqa: F401 -- registers "shapes"
from cvtasks.data.builtin.synthetic_faces import SyntheticFacesDataModule  # noqa: F401
