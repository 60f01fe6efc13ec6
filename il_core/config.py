"""Typed configuration: dataclasses filled from YAML or dicts, unknown keys rejected.

YAML only sets values; it never evaluates code (``yaml.safe_load``). Every config class is a
dataclass whose fields carry a docstring-like ``metadata={"help": ...}`` and whose
``__post_init__`` raises :class:`ConfigError` with an actionable message.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or value is invalid. The message names the file and key."""


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` that also reads ``1e-3`` as a float (YAML 1.2; PyYAML's 1.1 says str)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats; never constructs Python objects."""
    return yaml.load(text, Loader=_Loader)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``.

    Raises:
        ConfigError: if the file is missing, not valid YAML, or not a mapping.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read config file: {e}") from None
    try:
        data = safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Turn ``["train.lr=3e-4", "policy.hidden_dims=[64, 64]"]`` into a nested dict.

    Values are parsed as YAML scalars/lists (:func:`safe_load`), so ``3e-4`` is a float,
    ``[64, 64]`` a list and ``true`` a bool.

    Raises:
        ConfigError: for an item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=0.001")
        try:
            value = safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: value is not valid YAML: {e}") from None
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is set both as a value and a group")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base``."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(
    path: str | Path | None, overrides: Iterable[str] | None = None
) -> tuple[dict[str, Any], str]:
    """The raw config of a command: a YAML file (optional) with ``--set KEY=VALUE`` on top.

    Returns:
        ``(raw, where)``: the merged dict and the name errors should cite (the file, or
        ``"command line"`` without one).
    """
    raw = load_yaml(path) if path else {}
    where = str(path) if path else "command line"
    return merge(raw, parse_overrides(overrides or [])), where


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against a type annotation, converting lists to tuples where declared."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Instantiate dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types.

    Args:
        cls: A dataclass type.
        data: Mapping of field name to value; missing fields keep their defaults.
        where: Location prefix for error messages (file name and section).

    Raises:
        ConfigError: naming ``where`` and the key for unknown keys, wrong types or values
            refused by the class's ``__post_init__``.
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass to a plain dict with lists instead of tuples (YAML- and checkpoint-friendly)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(obj)


def describe_config(cls: type, prefix: str = "") -> list[str]:
    """One line per field of a config dataclass: ``key: type = default  help``.

    Nested config dataclasses (an image encoder inside a policy config) are listed with
    dotted keys, the way ``--set`` addresses them (``policy.image_encoder.channels``).

    Args:
        cls: A dataclass type (``TrainConfig``, a policy's ``config_class``, ...).
        prefix: Prepended to every key, e.g. ``"policy."``.
    """
    lines: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        key = f"{prefix}{f.name}"
        text = f.metadata.get("help", "")
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            lines += describe_config(type(default), key + ".")
            continue
        # An optional section (``ImageAugmentConfig | None = None``): off by default; its
        # keys are listed with the defaults they take once the section is given.
        nested = [
            t
            for t in typing.get_args(hints[f.name])
            if isinstance(t, type) and dataclasses.is_dataclass(t)
        ]
        if default is None and len(nested) == 1:
            lines.append(f"{key}: null  # off unless given" + (f"; {text}" if text else ""))
            lines += describe_config(nested[0], key + ".")
            continue
        shown = to_dict(default) if isinstance(default, (list, tuple, dict)) else default
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", f.type)
        lines.append(f"{key}: {type_name} = {shown!r}" + (f"  # {text}" if text else ""))
    return lines
