"""Policies, found by name. Each policy type is a sibling package ``il_core/policies/<name>/``.

Usage::

    from il_core.policies import make_policy, available_policies
    policy = make_policy("bc", {"hidden_dims": [64, 64]}, spec, stats)
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from il_core.config import ConfigError, from_dict
from il_core.policies.base import Policy, PolicyConfig
from il_core.spec import DatasetSpec

_REGISTRY: dict[str, type[Policy]] = {}

# Built-in policy packages, imported on first lookup so that importing il_core stays cheap.
_BUILTIN = {
    "bc": "il_core.policies.bc",
    "diffusion": "il_core.policies.diffusion",
    "mog": "il_core.policies.mog",
    "act": "il_core.policies.act",
    "act_mlp": "il_core.policies.act_mlp",
    "ar": "il_core.policies.ar",
}


def register_policy(name: str):
    """Class decorator registering a :class:`Policy` subclass under ``name``."""

    def deco(cls: type[Policy]) -> type[Policy]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"policy name {name!r} is already registered by {_REGISTRY[name]}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_policies() -> list[str]:
    """Names of all registered and built-in policies."""
    return sorted(set(_REGISTRY) | set(_BUILTIN))


def get_policy_class(name: str) -> type[Policy]:
    """Look up a policy class by name.

    Raises:
        ConfigError: naming the unknown policy and listing the available ones.
    """
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        raise ConfigError(f"unknown policy {name!r}; available: {available_policies()}")
    return _REGISTRY[name]


def make_config(name: str, values: dict[str, Any] | None, where: str = "policy") -> PolicyConfig:
    """Build the typed config of policy ``name`` from a dict (unknown keys rejected)."""
    cls = get_policy_class(name)
    return from_dict(cls.config_class, values or {}, where)


def make_policy(
    name: str,
    config: PolicyConfig | dict[str, Any] | None,
    spec: DatasetSpec,
    stats: dict[str, dict[str, np.ndarray]] | None = None,
) -> Policy:
    """Instantiate policy ``name`` for ``spec``.

    Args:
        name: Registered policy name (``"bc"``, ...).
        config: Config instance or dict of overrides for the policy's config class.
        spec: Dataset spec the policy consumes and produces.
        stats: Normalisation statistics (``None`` when loading weights afterwards).
    """
    cls = get_policy_class(name)
    if not isinstance(config, PolicyConfig):
        config = make_config(name, config)
    return cls(config, spec, stats)


__all__ = [
    "Policy",
    "PolicyConfig",
    "available_policies",
    "get_policy_class",
    "make_config",
    "make_policy",
    "register_policy",
]
