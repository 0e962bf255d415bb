"""What every backbone shares: the feature contract, the default classifier, pretrained loading.

A backbone is an ``nn.Module`` with

* ``forward_features(x) -> list[Tensor]``: every stage's feature map, shallow to deep;
* ``feature_info``: one ``dict(num_chs=int, reduction=int, module=str)`` per stage;
* ``num_features``: channels of the last stage;
* ``forward(x)``: class logits when built with ``num_classes > 0``, else the pooled last stage.

:func:`check_feature_info` and :func:`validate_backbone` check that contract in one place (the
way timm's ``_features.py`` does); :class:`Backbone` gives families the classifier path so that
they only build stages; :func:`load_pretrained` reads a local weights file into any backbone.
"""

from __future__ import annotations

import logging
import os
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from cvtasks.io import load_tensors

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
KeyMap = Callable[[StateDict, nn.Module], StateDict] | Mapping[str, str | None]

_SHOWN = 5  # how many offending keys an error message lists


# -- the contract -----------------------------------------------------------------------------
def check_feature_info(feature_info: Sequence[Mapping[str, Any]]) -> None:
    """Check a backbone's ``feature_info`` against the contract.

    Each stage needs ``num_chs`` (int > 0), ``reduction`` (int >= 1, never smaller than the
    stage before: deeper stages are not finer) and ``module`` (a string naming the module whose
    output the stage is). Extra keys (timm's ``index``, ``stage``) are allowed.

    Args:
        feature_info: one mapping per stage, shallow to deep.

    Raises:
        ValueError: the first violation, naming the stage index and the offending value.
    """
    if isinstance(feature_info, (str, bytes, Mapping)) or not isinstance(feature_info, Sequence):
        raise ValueError(
            "feature_info must be a list of dicts (one per stage), "
            f"got {type(feature_info).__name__}"
        )
    if not feature_info:
        raise ValueError("feature_info is empty: a backbone needs at least one stage")
    previous = 1
    for i, info in enumerate(feature_info):
        where = f"feature_info[{i}] = {info!r}"
        if not isinstance(info, Mapping):
            raise ValueError(f"{where} must be a dict with num_chs, reduction and module")
        missing = [k for k in ("num_chs", "reduction", "module") if k not in info]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        num_chs, reduction, module = info["num_chs"], info["reduction"], info["module"]
        if not _is_int(num_chs) or num_chs <= 0:
            raise ValueError(f"{where}: num_chs must be an int > 0, got {num_chs!r}")
        if not _is_int(reduction) or reduction < 1:
            raise ValueError(f"{where}: reduction must be an int >= 1, got {reduction!r}")
        if reduction < previous:
            raise ValueError(
                f"{where}: reduction {reduction} is smaller than the previous stage's {previous}; "
                "stages must be listed shallow to deep with non-decreasing reduction"
            )
        if not isinstance(module, str):
            raise ValueError(f"{where}: module must be a string, got {type(module).__name__}")
        previous = reduction


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_backbone(module: nn.Module, x: torch.Tensor | None = None) -> None:
    """Check that ``module`` follows the backbone contract.

    Runs :func:`check_feature_info` and checks ``num_features == feature_info[-1]["num_chs"]``.
    Given a sample batch ``x``, also runs ``forward_features`` once (without gradients) and checks
    that it returns one map per stage with the declared channel counts.

    Args:
        module: the backbone.
        x: an optional input batch ``[B, C, H, W]`` to probe the feature maps with.

    Raises:
        TypeError: ``module`` is not an ``nn.Module`` or lacks a part of the contract.
        ValueError: the parts disagree with each other or with the probed feature maps.
    """
    name = type(module).__name__
    if not isinstance(module, nn.Module):
        raise TypeError(f"a backbone must be an nn.Module, got {name}")
    parts = ("forward_features", "feature_info", "num_features")
    absent = [a for a in parts if not hasattr(module, a)]
    if absent:
        raise TypeError(
            f"backbone {name} has no {', '.join(absent)}; see cvtasks.backbones.base for the "
            "contract (subclass cvtasks.backbones.Backbone to get the classifier path for free)"
        )
    feature_info = module.feature_info
    try:
        check_feature_info(feature_info)
    except ValueError as err:
        raise ValueError(f"backbone {name}: {err}") from err
    last = feature_info[-1]["num_chs"]
    if module.num_features != last:
        raise ValueError(
            f"backbone {name}: num_features={module.num_features!r} but the last stage has "
            f"num_chs={last}; num_features must be the last stage's channel count"
        )
    if x is None:
        return
    with torch.no_grad():
        features = module.forward_features(x)
    if not isinstance(features, (list, tuple)) or len(features) != len(feature_info):
        got = len(features) if isinstance(features, (list, tuple)) else type(features).__name__
        raise ValueError(
            f"backbone {name}: forward_features returned {got} maps for "
            f"{len(feature_info)} stages in feature_info"
        )
    for i, (fmap, info) in enumerate(zip(features, feature_info)):
        if fmap.ndim != 4 or fmap.shape[1] != info["num_chs"]:
            raise ValueError(
                f"backbone {name}: stage {i} ({info['module']}) gave a map of shape "
                f"{tuple(fmap.shape)}, expected [B, {info['num_chs']}, H, W]"
            )


