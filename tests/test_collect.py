"""collect() records seeded expert episodes: actions match the expert, success labels match."""

from __future__ import annotations

import json
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest

from il_core.collect import collect, main
from il_core.data import EpisodeDataset
from il_core.envs import UnknownEnvError
from sim.experts import CartPoleLinearExpert, ExpertError, MountainCarVelocityExpert

# A user module with a Dict/image env and experts, imported by name as a user's would be.
_USER_MODULE = textwrap.dedent(
    '''
    import gymnasium as gym
    import numpy as np

    class ToyImageEnv(gym.Env):
        """Point mass with {"cam": (6, 8, 3) uint8, "pos": (2,)} observations."""

        metadata = {"render_modes": [], "render_fps": 20}

        def __init__(self):
            self.observation_space = gym.spaces.Dict({
                "pos": gym.spaces.Box(-2.0, 2.0, (2,), np.float32),
                "cam": gym.spaces.Box(0, 255, (6, 8, 3), np.uint8),
            })
            self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

        def _obs(self):
            cam = np.zeros((6, 8, 3), np.uint8)
            cam[..., 1] = np.uint8(min(255, 100 * np.linalg.norm(self.pos)))
            return {"pos": self.pos.astype(np.float32), "cam": cam}

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.pos = self.np_random.uniform(-1.5, 1.5, size=2)
            return self._obs(), {}

        def step(self, action):
            self.pos = np.clip(self.pos + 0.2 * np.asarray(action), -2.0, 2.0)
            ok = bool(np.linalg.norm(self.pos) < 0.1)
            return self._obs(), -float(np.linalg.norm(self.pos)), ok, False, {"is_success": ok}

    def toward_origin(obs):
        return np.clip(-2.0 * obs["pos"], -1.0, 1.0).astype(np.float32)

    def right_half_only(obs):
        # Succeeds from starts with x > 0 (it never crosses x = 0), stands still otherwise.
        if obs["pos"][0] > 0:
            return toward_origin(obs)
        return np.zeros(2, np.float32)

    def pendulum_pd(obs):
        # Not a good swing-up, just a deterministic continuous expert.
        cos_t, sin_t, theta_dot = obs
        return np.array([np.clip(-3.0 * sin_t - 0.5 * theta_dot, -2.0, 2.0)], np.float32)

    class FailsOnSecondEpisode:
        def __init__(self, env):
            self.episode = -1
            self.t = 0

        def reset(self, seed=None):
            self.episode += 1
            self.t = 0

        def __call__(self, obs):
            self.t += 1
            if self.episode == 1 and self.t == 30:
                raise RuntimeError("expert crashed")
            return 2 if obs[1] >= 0 else 0
    '''
)

