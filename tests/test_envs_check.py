"""gymnasium's ``check_env`` over the envs that ``sim`` registers, in one parametrised test.

Every registration of :data:`sim.ENV_REGISTRATIONS`: our own envs, and the 50 MetaWorld tasks
with the state and with the pixel observation. The 40 tasks outside MT10 (80 ids, about
1.5 s each here) are the same :class:`sim.metaworld_envs.MetaWorldEnv` with another task
name, so they carry the ``expensive`` marker: ``make test`` and CI check them, the fast
subset checks our envs and MT10. The MetaWorld ids need ``metaworld`` (an optional
dependency) and, for pixels, OSMesa.
"""

from __future__ import annotations

import importlib.util
import os
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import sim
from sim.metaworld_envs import MT10_TASKS, pixels_id, state_id

os.environ.setdefault("MUJOCO_GL", "osmesa")
_METAWORLD = importlib.util.find_spec("metaworld") is not None
_MT10 = {state_id(t) for t in MT10_TASKS} | {pixels_id(t) for t in MT10_TASKS}


def _ids() -> list[object]:
    ids: list[object] = []
    for reg in sim.ENV_REGISTRATIONS:
        if "MetaWorld" not in reg.id:
            ids.append(reg.id)
            continue
        marks = [pytest.mark.skipif(not _METAWORLD, reason="needs metaworld")]
        if reg.id not in _MT10:
            marks.append(pytest.mark.expensive)
        ids.append(pytest.param(reg.id, marks=marks))
    return ids


@pytest.mark.parametrize("env_id", _ids())
def test_registered_env_passes_check_env(env_id: str) -> None:
    sim.register_envs()
    env = gym.make(env_id)
    try:
        with warnings.catch_warnings():
            # check_env warns, not fails, on style (e.g. a float64 Box); the test is for errors.
            warnings.simplefilter("ignore")
            # Render modes are checked where an env has them: MetaWorld pixel envs render
            # their observation camera, not a render_mode (their state twin checks render).
            check_env(env.unwrapped, skip_render_check="MetaWorldPixels" in env_id)
    finally:
        env.close()


def test_every_registration_is_checked() -> None:
    """The parametrisation covers every registered id: 11 of ours, 50 MetaWorld tasks twice."""
    checked = [p if isinstance(p, str) else p.values[0] for p in _ids()]
    assert sorted(checked) == sorted(r.id for r in sim.ENV_REGISTRATIONS)
    assert len(checked) == 11 + 2 * 50