# -- the base class ---------------------------------------------------------------------------
class Backbone(nn.Module, metaclass=ABCMeta):
    """Base class of cvtasks backbones: families build stages, this adds the classifier path.

    A subclass builds its layers, sets ``feature_info`` and ``num_features``, calls
    :meth:`init_head` and implements :meth:`forward_features`. The default head is global average
    pooling → dropout(``drop_rate``) → ``Linear(num_features, num_classes)``; with
    ``num_classes == 0`` there is no linear layer and :meth:`forward` returns the pooled last-stage
    features ``[B, num_features]``. A family with a different head overrides
    :meth:`forward_head` and names its classifier modules in ``classifier_modules``.

    Attributes:
        feature_info: one ``dict(num_chs, reduction, module)`` per stage, shallow to deep.
        num_features: channels of the last stage.
        num_classes: logits of :meth:`forward` (0: pooled features instead).
        classifier_modules: names of the modules that depend on ``num_classes``; their
            checkpoint weights are skipped by :func:`load_pretrained` when they do not fit.
        default_input_size: the square input size the architecture is defined for.
    """

    feature_info: list[dict[str, Any]]
    num_features: int
    num_classes: int = 0
    classifier_modules: tuple[str, ...] = ("fc",)
    #: the resolution the architecture is defined for (listings count FLOPs at it).
    default_input_size: int = 224
    #: state-dict key of the first convolution's weight: a checkpoint made for other input
    #: channels leaves it freshly initialised (see :func:`load_pretrained`).
    stem_weight: str | None = None

    def init_head(self, num_classes: int, drop_rate: float) -> None:
        """Build the default classifier on ``self.num_features`` channels.

        Args:
            num_classes: number of logits; 0 builds no linear layer.
            drop_rate: dropout probability before the linear layer.

        Raises:
            ValueError: a negative ``num_classes`` or a ``drop_rate`` outside [0, 1).
        """
        _check_head_args(num_classes, drop_rate)
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's feature map, shallow to deep; each family implements it."""

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classify the last stage's map ``[B, num_features, H, W]``.

        Args:
            x: the deepest feature map.
            pre_logits: return the pooled features ``[B, num_features]`` even with a classifier.

        Returns:
            Logits ``[B, num_classes]``, or pooled features when ``pre_logits`` or
            ``num_classes == 0`` (no dropout: that belongs to the classifier).
        """
        x = self.global_pool(x).flatten(1)
        if pre_logits or not self.num_classes:
            return x
        return self.fc(self.head_drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` (or pooled features when ``num_classes == 0``)."""
        return self.forward_head(self.forward_features(x)[-1])


def _check_head_args(num_classes: int, drop_rate: float) -> None:
    if not _is_int(num_classes) or num_classes < 0:
        raise ValueError(f"num_classes must be an int >= 0 (0: no classifier), got {num_classes!r}")
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")


# -- pretrained weights -----------------------------------------------------------------------
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
    shape differs from the model's, or which the model does not have, are skipped, and classifier
    weights absent from the file keep their fresh initialisation. This is what fine-tuning needs:
    a checkpoint trained on 1000 classes initialises every stage of a 5-class model (or of a
    features-only model with ``num_classes=0``), and only the classifier, whose size depends on
    ``num_classes``, starts anew. Likewise the stem: when the weight named by
    ``model.stem_weight`` was made for another number of input channels (a 3-channel checkpoint
    for an ``in_chans=1`` model), the model keeps its fresh stem weight and a warning says so.
    Every other key must match by name and shape.

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
    state = _keep_fresh_stem(state, own, getattr(model, "stem_weight", None), path)
    heads = tuple(getattr(model, "classifier_modules", ()))

    def in_classifier(key: str) -> bool:
        return any(key == h or key.startswith(h + ".") for h in heads)

    skipped = [
        k
        for k, v in state.items()
        if in_classifier(k) and (k not in own or own[k].shape != v.shape)
    ]
    state = {k: v for k, v in state.items() if k not in skipped}
    if skipped:
        log.info("%s: skipped classifier weights %s (num_classes differs)", path, skipped)
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


def _keep_fresh_stem(
    state: StateDict, own: StateDict, key: str | None, path: str | os.PathLike[str]
) -> StateDict:
    """Keep the model's stem weight when the checkpoint's was made for other input channels."""
    theirs = state.get(key) if key else None
    if theirs is None or key not in own:
        return state
    mine = own[key]
    if theirs.shape[1] == mine.shape[1] or theirs.shape[0] != mine.shape[0]:
        return state
    log.warning(
        "%s: pretrained %s has %d input channels, the model %d (in_chans): the stem keeps its "
        "random initialisation; every other layer is loaded",
        os.fspath(path),
        key,
        theirs.shape[1],
        mine.shape[1],
    )
    return {**state, key: mine.detach().clone()}


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


def _few(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (", ..." if len(keys) > _SHOWN else "")
