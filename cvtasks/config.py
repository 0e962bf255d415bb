"""Hydra set-up shared by every command: config folders, plugin configs, resolvers and checks.

* :data:`CONFIG_DIR` is the project's ``conf/`` folder (``cvtasks/conf`` inside a wheel).
* Installed plugins that ship a ``conf/`` folder join Hydra's search path through a
  ``SearchPathPlugin`` registered here, so ``backbone=<plugin_net>`` works after ``pip install``.
* Resolvers ``${monitor:<task>}`` and ``${monitor_mode:<task>}`` read the monitored metric from
  the task class, so configs never repeat it; ``${native_input_size:<backbone>[,<multiple>]}``
  reads the input size a backbone is defined for (LeNet-5 32, EfficientNet-B3 300, a timm
  model's ``pretrained_cfg``), so data configs default to it.
* Every registered backbone without a yaml of its name gets a generated ``backbone/<name>``
  config (:func:`store_generated_configs`, Hydra's ConfigStore) holding its builder's keyword
  defaults, so ``backbone=<name>`` works for a plugin's backbone with no yaml; a yaml of the same
  name is a recipe and replaces it. ``plugins=[...]`` on the command line is loaded first
  (:func:`setup_hydra`), since Hydra needs the option before the run reads the config.
* :func:`check_group_choices` turns ``trainer=gpux`` into an error that lists the valid options
  and the closest match, before Hydra starts.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import DictConfig, OmegaConf

from cvtasks import plugins
from cvtasks.generated_configs import GENERATED_GROUPS, generated_config, plugin_specs
from cvtasks.registry import TASKS


def find_config_dir(package: Path) -> Path:
    """The Hydra config folder of the ``cvtasks`` package folder ``package``.

    ``package/conf`` in an installed wheel (``setup.py`` maps the repository's top-level ``conf/``
    into the package), else the ``conf/`` beside the package: the one copy in a checkout, which
    ``python train.py`` and editable installs read.

    Args:
        package: the folder of the ``cvtasks`` package (``cvtasks/__init__.py``'s parent).

    Returns:
        The first of those holding ``train.yaml``; ``package/conf`` when neither does (Hydra's
        error then names the folder a wheel should hold).
    """
    for folder in (package / "conf", package.parent / "conf"):
        if (folder / "train.yaml").is_file():
            return folder
    return package / "conf"


CONFIG_DIR = find_config_dir(Path(__file__).resolve().parent)


class ConfigError(ValueError):
    """A config value or choice that is not allowed; the message says which and what is."""


class PluginConfigSearchPath(SearchPathPlugin):
    """Adds the ``conf/`` folder of every installed cvtasks plugin to Hydra's search path."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        """Append each plugin config folder after cvtasks' own (ours win on name clashes)."""
        for conf in plugins.config_dirs():
            search_path.append(provider="cvtasks-plugin", path=f"file://{conf}")


def setup_hydra(overrides: Sequence[str] = ()) -> None:
    """Register the plugin search path, the resolvers and the generated configs (idempotent).

    Args:
        overrides: command-line arguments; the plugins a ``plugins=[...]`` among them names are
            loaded first, so that their backbones get configs before Hydra composes.

    Raises:
        ConfigError: ``plugins=`` is not a list Hydra can parse.
    """
    try:
        specs = plugin_specs(overrides)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    plugins.load(specs)
    store_generated_configs()
    Plugins.instance().register(PluginConfigSearchPath)  # registering twice is a no-op
    if not OmegaConf.has_resolver("monitor"):
        OmegaConf.register_new_resolver("monitor", lambda task: TASKS.get(task).monitor)
        OmegaConf.register_new_resolver("monitor_mode", lambda task: TASKS.get(task).monitor_mode)
    if not OmegaConf.has_resolver("native_input_size"):
        OmegaConf.register_new_resolver("native_input_size", native_input_size)


def native_input_size(backbone: str | None, multiple: int = 1) -> int | list[int]:
    """The ``${native_input_size:...}`` resolver: see
    :func:`cvtasks.backbones.input_size.native_input_size` (imported on first use).

    ``backbone`` is ``None`` in a config without one (``evaluate``'s, whose data takes the
    checkpoint's size): the default size then. So is an unknown name: the run stops when it
    builds the backbone, before any image is read, with the registry's one-line message (close
    matches included) rather than an interpolation error wrapped around it.
    """
    from cvtasks.backbones.input_size import DEFAULT_INPUT_SIZE
    from cvtasks.backbones.input_size import native_input_size as read

    if backbone is None:
        return DEFAULT_INPUT_SIZE
    try:
        return read(backbone, multiple)
    except KeyError:
        return DEFAULT_INPUT_SIZE


def compose_train(overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` as ``python train.py`` would, outside a
    Hydra run (resume look-ups, benchmarks, tests), its ``auto`` input settings resolved
    (:func:`cvtasks.auto_inputs.resolve_inputs`)."""
    from hydra import compose, initialize_config_dir

    from cvtasks.auto_inputs import resolve_inputs

    setup_hydra(overrides)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=return_hydra_config)
    return resolve_inputs(cfg)


