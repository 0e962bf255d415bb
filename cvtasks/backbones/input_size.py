"""The input size each backbone is defined for, read from its registration without building it.

A backbone builder declares its native (training) resolution with :func:`input_size`::

    @BACKBONES.register("efficientnet_b1")
    @input_size(240)
    def efficientnet_b1(**kwargs): ...

:func:`native_input_size` reads that declaration by registry name: LeNet-5 32, AlexNet 224
(``alexnet_seed`` 227), EfficientNet-B0..B7 their compound-scaled resolutions, ``timm/<model>``
timm's ``pretrained_cfg["input_size"]`` (local, no download), and :data:`DEFAULT_INPUT_SIZE` for a
builder that declares nothing. Data configs use it through the ``native_input_size`` resolver
(:mod:`cvtasks.config`), so a folder of 28x28 images trained with LeNet-5 is read at 32x32, not
upsampled to 224x224.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from cvtasks.backbones.base import Backbone
from cvtasks.backbones.timm_adapter import PREFIX, pretrained_input_size
from cvtasks.registry import BACKBONES

F = TypeVar("F", bound=Callable[..., Any])

#: the size of a backbone whose builder declares none (ImageNet's usual 224x224)
DEFAULT_INPUT_SIZE = Backbone.default_input_size

InputSize = int | list[int]  # square side, or [height, width]


def input_size(size: int) -> Callable[[F], F]:
    """Declare the square input a backbone builder is defined for, as ``default_input_size``.

    Args:
        size: the side in pixels; the built network's ``default_input_size`` should equal it.

    Returns:
        A decorator that sets ``default_input_size`` on the builder and returns it unchanged.

    Raises:
        ValueError: ``size`` is not a positive int.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"input_size must be a positive int (pixels), got {size!r}")

    def declare(builder: F) -> F:
        builder.default_input_size = size  # type: ignore[attr-defined]
        return builder

    return declare


def native_input_size(name: str, multiple: int = 1) -> InputSize:
    """The input size backbone ``name`` is defined for, without building it.

    Args:
        name: a registry name (``"lenet5"``, ``"efficientnet_b3"``, ``"timm/resnet10t"``).
        multiple: round each side to the nearest multiple of this (halves up, at least one
            multiple), for heads that need sides divisible by the deepest feature reduction:
            EfficientNet-B1's 240 becomes 256 with ``multiple=32``.

    Returns:
        The side of a square input, or ``[height, width]`` for a timm model defined for a
        non-square one; :data:`DEFAULT_INPUT_SIZE` when the builder declares nothing.

    Raises:
        KeyError: ``name`` is not registered (the registry's message, with close matches).
        ValueError: ``multiple`` is not a positive int.
    """
    if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 1:
        raise ValueError(f"multiple must be a positive int, got {multiple!r}")
    builder = BACKBONES.get(name)  # unknown names fail here; timm names are checked below
    if name.startswith(PREFIX):
        height, width = pretrained_input_size(name[len(PREFIX) :])
    else:
        height = width = int(getattr(builder, "default_input_size", DEFAULT_INPUT_SIZE))
    height, width = (
        max(1, (2 * side + multiple) // (2 * multiple)) * multiple for side in (height, width)
    )
    return height if height == width else [height, width]
