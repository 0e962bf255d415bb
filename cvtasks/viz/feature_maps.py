"""Feature maps: a layer's channel activations, and the input patches that excite a channel most.

Seed 001 Fig 6.12 (§6.4, "Understanding Inner Layers and Derived Features", after Zeiler & Fergus)
shows what channels of a trained network respond to: for a channel ``j`` of a layer, every
validation image is run through the network, its strongest activation ``η = max_{i,k} a(j)_{i,k}``
and that neuron's position are kept, the nine images with the largest ``η`` are chosen, and "the
receptive field part of the input image" of each maximal neuron is shown. :func:`top_patches` does
exactly that; given a single image it ranks that image's positions instead, so one picture is enough
to look at.

The receptive field of a neuron is found by differentiation: the input pixels with a non-zero
gradient of that activation are those that reach it, through whatever padding, strides,
pooling and skip connections the network has (:func:`receptive_box`). It is the region that
actually excited the neuron, which for a max-pool or a ReLU can be a little smaller than the
architecture's theoretical field.

:func:`activation_grid` draws every channel of one layer for one image, each scaled to its own
range (a channel that never fires is black), in a square-ish grid labelled by channel index.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

Box = tuple[int, int, int, int]


class _StopAtLayerError(Exception):
    """Raised by the layer hook to stop the forward pass once the layer's output exists."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__("captured")
        self.output = output


def find_layer(model: nn.Module, layer: str) -> nn.Module:
    """The submodule named ``layer`` (a ``named_modules`` name, e.g. ``layer3`` or ``blocks.4``,
    or the end of exactly one such name).

    Raises:
        KeyError: no such module; the message names close matches and the feature stages.
    """
    modules = dict(model.named_modules())
    if layer and layer in modules:
        return modules[layer]
    # a wrapper (the timm adapter) names its stages as the wrapped model does: "layer4" is
    # "model.layer4" here; accept the one module whose name ends so
    inside = [n for n in modules if n.endswith("." + str(layer))]
    if len(inside) == 1:
        return modules[inside[0]]
    close = difflib.get_close_matches(str(layer), [n for n in modules if n], n=5, cutoff=0.4)
    stages = [info["module"] for info in getattr(model, "feature_info", [])]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise KeyError(
        f"no layer {layer!r} in {type(model).__name__}.{hint} Its feature stages are "
        f"{', '.join(stages) or '(none)'}; every layer name is in "
        "`python -m cvtasks summary <backbone>`."
    )


