"""Environment description and the writers of ``benchmarks/RESULTS.md`` and JSON results."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from cvtasks.io import write_json

ROOT = Path(__file__).resolve().parent.parent
#: the file ``--results`` sections go into; ``BENCHMARK_RESULTS=PATH`` writes another copy instead
#: (``gpu_check.sh`` does, so that its results come back as one file and the tree stays as is)
RESULTS = Path(os.environ.get("BENCHMARK_RESULTS") or ROOT / "benchmarks" / "RESULTS.md")
HEADER = (
    "# Benchmark results\n\nWritten by the scripts in this folder (`--results TITLE`); "
    "regenerate, don't hand-edit. Each section is replaced when its script runs again.\n"
)


def environment(device: torch.device) -> dict[str, Any]:
    """Device, versions, date: what a figure needs next to it."""
    import pytorch_lightning
    import timm

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = (
            f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
        )
    env = {
        "device": name,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "lightning": pytorch_lightning.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }
    env["summary"] = (
        f"{env['device']} ({env['cores']} cores); torch {env['torch']}, Lightning "
        f"{env['lightning']}, timm {env['timm']}, Python {env['python']}; {env['date']}"
    )
    return env


def command_line(argv: list[str]) -> str:
    """``python benchmarks/<script>.py ...`` as typed from the repository root, shell-quoted."""
    script = Path(argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return shlex.join(["python", str(script), *argv[1:]])


def write_section(title: str, env: dict[str, Any], settings: str, body: str, command: str) -> None:
    """Replace (or append) the ``## title`` section of RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    section = f"## {title}\n\n{env['summary']}\n\n`{command}`\n\n{settings}\n\n{body.rstrip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text + "\n" + section
    RESULTS.write_text(re.sub(r"\n{3,}", "\n\n", text))


def report(args: Any, env: dict[str, Any], settings: str, text: str, rows: list[Any]) -> None:
    """Print a benchmark's table; write it as JSON (``--json``) and a section (``--results``)."""
    print(f"\n{env['summary']}\n{settings}\n\n{text}")
    if args.json:
        write_json(args.json, {"environment": env, "settings": vars(args), "rows": rows})
    if args.results:
        write_section(args.results, env, settings, text, command_line(sys.argv))


def report_cpu(title: str | None, settings: str, rows: list[str], argv: list[str]) -> None:
    """Print a CPU benchmark's settings and table; with ``title``, write them into RESULTS.md."""
    print(settings + "\n" + "\n".join(rows))
    if title:
        env = environment(torch.device("cpu"))
        write_section(title, env, settings, "\n".join(rows), command_line(argv))
