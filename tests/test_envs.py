"""GymAdapter / spec_from_env on classic-control envs and a Dict toy env; the rollout loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from il_core.envs import (
    GymAdapter,
    UnknownEnvError,
    episode_success,
    make_env,
    spec_from_env,
)
from il_core.rollout import EpisodeResult, run_episode, step_timestamp
from il_core.spec import DatasetSpec, SpecError


class ToyDictEnv(gym.Env):
    """Point mass on a plane with a Dict observation: a state vector and a tiny camera.

    Observation ``{"pos": (2,) float64, "cam": (6, 8, 3) uint8}``; action ``(2,)`` velocity in
    ``[-1, 1]``; success (``info["is_success"]``) and termination when within 0.1 of the
    origin; truncation after ``max_steps``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None, max_steps: int = 40) -> None:
        self.observation_space = gym.spaces.Dict(
            {
                "pos": gym.spaces.Box(-2.0, 2.0, (2,), np.float64),
                "cam": gym.spaces.Box(0, 255, (6, 8, 3), np.uint8),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.render_mode = render_mode
        self.max_steps = max_steps
        self.pos = np.zeros(2)
        self.t = 0

    def _obs(self) -> dict[str, np.ndarray]:
        cam = np.zeros((6, 8, 3), np.uint8)
        cam[..., 0] = np.uint8(min(255, 100 * np.linalg.norm(self.pos)))
        return {"pos": self.pos.copy(), "cam": cam}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start at a seeded random position in [-1.5, 1.5]^2."""
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1.5, 1.5, size=2)
        self.t = 0
        return self._obs(), {}

    def step(self, action: Any):
        """Move by 0.2 * action (the action must already be inside the bounds)."""
        a = np.asarray(action, np.float64)
        assert self.action_space.contains(np.asarray(action, np.float32)), action
        self.pos = np.clip(self.pos + 0.2 * a, -2.0, 2.0)
        self.t += 1
        dist = float(np.linalg.norm(self.pos))
        success = dist < 0.1
        return self._obs(), -dist, success, self.t >= self.max_steps, {"is_success": success}

    def render(self) -> np.ndarray:
        """A frame whose pixels encode the step count, to check frame order."""
        return np.full((4, 5, 3), self.t, np.uint8)


def _toward_origin(obs: dict[str, np.ndarray]) -> np.ndarray:
    # Overshoots the bounds on purpose: the adapter must clip to [-1, 1].
    return (-3.0 * obs["pos"]).astype(np.float32)


# --- spec_from_env -------------------------------------------------------------------------


def test_spec_cartpole():
    spec = spec_from_env(gym.make("CartPole-v1"))
    assert list(spec.observations) == ["state"]
    f = spec.observations["state"]
    assert f.kind == "vector" and f.shape == (4,)
    assert f.names == ("x", "x_dot", "theta", "theta_dot")
    assert spec.action.kind == "discrete" and spec.action.num_classes == 2
    assert spec.action.names == ("left", "right")
    assert spec.control_rate_hz == 50.0
    assert spec.metadata == {"env_id": "CartPole-v1"}
    assert DatasetSpec.from_dict(spec.to_dict()) == spec  # Stored in meta.json as is.


def test_spec_mountaincar():
    spec = spec_from_env(gym.make("MountainCar-v0"))
    assert spec.observations["state"].names == ("position", "velocity")
    assert spec.action.num_classes == 3 and spec.action.names == ("left", "none", "right")
    assert spec.control_rate_hz == 30.0
    assert spec_from_env(gym.make("MountainCar-v0"), control_rate_hz=7.5).control_rate_hz == 7.5


def test_spec_pendulum_continuous():
    spec = spec_from_env(gym.make("Pendulum-v1"))
    assert spec.observations["state"].shape == (3,)
    a = spec.action
    assert a.kind == "continuous" and a.dim == 1 and a.names == ("torque",)
    assert a.low == (-2.0,) and a.high == (2.0,)
    assert spec.control_rate_hz == 30.0


def test_spec_dict_env_and_rate_fallbacks():
    env = ToyDictEnv()
    spec = spec_from_env(env)
    assert list(spec.observations) == sorted(["pos", "cam"])  # gymnasium sorts Dict keys.
    assert spec.observations["pos"].kind == "vector" and spec.observations["pos"].shape == (2,)
    assert spec.observations["cam"].kind == "image" and spec.observations["cam"].shape == (6, 8, 3)
    assert spec.action.kind == "continuous" and spec.action.low == (-1.0, -1.0)
    assert spec.control_rate_hz == 20.0
    assert spec.metadata == {"env_id": None}  # Not registered.

    env.metadata = {}
    assert spec_from_env(env).control_rate_hz == 10.0  # No render_fps, no dt.
    env.dt = 0.04
    assert spec_from_env(env).control_rate_hz == 25.0


def test_spec_image_box_observation():
    env = ToyDictEnv()
    env.observation_space = gym.spaces.Box(0, 255, (6, 8, 3), np.uint8)
    spec = spec_from_env(env)
    assert list(spec.observations) == ["image"]
    assert spec.observations["image"].kind == "image"


def test_spec_unsupported_spaces_raise():
    env = ToyDictEnv()
    env.observation_space = gym.spaces.Box(0.0, 1.0, (3, 3), np.float32)
    with pytest.raises(SpecError, match="'state'.*unsupported"):
        spec_from_env(env)
    env = ToyDictEnv()
    env.action_space = gym.spaces.MultiDiscrete([2, 3])
    with pytest.raises(SpecError, match="action"):
        spec_from_env(env)


# --- GymAdapter ----------------------------------------------------------------------------


def test_adapter_discrete_roundtrip():
    env = gym.make("MountainCar-v0")
    ad = GymAdapter(env)
    raw, _ = env.reset(seed=0)
    obs = ad.obs_to_dict(raw)
    assert set(obs) == {"state"} and obs["state"].dtype == np.float32
    np.testing.assert_array_equal(obs["state"], raw)
    assert obs["state"] is not raw  # A copy: never aliases an env buffer.
    np.testing.assert_array_equal(ad.obs_to_raw(obs), raw)
    for a in range(3):
        env_a = ad.action_to_env(np.int64(a))
        assert isinstance(env_a, int) and env_a == a and env.action_space.contains(env_a)
        back = ad.action_from_env(env_a)
        assert back.dtype == np.int64 and back.shape == () and int(back) == a
        np.testing.assert_array_equal(ad.spec.check_action(back), back)
    with pytest.raises(SpecError, match="outside"):
        ad.action_to_env(np.int64(3))
    with pytest.raises(SpecError, match="integer"):
        ad.action_to_env(np.float32(1.0))


def test_adapter_discrete_with_start_offset():
    env = gym.make("CartPole-v1")
    env.action_space = gym.spaces.Discrete(2, start=5)
    ad = GymAdapter(env)
    assert ad.action_to_env(np.int64(1)) == 6
    assert int(ad.action_from_env(5)) == 0


def test_adapter_continuous_clips_and_roundtrips():
    env = gym.make("Pendulum-v1")
    ad = GymAdapter(env)
    env_a = ad.action_to_env(np.array([5.0], np.float32))
    assert env_a.dtype == np.float32 and env_a.shape == (1,) and env_a[0] == 2.0
    assert env.action_space.contains(env_a)
    back = ad.action_from_env(np.array([-0.5], np.float32))
    assert back.dtype == np.float32 and back.shape == (1,) and back[0] == -0.5
    with pytest.raises(SpecError, match="shape"):
        ad.action_to_env(np.zeros(2, np.float32))
    with pytest.raises(SpecError, match="NaN"):
        ad.action_to_env(np.array([np.nan], np.float32))


def test_adapter_dict_obs():
    env = ToyDictEnv()
    ad = GymAdapter(env)
    raw, _ = env.reset(seed=1)
    obs = ad.obs_to_dict(raw)
    ad.spec.check_observation(obs)
    assert obs["pos"].dtype == np.float32 and obs["cam"].dtype == np.uint8
    np.testing.assert_allclose(obs["pos"], raw["pos"], rtol=1e-6)
    back = ad.obs_to_raw(obs)
    assert back["pos"].dtype == np.float64 and env.observation_space.contains(back)


# --- episode_success / make_env ------------------------------------------------------------


def test_episode_success_rules():
    assert episode_success("MountainCar-v0", True, False, {}) is True
    assert episode_success("MountainCar-v0", False, True, {}) is False
    assert episode_success("CartPole-v1", False, True, {}) is True
    assert episode_success("CartPole-v1", True, False, {}) is False
    assert episode_success("CartPole-v1", True, True, {}) is False  # Fell on the last step.
    assert episode_success("Pendulum-v1", False, True, {}) is None
    assert episode_success(None, False, True, {}) is None
    # info["is_success"] wins over the per-env rule.
    assert episode_success("CartPole-v1", False, True, {"is_success": np.bool_(False)}) is False
    assert episode_success("Pendulum-v1", False, True, {"is_success": True}) is True


def test_make_env_known_and_unknown():
    env = make_env("CartPole-v1", render_mode="rgb_array")
    assert env.spec.id == "CartPole-v1" and env.render_mode == "rgb_array"
    env.close()
    with pytest.raises(UnknownEnvError, match="CartPol-v1.*CartPole-v1"):
        make_env("CartPol-v1")
    with pytest.raises(UnknownEnvError, match="il_ros/Nothing-v0"):
        make_env("il_ros/Nothing-v0")


def test_envs_module_does_not_import_sim():
    import subprocess
    import sys

    code = (
        "import sys, il_core.envs, il_core.rollout, il_core.collect; "
        "assert 'sim' not in sys.modules, 'sim imported at module import'"
    )
    repo_root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo_root)


# --- run_episode ---------------------------------------------------------------------------


def test_run_episode_on_step_pairs_action_with_its_observation():
    env = gym.make("CartPole-v1")
    ad = GymAdapter(env)
    seen: list[tuple[np.ndarray, np.ndarray, int]] = []
    gains = np.array([0.910, 2.143, 30.856, 7.879], np.float32)

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.int64(float(gains @ obs["state"]) > 0)

    res = run_episode(env, ad, act, seed=3, on_step=lambda o, a, t: seen.append((o, a, t)))
    assert isinstance(res, EpisodeResult)
    assert res.length == len(seen) == 500 and res.ret == 500.0 and res.success is True
    assert res.truncated and not res.terminated and res.frames is None
    assert [t for *_, t in seen] == list(range(500))
    # Re-run the raw env with the recorded actions: each recorded observation is the state
    # the paired action was applied to.
    raw, _ = env.reset(seed=3)
    for obs, action, _ in seen:
        np.testing.assert_array_equal(obs["state"], raw)
        assert action.dtype == np.int64 and action == act(obs)
        raw, *_ = env.step(int(action))


def test_run_episode_is_deterministic_given_seed():
    env = gym.make("MountainCar-v0")
    ad = GymAdapter(env)

    def act(obs):
        return np.int64(2 if obs["state"][1] >= 0 else 0)

    a = run_episode(env, ad, act, seed=11)
    b = run_episode(env, ad, act, seed=11)
    assert a == b and a.success is True and a.ret == -a.length


def test_run_episode_dict_env_success_clip_render():
    env = ToyDictEnv(render_mode="rgb_array")
    ad = GymAdapter(env)
    res = run_episode(env, ad, _toward_origin, seed=0, render=True)
    assert res.success is True and res.terminated and res.length < 40
    assert len(res.frames) == res.length + 1
    assert [int(f[0, 0, 0]) for f in res.frames] == list(range(res.length + 1))


def test_run_episode_max_steps_and_errors():
    env = gym.make("CartPole-v1")
    ad = GymAdapter(env)
    res = run_episode(env, ad, lambda o: np.int64(0), seed=0, max_steps=3)
    assert res.length == 3 and res.truncated and res.success is True  # Survived the limit.
    res = run_episode(env, ad, lambda o: np.int64(0), seed=0)
    assert res.terminated and res.success is False and res.length < 50
    with pytest.raises(SpecError, match="step 0"):
        run_episode(env, ad, lambda o: np.float32(0.5), seed=0)
    with pytest.raises(ValueError, match="rgb_array"):
        run_episode(env, ad, lambda o: np.int64(0), seed=0, render=True)
    with pytest.raises(ValueError, match="max_steps"):
        run_episode(env, ad, lambda o: np.int64(0), seed=0, max_steps=0)


def test_step_timestamp_is_simulated_time():
    assert step_timestamp(0, 50.0) == 0.0
    assert step_timestamp(25, 50.0) == pytest.approx(0.5)
