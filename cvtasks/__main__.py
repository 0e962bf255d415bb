"""``python -m cvtasks <command>``: ``train`` (same as train.py), ``list`` or ``summary``."""

from __future__ import annotations

import sys

USAGE = """usage: python -m cvtasks <command> [args]

commands:
  train key=value ...                 train a task (same as python train.py)
  list backbones|heads|tasks|datasets|plugins [PATTERN]
  summary BACKBONE [INPUT_SIZE]       per-layer output shapes and parameters
"""


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        from cvtasks.cli.train import main as train_main

        sys.argv = [sys.argv[0], *rest]
        train_main()
        return 0
    if command == "list" and rest:
        from cvtasks.cli.listing import list_lines

        try:
            print("\n".join(list_lines(rest[0], rest[1] if len(rest) > 1 else None)))
        except KeyError as err:
            print(f"error: {err.args[0]}", file=sys.stderr)
            return 2
        return 0
    if command == "summary" and rest:
        from cvtasks.cli.summary import layer_table

        size = int(rest[1]) if len(rest) > 1 else None
        try:
            print("\n".join(layer_table(rest[0], size)))
        except KeyError as err:
            print(f"error: {err.args[0]}", file=sys.stderr)
            return 2
        return 0
    print(f"error: unknown command {' '.join(argv)!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
