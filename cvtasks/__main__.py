"""``python -m cvtasks <command>``: ``train`` (same as train.py), ``predict``, ``evaluate``,
``export``, ``benchmark``, ``features``, ``tune``, ``data``, ``list`` or ``summary``."""

from __future__ import annotations

import importlib
import sys

#: commands that compose a Hydra config (key=value arguments), and their cvtasks.cli module.
HYDRA_COMMANDS = {
    name: name for name in ("train", "predict", "evaluate", "export", "features", "benchmark")
}
#: ``data <sub-command>``: its cvtasks.cli module, whose ``main(args)`` returns the exit code
DATA_COMMANDS = {"convert": "data_convert", "check": "data_check"}

USAGE = """usage: python -m cvtasks <command> [args]

commands:
  train key=value ...                 train a task (same as python train.py)
  predict ckpt=PATH input=FILE|DIR|GLOB output=DIR   predictions.jsonl + pictures
  evaluate ckpt=PATH [data=NAME]      test metrics (metrics.json) and plots
  export ckpt=PATH format=onnx|torchscript|torch_export output=FILE
  benchmark ckpt=PATH [formats=torch,onnx,torchscript] [batch_sizes=1,8,32] [device=auto]
            [output=DIR]              latency, throughput and test metric per format
  features backbone=NAME|ckpt=PATH image=FILE [layer=NAME] [channels=[..]] [images=DIR] output=DIR
                                      a layer's channel activations and top input patches
  tune lr key=value ... [tune.num_training=N tune.min_lr=X tune.max_lr=Y tune.output=DIR]
                                      learning-rate finder: suggestion, override, lr_find.png
  data convert data=NAME [data.root=...] output=DIR [shard_size=64MB|N]
                                      a dataset's splits as LitData shards (data=shards)
  data check data=NAME [data.root=...] [format=json]
                                      counts, unreadable files, annotation errors, duplicates
  list backbones|necks|heads|tasks|datasets|plugins [PATTERN] [plugins=[FILE.py,...]]
  summary BACKBONE [INPUT_SIZE]       per-layer output shapes and parameters
"""


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in HYDRA_COMMANDS:
        module = importlib.import_module(f"cvtasks.cli.{HYDRA_COMMANDS[command]}")
        sys.argv = [sys.argv[0], *rest]
        module.main()
        return 0
    if command == "tune":
        from cvtasks.cli.tune import main as tune_main

        return tune_main(rest)
    if command == "data" and rest and rest[0] in DATA_COMMANDS:
        module = importlib.import_module(f"cvtasks.cli.{DATA_COMMANDS[rest[0]]}")
        return int(module.main(rest[1:]))
    if command == "list" and rest:
        from cvtasks.cli.listing import list_command

        try:
            print("\n".join(list_command(rest)))
        except (KeyError, ValueError) as err:
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
