"""Plugins: packages that add gymnasium envs and scripted experts to il_core.

il_core names no simulator. A package that has envs or experts to offer declares a Python
entry point in the group :data:`ENTRY_POINT_GROUP`; the object it points to is imported
(and, when callable, called) the first time :func:`il_core.envs.make_env` or
:func:`il_core.experts.load_expert` needs it, and registers what it has with
:func:`gymnasium.register` and :func:`il_core.experts.register_expert`. This repository's own
``sim`` package is such a plugin (``setup.py``: ``"il_core.plugins": ["sim = sim"]``); a
user's package adds its robot's simulator the same way::

    entry_points={"il_core.plugins": ["my_sim = my_sim.registration:register"]}

This is dependency injection by installed metadata, the way pytest finds its plugins: the
dependency runs from the plugin to il_core, never back.
"""

from __future__ import annotations

import importlib.metadata
import threading

__all__ = ["ENTRY_POINT_GROUP", "PluginError", "load_plugins"]

#: The entry-point group il_core reads plugins from.
ENTRY_POINT_GROUP = "il_core.plugins"

_loaded: list[str] | None = None
_lock = threading.Lock()  # A policy worker thread may make an env while the main thread does.


class PluginError(ImportError):
    """An installed il_core plugin failed to load; the message names it and its entry point."""


def load_plugins() -> list[str]:
    """Load every installed il_core plugin once; later calls return at once.

    A plugin that fails to import raises (a broken simulator must surface, not be swallowed);
    the next call tries again.

    Returns:
        The names of the loaded plugins (entry-point names, e.g. ``["sim"]``), sorted.

    Raises:
        PluginError: a plugin could not be imported or its registration function raised;
            the message names the entry point (``name = module:attr``) and the cause.
    """
    global _loaded
    with _lock:
        if _loaded is not None:
            return list(_loaded)
        seen: dict[str, importlib.metadata.EntryPoint] = {}
        # The same distribution can be visible twice (an editable install and a colcon
        # install space on PYTHONPATH): one plugin per name and value.
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            seen.setdefault(f"{ep.name}={ep.value}", ep)
        for ep in sorted(seen.values(), key=lambda e: e.name):
            try:
                obj = ep.load()
                if callable(obj):
                    obj()
            except Exception as e:
                raise PluginError(
                    f"il_core plugin {ep.name!r} ({ep.value}, entry-point group "
                    f"{ENTRY_POINT_GROUP!r}) failed to load: {type(e).__name__}: {e}"
                ) from e
        _loaded = sorted({ep.name for ep in seen.values()})
        return list(_loaded)
