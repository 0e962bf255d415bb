"""``python -m cvtasks features backbone=NAME|ckpt=PATH image=FILE [layer=NAME] output=DIR``.

Seed 001 Fig 6.12: what the channels of a layer respond to. Writes into ``output``:

* ``activations.png``: every channel of ``layer`` for ``image`` (the first ``max_channels``,
  plus the chosen ``channels``), each scaled to its own range;
* ``patches.png``: for each chosen channel, the input patches (receptive fields) of its
  strongest activations over ``images`` (a folder), or over ``image`` alone;
* ``patches.json``: those patches as records (file, activation, position, box in pixels of the
  network input); ``input.png``: the image as the network sees it (resized).

The network is a backbone config (``backbone=resnet18 backbone.pretrained=FILE``; random weights
without ``pretrained``) or the backbone of a training checkpoint (``ckpt=...``, with its image
size and normalization). See :mod:`cvtasks.viz.feature_maps` for the method.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from cvtasks.cli.common import load_trained, run_command, save_picture
from cvtasks.cli.inputs import find_inputs
from cvtasks.cli.outputs import refuse_output_inside_input, refuse_overwriting_inputs
from cvtasks.config import CONFIG_DIR, setup_hydra
from cvtasks.data.images import BadImageError, read_image
from cvtasks.data.transforms import build_pipeline
from cvtasks.registry import BACKBONES
from cvtasks.viz.feature_maps import activation_grid, layer_output, patch_grid, top_patches
from cvtasks.viz.pairs import to_picture

log = logging.getLogger(__name__)


def load_network(cfg: DictConfig) -> tuple[nn.Module, Any, list[float], list[float]]:
    """The backbone in eval mode, its input size and the normalization mean and std.

    Raises:
        ValueError: neither ``ckpt`` nor ``backbone`` is given, or both are.
    """
    if bool(cfg.get("ckpt")) == bool(cfg.get("backbone")):
        raise ValueError(
            "give the network as backbone=NAME (e.g. backbone=resnet18, optionally with "
            "backbone.pretrained=FILE) or as ckpt=PATH (a train.py checkpoint), not both"
        )
    if cfg.get("ckpt"):
        trained = load_trained(cfg.ckpt)
        size = cfg.image_size or trained.image_size
        return trained.task.backbone.eval(), size, trained.mean, trained.std
    spec = OmegaConf.to_container(cfg.backbone, resolve=True)
    if spec.get("in_chans") == "auto":  # the pictures are read as RGB, or gray with one mean
        spec["in_chans"] = len(cfg.mean)
    net = BACKBONES.build(spec.pop("name"), **spec).eval()
    size = cfg.image_size or int(getattr(net, "default_input_size", 224))
    return net, size, list(cfg.mean), list(cfg.std)


def read_inputs(paths: list[Path], transform: Any) -> tuple[torch.Tensor, list[Path]]:
    """Normalized images ``[N, 3, H, W]`` of the readable ``paths``, and those paths."""
    tensors, kept = [], []
    for path in paths:
        try:
            tensors.append(transform(image=read_image(path))["image"])
            kept.append(path)
        except BadImageError as err:
            log.warning("skipped %s: %s", path, err)
    if not tensors:
        raise ValueError(f"none of {len(paths)} files could be read as an image")
    return torch.stack(tensors), kept


def choose_channels(fmap: torch.Tensor, channels: Any, top: int) -> list[int]:
    """The requested channels (checked), else the ``top`` with the largest activation."""
    count = fmap.shape[0]
    if channels is None:
        return fmap.flatten(1).amax(1).topk(min(top, count)).indices.tolist()
    chosen = [int(c) for c in ([channels] if isinstance(channels, int) else channels)]
    bad = [c for c in chosen if not 0 <= c < count]
    if bad:
        raise ValueError(f"channels={bad} do not exist: the layer has channels 0..{count - 1}")
    return chosen


def features(cfg: DictConfig) -> dict[str, Any]:
    """Run the ``features`` command; returns what was written."""
    output = Path(cfg.output)
    written = ("activations.png", "patches.png", "input.png", "patches.json")
    refuse_overwriting_inputs([output / name for name in written], {"image": cfg.image})
    if cfg.images:
        refuse_output_inside_input(output, "images", str(cfg.images))
    net, size, mean, std = load_network(cfg)
    transform = build_pipeline(None, size, mean, std, train=False)
    layer = cfg.layer or net.feature_info[-1]["module"]
    image, _ = read_inputs([Path(cfg.image)], transform)
    with torch.no_grad():
        fmap = layer_output(net, layer, image)[0]
    channels = choose_channels(fmap, cfg.channels, cfg.top)
    paths = [Path(cfg.image)]
    searched = image
    if cfg.images:
        found, _skipped = find_inputs(str(cfg.images))
        searched, paths = read_inputs(found, transform)
    ranked = top_patches(net, layer, searched, channels, k=cfg.patches)

    shown = sorted(set(range(min(cfg.max_channels, fmap.shape[0]))) | set(channels))
    save_picture(activation_grid(fmap, shown), output / "activations.png")
    pictures = [to_picture(x, mean, std) for x in searched]
    save_picture(patch_grid(pictures, ranked), output / "patches.png")
    save_picture(to_picture(image[0], mean, std), output / "input.png")
    records = [
        {**vars(p), "file": str(paths[p.image]), "rank": rank, "layer": layer}
        for patches in ranked.values()
        for rank, p in enumerate(patches)
    ]
    (output / "patches.json").write_text(json.dumps(records, indent=1))
    print(
        f"layer {layer}: {fmap.shape[0]} channels of {fmap.shape[1]}x{fmap.shape[2]}; patches of "
        f"channels {channels} over {len(paths)} image(s); written to {output.resolve()}"
    )
    return {"layer": layer, "channels": channels, "shape": tuple(fmap.shape), "output": output}


@hydra.main(config_path=str(CONFIG_DIR), config_name="features", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    run_command(features, cfg)


def main() -> None:
    """Console entry point (``python -m cvtasks features key=value ...``)."""
    setup_hydra(sys.argv[1:])  # backbone=<a plugin's net> with plugins=[...] on the command line
    _hydra_main()
