"""Any timm model as a cvtasks backbone: ``BACKBONES.build("timm/<model_name>", ...)``.

The model is created by ``timm.create_model(model_name, features_only=True, pretrained=False)``,
so its stages and their ``feature_info`` (channels, reductions, module names) are timm's own; the
classifier is cvtasks' default one (:class:`~cvtasks.backbones.base.Backbone`) on the last stage.
``timm/`` names are resolved on look-up and timm is imported on first use: nothing enumerates
timm's models unless a name is unknown, and then only to suggest close ones.

``pretrained=true`` takes timm's own pretrained weights (``timm/resnet50.a1_in1k``: the tag picks
them; no tag: timm's default), cached where timm caches them (the Hugging Face hub cache, or
``$TORCH_HOME``) and read from there without any request once cached; with no network and
nothing cached, one line names the URL and where to put the file. Otherwise ``pretrained`` is a
local checkpoint of the *full* timm model (or of the torchvision model timm mirrors, e.g.
``resnet50``). The features-only model keeps the original modules up to the last
stage, with three renamings that :func:`_timm_checkpoint_filter` undoes: nothing (``layer1``),
first-level ``Sequential`` children flattened (``features.0`` → ``features_0``), or the whole
model kept under ``model.`` (timm's ``FeatureGetterNet``). Keys of modules past the last stage
(global pool, ``conv_head``, classifier) are dropped; every stage weight must be in the file.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

from cvtasks.backbones.base import Backbone, check_feature_info
from cvtasks.backbones.named_weights import check_reachable, timm_cached_file
from cvtasks.backbones.weights import StateDict, build_with_weights
from cvtasks.registry import BACKBONES

PREFIX = "timm/"


class TimmBackbone(Backbone):
    """A timm ``features_only`` model under the cvtasks backbone contract.

    Args:
        model_name: a timm model name (``"resnet18"``, ``"mobilenetv3_small_100"``).
        in_chans: input channels.
        num_classes: logits of :meth:`forward`; 0 returns pooled last-stage features.
        drop_rate: dropout before the classifier.
        timm_pretrained: load timm's pretrained weights for ``model_name`` (downloaded once).
        **kwargs: passed to ``timm.create_model`` (``out_indices``, ``drop_path_rate``, ...).

    Raises:
        KeyError: timm has no model ``model_name``; the message lists close matches.
        ~cvtasks.backbones.named_weights.WeightsDownloadError: ``timm_pretrained`` with the
            weights neither cached nor downloadable.
    """

    def __init__(
        self,
        model_name: str,
        in_chans: int = 3,
        num_classes: int = 0,
        drop_rate: float = 0.0,
        timm_pretrained: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        import timm  # ~1.5 s: paid only when a timm backbone is built

        if not timm.is_model(model_name):
            raise KeyError(_unknown_model_message(model_name))
        self.model_name = model_name
        if timm_pretrained:
            kwargs = {**kwargs, **_pretrained_source(model_name)}
        self.model = timm.create_model(
            model_name,
            features_only=True,
            pretrained=timm_pretrained,
            in_chans=in_chans,
            **kwargs,
        )
        info = self.model.feature_info
        self.feature_info = [
            dict(num_chs=int(c), reduction=int(r), module=str(m))
            for c, r, m in zip(info.channels(), info.reduction(), info.module_name())
        ]
        check_feature_info(self.feature_info)
        self.default_input_size = pretrained_input_size(model_name)[-1]
        self.num_features = self.feature_info[-1]["num_chs"]
        self.init_head(num_classes, drop_rate)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """timm's feature maps, one per entry of ``feature_info``."""
        return list(self.model(x))


