"""Convolution → normalization → activation, with "same" padding that may be asymmetric.

:class:`ConvNormAct` holds three submodules, ``conv`` (``nn.Conv2d``), ``bn`` (the norm, or
``nn.Identity``) and ``act`` (or ``nn.Identity``), plus ``pad`` (``nn.Identity`` unless the padding
is asymmetric). The names are those of torchvision's GoogLeNet/Inception ``BasicConv2d``
(``conv``, ``bn``) and of timm's ``ConvNormAct``, so those checkpoints load without renaming;
torchvision's ``Conv2dNormActivation`` is an ``nn.Sequential`` (``0`` conv, ``1`` norm) and
:func:`remap_conv_norm_act_keys` renames its keys.

Padding (seed 003, SAS notes, "User-Defined Padding"):

* ``"same"`` (default): ``d·(k - 1)`` zeros in total per axis, ``total // 2`` before and the rest
  after, so an odd total puts the extra zero on the right/bottom: a 1x4 filter pads one zero on
  the left and two on the right (SAS notes, on CPU), a 1x2 filter none and one (on GPU). Symmetric
  totals go to ``nn.Conv2d(padding=...)``; odd ones to an explicit ``nn.ZeroPad2d`` in ``pad``
  (cuDNN has no asymmetric padding, SAS notes). The padding does not depend on the input
  size, so shapes stay static under ``torch.compile`` and the output is ``ceil(size / stride)``
  at every stride. For odd kernels this is torchvision's ``(k - 1) // 2 · d`` on both sides.
* ``"tf_same"``: TensorFlow's ``SAME``. At stride 1 it equals ``"same"``; at stride > 1 it trims
  the total to ``(ceil(n / s) - 1)·s + d·(k - 1) + 1 - n``, which depends on the input size ``n``,
  so ``pad`` computes it in ``forward`` from the (static or symbolic) shape with
  :func:`cvtasks.ops.same_padding`. Same output size as ``"same"``, shifted sampling grid:
  use it only for weights trained in TensorFlow.
* ``"valid"``: none. An int or ``(h, w)``: symmetric. ``(left, right, top, bottom)``: explicit.
* ``None``: torchvision's rule ``(k - 1) // 2 · d`` on both sides (smaller output for even
  kernels).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvtasks.layers.activations import make_activation
from cvtasks.layers.fuse import can_fuse, fuse_conv_bn
from cvtasks.layers.norm import NormLayer, make_norm
from cvtasks.ops.sizes import same_padding

Size2 = int | tuple[int, int]
Padding = str | int | tuple[int, int] | tuple[int, int, int, int] | None
ActLayer = str | type[nn.Module] | nn.Module | None


def _pair(value: Size2, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be an int >= 1 or a pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


class SamePad2d(nn.Module):
    """TensorFlow ``SAME`` zero padding, computed from the input size in ``forward``.

    Args:
        kernel_size: window ``(kh, kw)``.
        stride: step ``(sh, sw)``.
        dilation: tap spacing ``(dh, dw)``.
    """

    def __init__(
        self, kernel_size: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad ``x`` so that a strided window gives ``ceil(size / stride)`` outputs per axis."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        top, bottom = same_padding(x.shape[-2], kh, sh, dh)
        left, right = same_padding(x.shape[-1], kw, sw, dw)
        return F.pad(x, (left, right, top, bottom))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}"


def resolve_padding(
    padding: Padding, kernel_size: Size2, stride: Size2 = 1, dilation: Size2 = 1
) -> tuple[nn.Module, tuple[int, int]]:
    """Split a padding spec into an explicit pad module and the conv's symmetric padding.

    Args:
        padding: ``"same"``, ``"tf_same"``, ``"valid"``, ``None``, an int, ``(h, w)`` or
            ``(left, right, top, bottom)`` (see the module docstring).
        kernel_size: window size.
        stride: step.
        dilation: tap spacing.

    Returns:
        ``(pad, conv_padding)``: ``pad`` is ``nn.Identity``, an ``nn.ZeroPad2d`` or a
        :class:`SamePad2d`; ``conv_padding`` is what ``nn.Conv2d(padding=...)`` gets.

    Raises:
        ValueError: an unknown string or a malformed tuple.
    """
    k, s = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
    d = _pair(dilation, "dilation")
    if padding == "tf_same" and s != (1, 1):
        return SamePad2d(k, s, d), (0, 0)
    if padding in ("same", "tf_same"):
        totals = [di * (ki - 1) for ki, di in zip(k, d)]
        (top, bottom), (left, right) = ((t // 2, t - t // 2) for t in totals)
        if top == bottom and left == right:
            return nn.Identity(), (top, left)
        return nn.ZeroPad2d((left, right, top, bottom)), (0, 0)
    if padding == "valid":
        return nn.Identity(), (0, 0)
    if padding is None:
        return nn.Identity(), ((k[0] - 1) // 2 * d[0], (k[1] - 1) // 2 * d[1])
    if isinstance(padding, int) and padding >= 0:
        return nn.Identity(), (padding, padding)
    if isinstance(padding, (tuple, list)) and all(isinstance(p, int) and p >= 0 for p in padding):
        if len(padding) == 2:
            return nn.Identity(), (padding[0], padding[1])
        if len(padding) == 4:
            left, right, top, bottom = padding
            if left == right and top == bottom:
                return nn.Identity(), (top, left)
            return nn.ZeroPad2d((left, right, top, bottom)), (0, 0)
    raise ValueError(
        f"padding must be 'same', 'tf_same', 'valid', None, an int >= 0, (h, w) or "
        f"(left, right, top, bottom), got {padding!r}"
    )


class ConvNormAct(nn.Module):
    """``act(bn(conv(pad(x))))``: the convolution layer every cvtasks backbone is built from.

    Args:
        in_chs: input channels.
        out_chs: output channels.
        kernel_size: window, an int or ``(kh, kw)``.
        stride: step, an int or ``(sh, sw)``.
        padding: ``"same"`` (default), ``"tf_same"``, ``"valid"``, ``None``, an int, ``(h, w)``
            or ``(left, right, top, bottom)``; see the module docstring.
        dilation: tap spacing, an int or ``(dh, dw)``.
        groups: channel groups (``in_chs`` for a depthwise convolution).
        bias: conv bias; ``None`` gives one only when there is no norm.
        norm_layer: ``"batchnorm"``, another name of :data:`cvtasks.layers.norm.NORMS`, a class
            or callable ``norm(out_chs, **norm_kwargs)``, or ``None``.
        act_layer: an activation name, class or module (:func:`make_activation`), or ``None``.
        norm_kwargs: keywords for the norm (``{"eps": 1e-3}`` for torchvision's GoogLeNet).

    Attributes:
        pad: ``nn.Identity``, ``nn.ZeroPad2d`` (asymmetric "same") or :class:`SamePad2d`.
        conv: the ``nn.Conv2d``.
        bn: the norm, ``nn.Identity`` without one (or after :meth:`fuse`).
        act: the activation, or ``nn.Identity``.
        out_chs: output channels.
    """

    fuse_pairs = (("conv", "bn"),)

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: Size2 = 3,
        stride: Size2 = 1,
        padding: Padding = "same",
        dilation: Size2 = 1,
        groups: int = 1,
        bias: bool | None = None,
        norm_layer: NormLayer = "batchnorm",
        act_layer: ActLayer = "relu",
        norm_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.pad, conv_padding = resolve_padding(padding, kernel_size, stride, dilation)
        self.conv = nn.Conv2d(
            in_chs,
            out_chs,
            kernel_size,
            stride=stride,
            padding=conv_padding,
            dilation=dilation,
            groups=groups,
            bias=norm_layer is None if bias is None else bias,
        )
        self.bn = make_norm(norm_layer, out_chs, norm_kwargs)
        self.act = nn.Identity() if act_layer is None else make_activation(act_layer)
        self.out_chs = out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_chs, H, W] -> [B, out_chs, ceil(H / sh), ceil(W / sw)]`` for "same"."""
        return self.act(self.bn(self.conv(self.pad(x))))

    def fuse(self) -> ConvNormAct:
        """Fold a BatchNorm ``bn`` into ``conv`` in place (eval numerics); return ``self``.

        Afterwards ``bn`` is ``nn.Identity`` and ``conv`` has a bias; outputs equal the eval-mode
        outputs from before. A norm that cannot be folded (GroupNorm, ...) stays.
        """
        if can_fuse(self.conv, self.bn):
            self.conv = fuse_conv_bn(self.conv, self.bn)
            self.bn = nn.Identity()
        return self


def remap_conv_norm_act_keys(
    state: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Rename torchvision ``Conv2dNormActivation`` keys onto ``model``'s ``ConvNormAct`` modules.

    torchvision's layer is an ``nn.Sequential``: ``<path>.0.weight`` (conv),
    ``<path>.1.weight|bias|running_mean|...`` (norm). For every :class:`ConvNormAct` at ``<path>``
    in ``model`` these become ``<path>.conv.*`` and ``<path>.bn.*``; other keys pass through.
    Usable as (or inside) a ``key_map`` of :func:`cvtasks.backbones.weights.load_pretrained`.

    Args:
        state: checkpoint tensors by key, already laid out like ``model`` otherwise.
        model: the model receiving the weights.

    Returns:
        The renamed state dict.
    """
    parents = {name for name, m in model.named_modules() if isinstance(m, ConvNormAct)}
    rename = {"0": "conv", "1": "bn"}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        path, _, leaf = key.rpartition(".")
        parent, _, index = path.rpartition(".")
        if index in rename and parent in parents:
            key = f"{parent}.{rename[index]}.{leaf}" if parent else f"{rename[index]}.{leaf}"
        out[key] = value
    return out
