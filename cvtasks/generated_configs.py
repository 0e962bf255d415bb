"""Hydra configs generated from the registry: ``backbone=<name>`` for every registered backbone.

A backbone's config is its builder's keyword defaults, read from its signature, so adding a
backbone (in cvtasks or in a plugin) needs no yaml:

* a registered class gives its constructor's keywords;
* a registered function gives its own keywords; one that passes ``**kwargs`` on to the class
  its return annotation names gives that class's keywords too, except those the class lists in
  ``variant_args`` (the arguments each registered variant sets itself, such as VGG's layer
  table). The function's own defaults win: ``def efficientnet_b3(drop_rate=0.3, **kwargs)``.

``num_classes`` is left out (a task's backbone is a feature extractor; the task builds its head).
The contract keywords ``in_chans``, ``drop_rate`` and ``pretrained`` are always present, so
``backbone.drop_rate=0.1`` needs no ``+``; where the signature gives no default, ``null`` stands for
the builder's own (the registry drops ``None`` keywords). ``in_chans`` is ``auto``: the run sets
it from the data (:mod:`cvtasks.auto_inputs`). Defaults that are no config value
(a class such as ``nn.ReLU``) are left out.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from cvtasks.registry import BACKBONES, Registry

#: config group → the registry whose names get a generated config in it
GENERATED_GROUPS: dict[str, Registry] = {"backbone": BACKBONES}

#: keywords every backbone takes (docs/architecture.md, "Backbone"), with the value used when the
#: builder's signature does not show one (``None``: the builder's default)
CONTRACT_DEFAULTS: dict[str, Any] = {"in_chans": 3, "drop_rate": None, "pretrained": None}
#: contract keywords whose config value is always this, whatever the builder's default
CONFIG_VALUES: dict[str, Any] = {"in_chans": "auto"}  # the data's channels

#: keywords the task sets, never the backbone config
TASK_SET = frozenset({"num_classes"})

_SCALARS = (bool, int, float, str, type(None))


def generated_config(builder: Callable[..., Any], name: str) -> dict[str, Any]:
    """The config ``backbone=<name>`` composes to: ``name`` and the builder's keyword defaults.

    Args:
        builder: the registered function or class.
        name: its registry name.

    Returns:
        ``{"name": name, "in_chans": ..., "drop_rate": ..., "pretrained": ..., ...}``.
    """
    defaults = builder_defaults(builder)
    contract = {key: defaults.pop(key, value) for key, value in CONTRACT_DEFAULTS.items()}
    contract.update(CONFIG_VALUES)
    return {"name": name, **contract, **defaults}


def builder_defaults(builder: Callable[..., Any]) -> dict[str, Any]:
    """The keyword defaults of ``builder`` that a config can hold, in signature order.

    Args:
        builder: a registered function or class.

    Returns:
        Keyword → default; see the module docstring for what is read and what is left out.
    """
    signature = inspect.signature(builder)
    own = _keyword_defaults(signature)
    forwards = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    target = _returned_class(builder, signature) if forwards else None
    if target is None:
        return own
    fixed = set(getattr(target, "variant_args", ()))
    inherited = _keyword_defaults(inspect.signature(target))
    return {**{k: v for k, v in inherited.items() if k not in fixed}, **own}


def _keyword_defaults(signature: inspect.Signature) -> dict[str, Any]:
    """Keyword-able parameters with a config-value default, ``num_classes`` left out."""
    out = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            continue
        if param.default is param.empty or param.name in TASK_SET:
            continue
        value = _config_value(param.default)
        if value is not _NOT_CONFIG:
            out[param.name] = value
    return out


_NOT_CONFIG = object()


def _config_value(value: Any) -> Any:
    """``value`` as a config holds it (tuples become lists), or ``_NOT_CONFIG``."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        items = [_config_value(v) for v in value]
        return _NOT_CONFIG if any(v is _NOT_CONFIG for v in items) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items = {k: _config_value(v) for k, v in value.items()}
        return _NOT_CONFIG if any(v is _NOT_CONFIG for v in items.values()) else items
    return _NOT_CONFIG


def _returned_class(builder: Callable[..., Any], signature: inspect.Signature) -> type | None:
    """The class a builder's return annotation names (a string under postponed evaluation)."""
    annotation = signature.return_annotation
    if isinstance(annotation, str):
        namespace = getattr(inspect.unwrap(builder), "__globals__", {})
        annotation = namespace.get(annotation)
    return annotation if isinstance(annotation, type) else None


def plugin_specs(overrides: Sequence[str]) -> list[str]:
    """The plugins a ``plugins=[...]`` command-line argument names (``[]`` without one).

    Args:
        overrides: command-line arguments, e.g. ``["plugins=[./my_net.py]", "backbone=my_net"]``.

    Returns:
        The module names and ``.py`` paths of the last ``plugins=`` (``+``/``++`` forms too).

    Raises:
        ValueError: ``plugins=`` holds something other than a list or one name.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    found: list[str] = []
    for arg in overrides:
        key, sep, _ = arg.partition("=")
        if not sep or key.lstrip("+") != "plugins":
            continue
        try:
            value = OverridesParser.create().parse_override(arg).value()
        except Exception as err:  # Hydra's grammar errors have no common public base
            raise ValueError(
                f"{arg}: not a plugin list, e.g. plugins=[./my_net.py] ({err})"
            ) from err
        if value is None:
            found = []
        elif isinstance(value, list):
            found = [str(v) for v in value]
        elif isinstance(value, str):
            found = [value]
        else:
            raise ValueError(f"{arg}: not a plugin list, e.g. plugins=[./my_net.py]")
    return found
