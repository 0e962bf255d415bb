"""``python -m cvtasks data check data=NAME [data.root=...] [task=T] [format=json] [output=FILE]``.

Checks a data set the way training reads it: the config is composed as ``train.py`` composes
it (the same overrides), the data module is built by the same registry, and every split is read
by its own datasets (:mod:`cvtasks.data.checks`). The report gives, per split, the images, the
counts per class and the image sizes, then every fault: unreadable files, bad annotations,
duplicate images across splits.

Exit status: 0 when the data is clean, 1 when anything is wrong with it, 2 for a bad command
line or config (one line on stderr).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cvtasks import plugins
from cvtasks.cli.build import check_target_kind, named
from cvtasks.cli.errors import exit_with, unknown_key_error
from cvtasks.config import ConfigError, check_group_choices, compose_train
from cvtasks.data.checks import CHECK_SETTINGS, DataReport, check_datamodule, format_text
from cvtasks.io import atomic_open, write_json
from cvtasks.registry import DATASETS
from cvtasks.schema import missing_values

USAGE = (
    "usage: python -m cvtasks data check data=NAME [data.KEY=VALUE ...] [task=NAME] "
    "[format=text|json] [output=FILE]"
)
FORMATS = ("text", "json")


def split_arguments(args: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """``format=`` and ``output=`` as options; every other argument is a ``train.py`` override.

    Raises:
        ConfigError: an unknown format, or an empty output path.
    """
    options = {"format": "text", "output": ""}
    overrides = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in options:
            options[key] = value
        else:
            overrides.append(arg)
    if options["format"] not in FORMATS:
        raise ConfigError(
            f"format={options['format']}: not a report format; use format=text or format=json"
        )
    if any(arg.startswith("output=") for arg in args) and not options["output"].strip():
        raise ConfigError("output= is empty: give the file to write the report to")
    return options, overrides


def build_datamodule(cfg: DictConfig, task: str | None) -> tuple[str, Any]:
    """The data module of ``cfg.data`` with :data:`CHECK_SETTINGS` where it takes them.

    Args:
        cfg: the composed ``train.py`` config.
        task: the task given on the command line; data that cannot feed it is refused.

    Raises:
        ConfigError: an unknown key, or data the task cannot learn from.
        ValueError: a bad data setting.
    """
    plugins.load(list(cfg.get("plugins") or []))
    missing = [line for line in missing_values(cfg) if line.startswith("data.")]
    if missing:
        raise ConfigError(missing[0])
    name, kwargs = named(cfg.data, "data")
    kwargs.update({k: v for k, v in CHECK_SETTINGS.items() if k in kwargs})
    try:
        datamodule = DATASETS.build(name, **kwargs)
    except TypeError as err:
        known = unknown_key_error(err, cfg)
        if known is None:
            raise
        raise known from err
    if task is not None:
        check_target_kind(task, name, datamodule)
    return name, datamodule


def write_report(report: DataReport, form: str, output: str) -> None:
    """Print the report, or write it to ``output`` (atomically) and say where it went."""
    text = json.dumps(report.as_dict(), indent=2) if form == "json" else format_text(report)
    if not output:
        print(text)
        return
    if form == "json":
        write_json(output, report.as_dict())
    else:
        with atomic_open(output, "w") as file:
            file.write(text + "\n")
    verdict = "clean" if report.clean else f"{len(report.faults)} error(s)"
    print(f"data check of {report.data}: {verdict}; report in {Path(output)}")


def compose(overrides: Sequence[str]) -> DictConfig:
    """The ``train.py`` config of ``overrides``; Hydra's and OmegaConf's errors as one line."""
    check_group_choices(overrides)  # an unknown data=NAME with the closest names
    try:
        return compose_train(overrides)
    except (HydraException, OmegaConfBaseException) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        hint = [lines[1]] if len(lines) > 1 and lines[1].startswith("To ") else []
        raise ConfigError(" ".join(lines[:1] + hint) or type(err).__name__) from err


def main(argv: Sequence[str]) -> int:
    """``python -m cvtasks data check ARGS`` with ``argv`` the ARGS; returns the exit status
    (0 clean, 1 errors; a bad command line exits with 2)."""
    args = list(argv)
    if any(arg in ("-h", "--help") for arg in args):
        print(USAGE)
        return 0
    try:
        options, overrides = split_arguments(args)
        cfg = compose(overrides)
        # the task is checked against the data only when the command line names one
        task_given = any(a.lstrip("+").startswith(("task=", "task.name=")) for a in overrides)
        task = OmegaConf.select(cfg, "task.name") if task_given else None
        name, datamodule = build_datamodule(cfg, task)
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as err:
        exit_with(err, 2)
    report = check_datamodule(datamodule, name)
    write_report(report, options["format"], options["output"])
    return 0 if report.clean else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
