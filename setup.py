"""Package layout that ``pyproject.toml`` cannot express: ship the top-level ``conf/`` inside
the ``cvtasks`` package.

``conf/`` stays the one copy of the Hydra configs in the repository (``python train.py`` reads it
there); builds map it to the package ``cvtasks.conf``, so a wheel or an sdist-built wheel carries
every ``conf/**/*.yaml`` as ``cvtasks/conf/...``. Everything else is in ``pyproject.toml``.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["cvtasks", "cvtasks.*"]), "cvtasks.conf"],
    package_dir={"cvtasks.conf": "conf"},
    package_data={"cvtasks.conf": ["*.yaml", "**/*.yaml"]},
    # Only the package_data above: the config groups (conf/backbone/, ...) are data folders,
    # not Python packages, and must not be collected as such.
    include_package_data=False,
)
