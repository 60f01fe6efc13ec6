"""Scripted experts: the protocol, a registry of named factories and the resolver.

An expert is any object with ``reset(seed=None)`` and ``__call__(obs) -> action`` that takes
the RAW gymnasium observation (what ``env.step`` returns) and returns a RAW gymnasium action
(what ``env.step`` accepts). Converting to and from the il_core observation dict and action
array is the job of :class:`il_core.envs.GymAdapter`, so experts stay tiny and readable.

Experts are built by factories called with the env (so a factory can check the spaces, or
read physical parameters). il_core defines no expert of its own: packages register theirs
with :func:`register_expert`, loaded as plugins (:mod:`il_core.plugins`; this repository's
``sim`` package registers the experts of its simulators, of gymnasium's classic-control envs
and of MetaWorld). :data:`EXPERTS` maps names to factories, :data:`DEFAULT_EXPERTS` maps env
ids to the name that ``"auto"`` resolves to, and :func:`load_expert` resolves a registered
name, ``"auto"`` or ``"module:callable"``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym

from il_core.plugins import load_plugins

__all__ = [
    "DEFAULT_EXPERTS",
    "EXPERTS",
    "Expert",
    "ExpertError",
    "ExpertFactory",
    "FunctionExpert",
    "load_expert",
    "register_expert",
]


class ExpertError(ValueError):
    """An expert could not be resolved or does not fit the env. The message says which."""


@runtime_checkable
class Expert(Protocol):
    """A scripted (or any black-box) demonstrator acting on raw gymnasium observations."""

    def reset(self, seed: int | None = None) -> None:
        """Prepare for a new episode; ``seed`` seeds any randomness the expert has."""

    def __call__(self, obs: Any) -> Any:
        """Return the raw env action for the raw env observation ``obs``."""


#: Builds an expert for the env it is given (and may check that env's spaces).
ExpertFactory = Callable[[gym.Env], Expert]

#: Expert factories by name, filled by :func:`register_expert`.
EXPERTS: dict[str, ExpertFactory] = {}

#: The expert name ``"auto"`` resolves to, by gymnasium env id.
DEFAULT_EXPERTS: dict[str, str] = {}


def register_expert(name: str, factory: ExpertFactory, *, default_for: Iterable[str] = ()) -> None:
    """Add a named expert factory, and make it the ``"auto"`` expert of some env ids.

    Registering a name again replaces its factory (a plugin module that is reloaded).

    Args:
        name: The name ``load_expert`` and ``--expert`` accept, e.g. ``"cartpole_linear"``.
        factory: Called with the env; returns an :class:`Expert` or raises
            :class:`ExpertError` when the env does not fit.
        default_for: Env ids whose ``"auto"`` expert this is.

    Raises:
        ExpertError: ``name`` is empty or holds ``":"`` (that form means ``module:callable``),
            or ``factory`` is not callable.
    """
    if not isinstance(name, str) or not name or ":" in name or name == "auto":
        raise ExpertError(f"expert name must be a non-empty string without ':', got {name!r}")
    if not callable(factory):
        raise ExpertError(f"expert {name!r}: factory {factory!r} is not callable")
    EXPERTS[name] = factory
    for env_id in default_for:
        DEFAULT_EXPERTS[env_id] = name


class FunctionExpert:
    """Wrap a plain function ``obs -> action`` (no state) as an :class:`Expert`."""

    def __init__(self, fn: Callable[[Any], Any], name: str | None = None) -> None:
        """Wrap ``fn``; ``name`` is only used in ``repr``."""
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", repr(fn))

    def reset(self, seed: int | None = None) -> None:
        """A plain function has no state to reset."""

    def __call__(self, obs: Any) -> Any:
        """Return ``fn(obs)``."""
        return self.fn(obs)

    def __repr__(self) -> str:
        return f"FunctionExpert({self.name})"


# A plain policy function is told apart from a factory by the name of its first parameter:
# both are one-argument callables, and calling a policy with the env to find out would run
# user code on the wrong input.
_OBS_PARAM_NAMES = frozenset({"obs", "observation"})


def _is_expert_instance(obj: Any) -> bool:
    return not inspect.isclass(obj) and callable(obj) and callable(getattr(obj, "reset", None))


def _from_callable(obj: Any, spec: str, env: gym.Env) -> Expert:
    """Turn the object named by a ``module:callable`` spec into an expert."""
    if _is_expert_instance(obj):
        return obj  # A ready expert instance defined at module level.
    if not callable(obj):
        raise ExpertError(f"expert {spec!r}: {type(obj).__name__} object is not callable")
    if not inspect.isclass(obj):
        try:
            params = list(inspect.signature(obj).parameters)
        except (TypeError, ValueError):  # Builtins without a signature: assume a factory.
            params = []
        if params and params[0] in _OBS_PARAM_NAMES:
            return FunctionExpert(obj, name=spec)
    made = obj(env)
    if _is_expert_instance(made):
        return made
    if callable(made):
        return FunctionExpert(made, name=spec)
    raise ExpertError(
        f"expert factory {spec!r} returned {type(made).__name__}, expected an expert "
        "(a callable obs -> action, optionally with reset(seed))"
    )


def _env_id(env: gym.Env) -> str | None:
    return env.spec.id if env.spec is not None else None


def load_expert(spec: str, env: gym.Env) -> Expert:
    """Resolve an expert by name, ``"auto"`` or ``"module:callable"`` and build it for ``env``.

    Args:
        spec: One of

            - a key of :data:`EXPERTS` (``"cartpole_linear"``, registered by a plugin);
            - ``"auto"``: the :data:`DEFAULT_EXPERTS` entry for ``env.spec.id``;
            - ``"package.module:name"``: ``name`` is imported with :mod:`importlib`. A class,
              or a function whose first parameter is not called ``obs``/``observation``, is
              a factory and is called with ``env``; a function whose first parameter is
              ``obs`` or ``observation`` is a plain policy ``obs -> action`` and is wrapped
              in :class:`FunctionExpert`; an object that already has ``reset`` and
              ``__call__`` is used as is. A factory result without ``reset`` is wrapped.
              Dotted attribute paths (``module:Class.method``) are followed.
        env: The gymnasium env the expert will act in.

    Returns:
        The expert; call ``reset(seed)`` before each episode.

    Raises:
        ExpertError: unknown name (the message lists the registered ones), no default for
            the env id, a module that cannot be imported (named in the message), a missing
            attribute, or an expert whose spaces do not fit ``env``.
    """
    if not isinstance(spec, str) or not spec:
        raise ExpertError(f"expert spec must be a non-empty string, got {spec!r}")
    load_plugins()  # The registered names come from the installed plugins.
    if spec == "auto":
        env_id = _env_id(env)
        name = DEFAULT_EXPERTS.get(env_id or "")
        if name is None:
            raise ExpertError(
                f"no default expert for env {env_id!r}; defaults exist for "
                f"{sorted(DEFAULT_EXPERTS)}. Pass a name from {sorted(EXPERTS)} or "
                "'module:callable'"
            )
        return EXPERTS[name](env)
    if ":" in spec:
        module_name, _, attr_path = spec.partition(":")
        if not module_name or not attr_path:
            raise ExpertError(f"expert spec {spec!r} must look like 'package.module:callable'")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ExpertError(f"expert {spec!r}: cannot import module {module_name!r}: {e}") from e
        obj: Any = module
        for part in attr_path.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise ExpertError(
                    f"expert {spec!r}: module {module_name!r} has no attribute {attr_path!r}"
                ) from None
        return _from_callable(obj, spec, env)
    factory = EXPERTS.get(spec)
    if factory is None:
        raise ExpertError(
            f"unknown expert {spec!r}; available: {sorted(EXPERTS)}, 'auto' "
            f"(defaults: {DEFAULT_EXPERTS}) or 'module:callable'"
        )
    return factory(env)
