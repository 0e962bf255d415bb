"""Built-in datasets, generated once into the cache in the formats the readers already read.

Each module registers its DataModule factory in ``DATASETS`` when imported.
"""

from cvtasks.data.builtin import digits  # noqa: F401 -- imported to register "digits"