def layer_output(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """The output ``[B, C, h, w]`` of ``layer`` for ``images``; the network stops there.

    Gradients flow (call under ``torch.no_grad()`` when none are needed).

    Raises:
        KeyError: an unknown ``layer``.
        ValueError: the layer's output is not a ``[B, C, h, w]`` tensor.
    """

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        raise _StopAtLayerError(output)  # type: ignore[arg-type]

    handle = find_layer(model, layer).register_forward_hook(hook)
    output: object = None
    try:
        # the stages first; a layer of the classifier (conv_head) is only reached by forward
        for forward in (getattr(model, "forward_features", None), model):
            try:
                if forward is not None:
                    forward(images)
            except _StopAtLayerError as captured:
                output = captured.output
                break
        else:
            raise ValueError(f"layer {layer!r} is not used in the forward pass of the model")
    finally:
        handle.remove()
    if not torch.is_tensor(output) or output.ndim != 4:
        shape = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
        raise ValueError(f"layer {layer!r} gives {shape}, not a [B, C, h, w] feature map")
    return output


def receptive_box(
    model: nn.Module, layer: str, image: torch.Tensor, channel: int, y: int, x: int
) -> Box:
    """The input pixels that reach the neuron ``(channel, y, x)`` of ``layer``.

    Args:
        model: the network (in eval mode, so that BatchNorm mixes no samples).
        layer: the layer's module name.
        image: one normalized image ``[3, H, W]``.
        channel: the channel index.
        y: the row of the neuron in the layer's map.
        x: its column.

    Returns:
        ``(x0, y0, x1, y1)`` in pixels of ``image``, end-exclusive: the bounding box of the
        pixels where the activation's gradient is non-zero (the whole image when none is, as
        for a neuron that a ReLU has switched off).
    """
    pixels = image.detach()[None].clone().requires_grad_(True)
    fmap = layer_output(model, layer, pixels)
    (grad,) = torch.autograd.grad(fmap[0, channel, y, x], pixels, allow_unused=True)
    height, width = image.shape[-2:]
    reach = torch.zeros(height, width, dtype=torch.bool) if grad is None else grad[0].ne(0).any(0)
    if not reach.any():
        return (0, 0, width, height)
    rows, cols = reach.any(1).nonzero()[:, 0], reach.any(0).nonzero()[:, 0]
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


@dataclass
class Patch:
    """One of a channel's strongest activations and the input region behind it."""

    channel: int
    value: float
    image: int  # index into the images searched
    position: tuple[int, int]  # (row, column) in the layer's map
    box: Box  # (x0, y0, x1, y1) in pixels of the network input


def top_patches(
    model: nn.Module,
    layer: str,
    images: torch.Tensor,
    channels: Sequence[int],
    k: int = 9,
    batch_size: int = 16,
) -> dict[int, list[Patch]]:
    """The ``k`` strongest activations of each channel over ``images``, with receptive fields.

    With several images each image contributes its maximal neuron ``η`` (seed 001 Fig 6.12)
    and the ``k`` images with the largest ``η`` win; with one image its ``k`` largest positions.

    Args:
        model: the network, in eval mode.
        layer: the layer's module name.
        images: normalized images ``[N, 3, H, W]`` of one size.
        channels: the channels to rank.
        k: patches per channel.
        batch_size: images per forward pass while searching.

    Returns:
        ``{channel: [Patch, ...]}`` strongest first.
    """
    per_image = k if len(images) == 1 else 1
    candidates: dict[int, list[tuple[float, int, int]]] = {c: [] for c in channels}
    width = 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            fmap = layer_output(model, layer, images[start : start + batch_size])
            width = fmap.shape[-1]
            flat = fmap[:, list(channels)].flatten(2).float()  # [b, c, h*w]
            values, where = flat.topk(min(per_image, flat.shape[-1]), dim=-1)
            for i, channel in enumerate(channels):
                for b in range(flat.shape[0]):
                    candidates[channel] += [
                        (float(v), start + b, int(p)) for v, p in zip(values[b, i], where[b, i])
                    ]
    ranked: dict[int, list[Patch]] = {}
    for channel, found in candidates.items():
        best = sorted(found, key=lambda c: -c[0])[:k]
        ranked[channel] = [
            Patch(
                channel,
                value,
                index,
                (pos // width, pos % width),
                receptive_box(model, layer, images[index], channel, pos // width, pos % width),
            )
            for value, index, pos in best
        ]
    return ranked


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def activation_grid(
    fmap: torch.Tensor, channels: Sequence[int] | None = None, cell: int = 64
) -> Image.Image:
    """Every (or each chosen) channel of one image's map ``[C, h, w]`` as a grey tile.

    Each tile is scaled to its own channel's range, enlarged to ``cell`` pixels (nearest
    neighbour) and labelled with the channel index; tiles fill a square-ish grid.
    """
    chosen = list(range(fmap.shape[0])) if channels is None else list(channels)
    maps = fmap.detach().float().cpu()[chosen]
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = (maps.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-12)
    tiles = ((maps - low) / span * 255).round().byte().numpy()
    columns = math.ceil(math.sqrt(len(chosen)))
    rows = math.ceil(len(chosen) / columns)
    scale = max(1, cell // max(fmap.shape[-2:]))
    tile_h, tile_w = fmap.shape[-2] * scale, fmap.shape[-1] * scale
    grid = Image.new("RGB", (columns * (tile_w + 2), rows * (tile_h + 2)), "white")
    draw, font = ImageDraw.Draw(grid), _font(max(8, min(12, tile_h // 4)))
    for n, (channel, tile) in enumerate(zip(chosen, tiles)):
        left, top = (n % columns) * (tile_w + 2) + 1, (n // columns) * (tile_h + 2) + 1
        picture = Image.fromarray(np.kron(tile, np.ones((scale, scale), np.uint8))).convert("RGB")
        grid.paste(picture, (left, top))
        draw.text((left + 2, top + 1), str(channel), fill=(255, 80, 80), font=font)
    return grid


def patch_grid(
    pictures: Sequence[Image.Image], ranked: dict[int, list[Patch]], size: int = 64
) -> Image.Image:
    """One row per channel: its label, then each patch cropped from its picture at ``size`` px.

    Args:
        pictures: the searched images as pictures of the network input's size.
        ranked: :func:`top_patches`' result.
        size: side of every patch in the grid.
    """
    label_w = 56
    columns = max((len(p) for p in ranked.values()), default=0)
    grid = Image.new("RGB", (label_w + columns * (size + 2), len(ranked) * (size + 2)), "white")
    draw, font = ImageDraw.Draw(grid), _font(12)
    for row, (channel, patches) in enumerate(ranked.items()):
        top = row * (size + 2) + 1
        draw.text((4, top + size // 2 - 6), f"ch {channel}", fill="black", font=font)
        for col, patch in enumerate(patches):
            crop = (
                pictures[patch.image].crop(patch.box).resize((size, size), Image.Resampling.NEAREST)
            )
            grid.paste(crop, (label_w + col * (size + 2), top))
    return grid