def create_timm_backbone(
    model_name: str, pretrained: bool | str | None = None, **kwargs: Any
) -> TimmBackbone:
    """Factory behind the ``timm/`` prefix: ``timm/resnet18`` → ``TimmBackbone("resnet18")``.

    ``pretrained`` is ``true`` (timm's own weights for the name and its tag) or a local
    ``.pth``/``.pt``/``.safetensors`` checkpoint of the full timm (or matching torchvision) model.
    """
    if pretrained is True:
        return build_with_weights(
            TimmBackbone, PREFIX + model_name, model_name=model_name, timm_pretrained=True, **kwargs
        )
    return build_with_weights(
        TimmBackbone,
        PREFIX + model_name,
        pretrained=pretrained,
        key_map=_timm_checkpoint_filter,
        model_name=model_name,
        **kwargs,
    )


def _pretrained_source(model_name: str) -> dict[str, Any]:
    """timm keywords that read cached weights without a request, or nothing when not cached.

    A cached file goes to timm as ``pretrained_cfg_overlay=dict(file=...)``: the hub is not asked
    again (offline, it would retry for about a minute). When nothing is cached, the host is
    probed first so that no network fails in seconds with the URL and where to put the file.
    """
    url, cached, cache_dir = timm_cached_file(model_name)
    if cached is not None:
        return {"pretrained_cfg_overlay": {"file": str(cached)}}
    check_reachable(
        url,
        f"timm weights for {model_name}",
        f"set backbone.pretrained=<that file> (or copy the cache {cache_dir} from a machine "
        "that has it)",
    )
    return {}


BACKBONES.register_prefix(PREFIX, create_timm_backbone)


def pretrained_input_size(model_name: str) -> tuple[int, int]:
    """``(height, width)`` of timm's ``pretrained_cfg["input_size"]`` for ``model_name``.

    Read from timm's local table of default configs: nothing is built or downloaded. A model
    without one gets 224x224.

    Raises:
        KeyError: timm has no model ``model_name``; the message lists close matches.
    """
    import timm

    cfg = timm.get_pretrained_cfg(model_name)
    if cfg is None:
        if not timm.is_model(model_name):
            raise KeyError(_unknown_model_message(model_name))
        return Backbone.default_input_size, Backbone.default_input_size
    _, height, width = cfg.input_size
    return int(height), int(width)


def _unknown_model_message(model_name: str) -> str:
    import timm

    close = difflib.get_close_matches(model_name, timm.list_models(), n=5, cutoff=0.6)
    parts = [f"Unknown timm model {model_name!r} (backbone name {PREFIX + model_name!r})."]
    if close:
        parts.append("Did you mean: " + ", ".join(PREFIX + c for c in close) + "?")
    parts.append(
        "List timm's models with: python -c \"import timm; print(timm.list_models('resnet*'))\"."
    )
    return " ".join(parts)


def _timm_checkpoint_filter(state: StateDict, model: nn.Module) -> StateDict:
    """Rename a full timm/torchvision checkpoint's keys to a :class:`TimmBackbone`'s.

    A checkpoint saved from a ``TimmBackbone`` itself (keys ``model.…``) passes through.
    """
    own = model.state_dict()
    if any(k.startswith("model.") and k in own for k in state):
        return state
    modules = dict(model.named_modules())
    out: StateDict = {}
    for key, value in state.items():
        target = next((c for c in _candidates(key) if c in own), None)
        if target is not None:
            out[target] = value
            continue
        # Not a weight of the features model: fine past the last stage (head, or a module timm
        # pruned to Identity); a stray name in a module that holds weights is reported unexpected.
        parent, _, leaf = key.rpartition(".")
        owner = next((c for c in _candidates(parent) if parent and c in modules), None)
        if owner is not None and _holds_tensors(modules[owner]):
            out[f"{owner}.{leaf}"] = value
    return out


def _holds_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(
        True for _ in module.buffers(recurse=False)
    )


def _candidates(key: str) -> tuple[str, ...]:
    # as kept, with the first-level Sequential flattened (timm's _module_list), or getter-wrapped
    return ("model." + key, "model." + key.replace(".", "_", 1), "model.model." + key)