TOY_ID = "il_ros_test/ToyImage-v0"


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    name = "il_ros_test_collect_user"
    (tmp_path / f"{name}.py").write_text(_USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    gym.register(id=TOY_ID, entry_point=f"{name}:ToyImageEnv", max_episode_steps=40)
    yield name
    gym.registry.pop(TOY_ID, None)
    sys.modules.pop(name, None)


def _first_obs(env_id: str, seed: int) -> np.ndarray:
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    env.close()
    return obs


def test_collect_cartpole_actions_match_expert(tmp_path):
    out = tmp_path / "cp"
    summary = collect("CartPole-v1", "auto", episodes=4, seed=10, out=out, flush_every=64)
    assert summary["episodes"] == 4 and summary["steps"] == 2000
    assert summary["mean_return"] == 500.0 and summary["success_rate"] == 1.0
    assert summary["out"] == str(out)

    ds = EpisodeDataset(out)
    assert len(ds.episodes) == 4 and ds.num_steps == 2000
    assert ds.spec.metadata == {"env_id": "CartPole-v1"}
    expert = CartPoleLinearExpert()
    seeds = []
    for i, info in enumerate(ds.episodes):
        assert info.length == 500 and info.success is True
        assert info.metadata["env_id"] == "CartPole-v1"
        assert info.metadata["expert"] == "auto"
        seeds.append(info.metadata["seed"])
        ep = ds.episode(i)
        states = ep.observations["state"]
        assert states.shape == (500, 4) and ep.actions.shape == (500,)
        np.testing.assert_array_equal(ep.actions, [expert(s) for s in states])
        np.testing.assert_allclose(ep.timestamps, np.arange(500) / 50.0)
        # The first recorded observation is the seeded reset state.
        np.testing.assert_array_equal(states[0], _first_obs("CartPole-v1", info.metadata["seed"]))
    assert sorted(seeds) == [10, 11, 12, 13]


def test_collect_mountaincar_success_labels_and_append(tmp_path):
    out = tmp_path / "mc"
    s1 = collect("MountainCar-v0", "mountaincar_velocity", episodes=2, seed=0, out=out)
    s2 = collect("MountainCar-v0", "auto", episodes=1, seed=2, out=out)
    assert s1["success_rate"] == 1.0 and s2["success_rate"] == 1.0
    ds = EpisodeDataset(out)
    assert len(ds.episodes) == 3 and ds.num_steps == s1["steps"] + s2["steps"]
    expert = MountainCarVelocityExpert()
    by_seed = {info.metadata["seed"]: (i, info) for i, info in enumerate(ds.episodes)}
    assert sorted(by_seed) == [0, 1, 2]
    for seed, (i, info) in by_seed.items():
        # Replaying the expert in the env reproduces the label and the length.
        env = gym.make("MountainCar-v0")
        obs, _ = env.reset(seed=seed)
        length, terminated = 0, False
        while True:
            obs, _, terminated, truncated, _ = env.step(expert(obs))
            length += 1
            if terminated or truncated:
                break
        assert terminated and info.success is True and info.length == length
        ep = ds.episode(i)
        np.testing.assert_array_equal(ep.actions, [expert(s) for s in ep.observations["state"]])
        np.testing.assert_allclose(ep.timestamps, np.arange(length) / 30.0)
    assert ds.episode(by_seed[0][0]).actions.dtype == np.int64


def test_collect_continuous_module_expert_without_success(tmp_path, user_module):
    out = tmp_path / "pend"
    summary = collect("Pendulum-v1", f"{user_module}:pendulum_pd", episodes=2, seed=5, out=out)
    assert summary["steps"] == 400 and summary["success_rate"] is None
    ds = EpisodeDataset(out)
    mod = sys.modules[user_module]
    for i, info in enumerate(ds.episodes):
        assert info.success is None and info.length == 200
        ep = ds.episode(i)
        assert ep.actions.shape == (200, 1) and ep.actions.dtype == np.float32
        expected = np.stack([mod.pendulum_pd(s) for s in ep.observations["state"]])
        np.testing.assert_array_equal(ep.actions, expected)


def test_collect_dict_image_env(tmp_path, user_module):
    out = tmp_path / "toy"
    summary = collect(TOY_ID, f"{user_module}:toward_origin", episodes=3, seed=0, out=out)
    assert summary["episodes"] == 3 and summary["success_rate"] == 1.0
    ds = EpisodeDataset(out)
    assert ds.spec.image_keys == ["cam"] and ds.spec.vector_keys == ["pos"]
    mod = sys.modules[user_module]
    for i, info in enumerate(ds.episodes):
        assert info.success is True
        ep = ds.episode(i)
        T = info.length
        assert ep.observations["cam"].shape == (T, 6, 8, 3)
        assert ep.observations["cam"].dtype == np.uint8
        expected = np.stack([mod.toward_origin({"pos": p}) for p in ep.observations["pos"]])
        np.testing.assert_allclose(ep.actions, expected, rtol=1e-6)


def test_collect_discards_episode_on_expert_crash(tmp_path, user_module):
    out = tmp_path / "crash"
    with pytest.raises(RuntimeError, match="expert crashed"):
        collect("MountainCar-v0", f"{user_module}:FailsOnSecondEpisode", 3, 0, out)
    ds = EpisodeDataset(out)
    assert len(ds.episodes) == 1 and ds.episodes[0].metadata["seed"] == 0
    leftovers = [p.name for p in (out / "episodes").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_collect_errors_leave_no_dataset(tmp_path):
    out = tmp_path / "none"
    with pytest.raises(ExpertError, match="unknown expert 'nope'"):
        collect("CartPole-v1", "nope", 1, 0, out)
    with pytest.raises(ExpertError, match="no default expert"):
        collect("Acrobot-v1", "auto", 1, 0, out)
    with pytest.raises(UnknownEnvError, match="NoSuchEnv-v0"):
        collect("NoSuchEnv-v0", "auto", 1, 0, out)
    with pytest.raises(ValueError, match="episodes"):
        collect("CartPole-v1", "auto", 0, 0, out)
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:.*CartPole-v0 is out of date")
def test_collect_refuses_to_mix_envs_with_equal_spaces(tmp_path):
    out = tmp_path / "mix"
    collect("CartPole-v1", "auto", 1, 0, out)
    with pytest.raises(ValueError, match="'CartPole-v1', not 'CartPole-v0'"):
        collect("CartPole-v0", "cartpole_linear", 1, 0, out)
    assert len(EpisodeDataset(out).episodes) == 1


def test_collect_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--env", "MountainCar-v0", "--episodes", "2", "--seed", "3", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0
    assert len(EpisodeDataset(out).episodes) == 2
    assert main(["--env", "Nope-v0", "--episodes", "1", "--out", str(out)]) == 2
    assert "Nope-v0" in capsys.readouterr().err


def test_collect_successful_only_keeps_successes_and_says_what_it_skipped(tmp_path, user_module):
    out = tmp_path / "ok"
    s = collect(
        TOY_ID, f"{user_module}:right_half_only", episodes=3, seed=0, out=out, successful_only=True
    )
    right = [seed for seed in range(50) if _first_obs(TOY_ID, seed)["pos"][0] > 0][:3]
    ds = EpisodeDataset(out)
    assert [info.metadata["seed"] for info in ds.episodes] == right
    assert all(info.success for info in ds.episodes) and s["episodes"] == 3
    assert s["attempts"] == right[-1] + 1 and s["discarded"] == s["attempts"] - 3
    assert s["success_rate"] == 3 / s["attempts"] and ds.num_steps == s["steps"]


def test_collect_successful_only_gives_up_keeping_what_it_stored(tmp_path, user_module):
    out = tmp_path / "few"
    expert = f"{user_module}:right_half_only"
    with pytest.raises(ValueError, match=r"succeeded in \d+ of 4 episodes.*fewer than the 4"):
        collect(TOY_ID, expert, episodes=4, seed=0, out=out, successful_only=True, max_attempts=4)
    ds = EpisodeDataset(out)
    assert ds.num_episodes >= 1 and all(info.success for info in ds.episodes)
    with pytest.raises(ValueError, match="no success definition"):
        collect(
            "Pendulum-v1", f"{user_module}:pendulum_pd", 1, 0, tmp_path / "p", successful_only=True
        )