def config_dirs() -> list[Path]:
    """cvtasks' own config folder followed by every installed plugin's."""
    return [CONFIG_DIR, *plugins.config_dirs()]


def yaml_options(group: str, dirs: Iterable[Path] | None = None) -> list[str]:
    """The option names of a config group that are yaml files in ``dirs`` (default: all).

    A file whose name starts with ``_`` (``task/_optim.yaml``) is part of other configs, not an
    option.
    """
    names: set[str] = set()
    for root in dirs if dirs is not None else config_dirs():
        folder = root / group
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))
    return sorted(names)


def generated_options(group: str, dirs: Iterable[Path] | None = None) -> list[str]:
    """The options of ``group`` generated from a registry: its names that have no yaml."""
    if group not in GENERATED_GROUPS:
        return []
    files = set(yaml_options(group, dirs))
    return [name for name in GENERATED_GROUPS[group].names() if name not in files]


def group_options(group: str, dirs: Iterable[Path] | None = None) -> list[str]:
    """The option names of a config group (``trainer`` → ``cpu``, ``ddp``, …): its yaml files
    in ``dirs`` (default: cvtasks' and the installed plugins') and its generated configs."""
    return sorted({*yaml_options(group, dirs), *generated_options(group, dirs)})


def store_generated_configs() -> list[str]:
    """Put a generated config in Hydra's ConfigStore for every registered name without a yaml.

    Run after plugins load; storing a name again replaces its config (a re-registered builder).

    Returns:
        The ``group/name`` of every config stored.
    """
    store = ConfigStore.instance()
    stored = []
    for group, registry in GENERATED_GROUPS.items():
        for name in generated_options(group):
            store.store(group=group, name=name, node=generated_config(registry.get(name), name))
            stored.append(f"{group}/{name}")
    return stored


def check_group_choices(overrides: Sequence[str], dirs: Iterable[Path] | None = None) -> None:
    """Fail early, and helpfully, on a command-line group choice that has no config file.

    Args:
        overrides: command-line arguments such as ``["task=segmentation", "trainer.max_epochs=3"]``.
        dirs: config folders to look in (default: cvtasks' and the installed plugins').

    Raises:
        ConfigError: naming the group, the bad choice, the closest options and all options.
    """
    dirs = list(dirs) if dirs is not None else config_dirs()
    groups = {p.name for root in dirs if root.is_dir() for p in root.iterdir() if p.is_dir()}
    for arg in overrides:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in groups or value in ("", "null") or "," in value:
            continue  # not a group choice, a deletion, or a sweep list Hydra expands itself
        options = group_options(key, dirs)
        if value.removesuffix(".yaml") not in options:
            close = difflib.get_close_matches(value, options, n=3, cutoff=0.4)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"{key}={value}: there is no {key!r} config named {value!r}.{hint} "
                f"Available {key} options: {', '.join(options)}. "
                f"Plugins can add options by shipping conf/{key}/<name>.yaml"
                + (f" or registering a {key}." if key in GENERATED_GROUPS else ".")
            )
