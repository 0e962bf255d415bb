"""Building a backbone variant with its weights: local checkpoint files, other layouts' keys.

:func:`build_with_weights` is what every family's registered builder calls (timm's
``build_model_with_cfg``): it constructs the network, records the registered name as
``model.variant`` and, given ``pretrained``, loads a local weights file with
:func:`load_pretrained`, through the family's key map for torchvision/timm layouts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import torch
from torch import nn

from cvtasks.backbones.named_weights import fetch_torchvision, is_torchvision_name
from cvtasks.io import load_tensors

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
KeyMap = Callable[[StateDict, nn.Module], StateDict] | Mapping[str, str | None]

_SHOWN = 5  # how many offending keys an error message lists


B = TypeVar("B", bound=nn.Module)


def build_with_weights(
    model_cls: Callable[..., B],
    variant: str,
    pretrained: str | os.PathLike[str] | None = None,
    key_map: KeyMap | None = None,
    **kwargs: Any,
) -> B:
    """Build a backbone variant and load its weights: what every family's builder calls.

    Args:
        model_cls: the family's class (or any callable building the network).
        variant: the registered name, kept as ``model.variant``.
        pretrained: a local weights file (see :func:`load_pretrained`), or ``"torchvision"`` /
            ``"torchvision:ENTRY"`` for torchvision's weights of the architecture named
            ``variant`` (cached in ``$TORCH_HOME``, downloaded once; the entry's
            :func:`~cvtasks.backbones.named_weights.pretrained_cfg` is kept as
            ``model.pretrained_cfg``); ``None`` keeps the fresh initialisation.
        key_map: how the family maps torchvision/timm checkpoint keys onto its own.
        **kwargs: the constructor's keywords (the variant's table row and the user's).

    Returns:
        The network, initialised, with the weights of ``pretrained`` when given.

    Raises:
        ValueError: ``pretrained=true`` (only ``timm/`` backbones take it), no torchvision weights
            by that name, or weights that do not fit (see :func:`load_pretrained`).
        ~cvtasks.backbones.named_weights.WeightsDownloadError: named weights neither cached nor
            downloadable.
    """
    if pretrained is True:
        raise ValueError(
            f"backbone.pretrained=true downloads weights for timm/ backbones only; for {variant} "
            "use backbone.pretrained=torchvision (or torchvision:ENTRY) or a local weights file"
        )
    cfg = None
    if is_torchvision_name(pretrained):
        pretrained, cfg = fetch_torchvision(variant, str(pretrained))
    model = model_cls(**kwargs)
    model.variant = variant
    if pretrained:
        load_pretrained(model, pretrained, key_map=key_map)
    if cfg is not None:
        model.pretrained_cfg = cfg
        log.info("%s: loaded %s from %s", variant, cfg["weights"], pretrained)
    return model


class LoadedKeys(NamedTuple):
    """What :func:`load_pretrained` could not match (empty lists after a strict load)."""

    missing: list[str]
    unexpected: list[str]
    skipped_classifier: list[str]


def load_pretrained(
    model: nn.Module,
    path: str | os.PathLike[str],
    key_map: KeyMap | None = None,
    strict: bool = True,
) -> LoadedKeys:
    """Load a local weights file (``.pth``, ``.pt`` or ``.safetensors``) into ``model``.

    The file is read by :func:`cvtasks.io.load_tensors` (safetensors, or ``torch.load`` with
    ``weights_only=True``: a file that needs arbitrary unpickling is refused). A dict holding the
    weights under ``"state_dict"`` or ``"model"`` is unwrapped and a ``"module."`` prefix on every
    key (DistributedDataParallel) is removed, as timm does.

    The classifier is treated apart. Weights of the modules in ``model.classifier_modules`` whose
    shape differs from the model's, which the model does not have, or which hold NaN (a
    features-only checkpoint's), are skipped, and classifier weights absent from the file keep
    their fresh initialisation. This is what fine-tuning needs:
    a checkpoint trained on 1000 classes initialises every stage of a 5-class model (or of a
    features-only model with ``num_classes=0``), and only the classifier, whose size depends on
    ``num_classes``, starts anew. The stem is adapted as timm adapts it: when the weight named
    by ``model.stem_weight`` was made for another number of input channels (a 3-channel
    checkpoint for an ``in_chans=1`` model), :func:`timm.models.adapt_input_conv` turns it into
    one for the model's: summed over the input channels for ``in_chans=1`` (a gray image then
    gives the logits its RGB copy gives), else the checkpoint's channels repeated in turn and
    scaled by ``checkpoint channels / in_chans``; a warning says so. Every other key must match
    by name and shape.

    Args:
        model: the backbone to fill, in place.
        path: the weights file.
        key_map: how checkpoint keys become model keys. A mapping renames key prefixes (the
            longest matching prefix wins; ``None`` as a value drops the keys), e.g.
            ``{"backbone.": ""}`` to take a task checkpoint's backbone. A callable
            ``key_map(state_dict, model) -> state_dict`` may rename, reshape or drop freely (timm's
            ``checkpoint_filter_fn``); families use it so torchvision/timm checkpoints of the same
            architecture load.
        strict: raise when keys are missing or unexpected; with ``False`` load what fits and
            return what did not.

    Returns:
        The keys that were missing, unexpected, and the classifier keys skipped.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        TypeError: ``key_map`` is neither a mapping nor a callable.
        ValueError: an unsafe or malformed file, a shape mismatch outside the classifier, or (with
            ``strict``) missing or unexpected keys; the message lists a few of each.
    """
    state = _unwrap(load_tensors(path))
    if key_map is None:
        pass
    elif isinstance(key_map, Mapping):
        state = _rename_prefixes(state, key_map)
    elif callable(key_map):
        state = key_map(state, model)
    else:
        raise TypeError(f"key_map must be a mapping, a callable or None, got {type(key_map)}")

    own = model.state_dict()
    state = _adapt_stem(state, own, getattr(model, "stem_weight", None), path)
    heads = tuple(getattr(model, "classifier_modules", ()))

    def in_classifier(key: str) -> bool:
        return any(key == h or key.startswith(h + ".") for h in heads)

    # torchvision's features-only entries (vgg16 IMAGENET1K_FEATURES) fill the classifier with NaN
    skipped = [
        k
        for k, v in state.items()
        if in_classifier(k) and (k not in own or own[k].shape != v.shape or _has_nan(v))
    ]
    state = {k: v for k, v in state.items() if k not in skipped}
    if skipped:
        log.info(
            "%s: skipped classifier weights %s (num_classes differs, or no values)", path, skipped
        )
    wrong_shape = [
        f"{k} (file {tuple(v.shape)}, model {tuple(own[k].shape)})"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if wrong_shape:
        raise ValueError(
            f"pretrained weights {os.fspath(path)} do not fit {type(model).__name__}: "
            f"{len(wrong_shape)} tensors have another shape, e.g. {_few(wrong_shape)}. The "
            "checkpoint is for another variant (depth, width, in_chans) of the architecture."
        )
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not in_classifier(k)]
    unexpected = list(result.unexpected_keys)
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys, e.g. {_few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, e.g. {_few(unexpected)}")
        raise ValueError(
            f"pretrained weights {os.fspath(path)} do not fit {type(model).__name__}: "
            f"{'; '.join(parts)}. Is it a checkpoint of this architecture? Rename keys with "
            "key_map={'old.prefix.': 'new.prefix.'}, or load what fits with strict=False."
        )
    return LoadedKeys(missing, unexpected, skipped)


def _adapt_stem(
    state: StateDict, own: StateDict, key: str | None, path: str | os.PathLike[str]
) -> StateDict:
    """Adapt the checkpoint's stem weight to the model's input channels, as timm does."""
    theirs = state.get(key) if key else None
    if theirs is None or key not in own or theirs.ndim != 4:
        return state
    mine = own[key]
    same_filters = theirs.shape[0] == mine.shape[0] and theirs.shape[2:] == mine.shape[2:]
    if theirs.shape[1] == mine.shape[1] or not same_filters:
        return state  # nothing to adapt, or another layer: the shape check reports it
    from timm.models import adapt_input_conv  # ~1.5 s: paid only when a stem is adapted

    # timm releases before base_chans know RGB checkpoints only, which need no base_chans
    base = {} if theirs.shape[1] == 3 else {"base_chans": theirs.shape[1]}
    adapted = adapt_input_conv(mine.shape[1], theirs, **base)
    log.warning(
        "%s: pretrained %s has %d input channels, the model %d (in_chans): the stem is adapted "
        "from %d to %d channels as timm does (%s); every other layer is loaded as it is",
        os.fspath(path),
        key,
        theirs.shape[1],
        mine.shape[1],
        theirs.shape[1],
        mine.shape[1],
        "summed over them" if mine.shape[1] == 1 else "repeated in turn and rescaled",
    )
    return {**state, key: adapted}


def _unwrap(state: dict[str, Any]) -> StateDict:
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), Mapping):
            state = dict(state[key])
            break
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"a weights file must map names to tensors; these are not tensors: {_few(not_tensors)}"
        )
    return state


def _rename_prefixes(state: StateDict, key_map: Mapping[str, str | None]) -> StateDict:
    prefixes = sorted(key_map, key=len, reverse=True)  # the longest prefix wins
    out: StateDict = {}
    for key, value in state.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is None:
            out[key] = value
        elif key_map[prefix] is not None:
            out[key_map[prefix] + key[len(prefix) :]] = value
    return out


def rename_modules(state: StateDict, names: Mapping[str, str]) -> StateDict:
    """Rename the module part of each key (all but the last dotted name) by ``names``.

    For checkpoints of another library's layout, e.g. ``{"features.0": "stages.0.conv1.conv"}``
    turns ``features.0.weight`` into ``stages.0.conv1.conv.weight``; keys of modules not in
    ``names`` keep their name.
    """
    renamed: StateDict = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        renamed[f"{names.get(module, module)}.{leaf}"] = value
    return renamed


def _has_nan(tensor: torch.Tensor) -> bool:
    # a meta tensor (a checkpoint read for its shapes only) holds no values to test
    return tensor.is_floating_point() and not tensor.is_meta and bool(torch.isnan(tensor).any())


def _few(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (", ..." if len(keys) > _SHOWN else "")
