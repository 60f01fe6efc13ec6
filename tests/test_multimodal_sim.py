"""The multimodal reach simulator and its expert: contract, geometry, seeded sides."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim  # noqa: F401  (registers the il_ros/ envs)
from il_core.envs import GymAdapter, episode_success, make_env
from il_core.rollout import run_episode
from sim.experts import load_expert
from sim.multimodal import (
    GOAL_TOLERANCE,
    OBSTACLE_RADIUS,
    MultimodalReachEnv,
    MultimodalReachExpert,
    mode_summary,
)

STATE_ID = "il_ros/MultimodalReach-v0"
IMAGE_ID = "il_ros/MultimodalReachImage-v0"


def _expert_episode(env: gym.Env, expert, seed: int) -> tuple[dict, int]:
    expert.reset(seed=seed)
    obs, _ = env.reset(seed=seed)
    steps = 0
    while True:
        obs, _, terminated, truncated, info = env.step(expert(obs))
        steps += 1
        if terminated or truncated:
            return info, steps


@pytest.mark.parametrize("env_id", [STATE_ID, IMAGE_ID])
def test_envs_pass_gymnasium_check_env(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=False)
    env = gym.make(env_id, render_mode="rgb_array")
    check_env(env.unwrapped)
    env.reset(seed=0)
    assert env.render().shape == (128, 128, 3)


def test_spec_from_env_state_and_image():
    assert GymAdapter(make_env(STATE_ID)).spec.observations["state"].shape == (4,)
    spec = GymAdapter(make_env(IMAGE_ID)).spec
    assert spec.observations["image"].kind == "image"
    assert spec.observations["image"].shape == (32, 32, 3)
    assert spec.action.kind == "continuous" and spec.action.dim == 2
    assert spec.action.low == (-1.0, -1.0) and spec.action.high == (1.0, 1.0)


def test_expert_succeeds_and_uses_both_sides_with_equal_probability():
    env = gym.make(STATE_ID)
    expert = load_expert("auto", env)
    assert isinstance(expert, MultimodalReachExpert)
    infos = [_expert_episode(env, expert, seed) for seed in range(200)]
    successes = [i["is_success"] for i, _ in infos]
    summary = mode_summary(successes, [i["side"] for i, _ in infos])
    assert summary["success_rate"] == 1.0
    assert summary["min_side_share"] >= 0.4, summary  # measured 0.455 on seeds 0..199
    assert max(n for _, n in infos) <= 30  # well inside the 60-step limit


def test_expert_side_is_seeded_and_independent_of_the_start():
    env = gym.make(STATE_ID)
    expert = load_expert("auto", env)
    sides, starts = [], []
    for seed in range(200):
        expert.reset(seed=seed)
        sides.append(expert.side)
        starts.append(env.reset(seed=seed)[0][0])
        expert.reset(seed=seed)
        assert expert.side == sides[-1]
    # Same seed for env and expert must not tie the side to the start position.
    corr = np.corrcoef(sides, starts)[0, 1]
    assert abs(corr) < 0.2, corr


def test_going_straight_up_collides_from_every_start():
    env = MultimodalReachEnv()
    for seed in range(50):
        env.reset(seed=seed)
        while True:
            _, reward, terminated, truncated, info = env.step(np.array([0.0, 1.0], np.float32))
            if terminated or truncated:
                break
        assert info["collision"] and not info["is_success"] and reward < 0
        assert episode_success(STATE_ID, terminated, truncated, info) is False


def test_collision_is_checked_along_the_segment_not_only_at_the_end():
    env = MultimodalReachEnv()
    env.reset(seed=0)
    # A step that starts and ends outside the disc but cuts through its edge.
    env.pos = np.array([-0.05, -(OBSTACLE_RADIUS - 0.002)])
    assert np.linalg.norm(env.pos) > OBSTACLE_RADIUS  # both ends outside, the middle inside
    env.goal = np.array([0.0, 1.0])
    _, _, terminated, _, info = env.step(np.array([1.0, 0.0], np.float32))
    assert terminated and info["collision"]


def test_goal_reached_is_a_success_through_the_rollout_loop():
    env = make_env(STATE_ID)
    adapter = GymAdapter(env)
    expert = load_expert("auto", env)

    def act(obs):
        return adapter.action_from_env(expert(adapter.obs_to_raw(obs)))

    expert.reset(seed=3)
    result = run_episode(env, adapter, act, seed=3)
    assert result.success is True and result.terminated
    assert np.linalg.norm(env.unwrapped.pos - env.unwrapped.goal) < GOAL_TOLERANCE


def test_side_is_fixed_where_the_path_crosses_the_centre_line():
    env = MultimodalReachEnv()
    env.reset(seed=0)
    assert env.step(np.array([-1.0, 0.5], np.float32))[4]["side"] == 0
    env.pos = np.array([-0.6, -0.05])
    assert env.step(np.array([0.0, 1.0], np.float32))[4]["side"] == -1
    env.pos = np.array([0.6, -0.5])
    assert env.step(np.array([0.0, 1.0], np.float32))[4]["side"] == -1  # stays fixed


def test_image_expert_matches_state_expert_and_images_show_the_robot():
    state_env, image_env = gym.make(STATE_ID), gym.make(IMAGE_ID)
    state_expert, image_expert = load_expert("auto", state_env), load_expert("auto", image_env)
    for seed in range(5):
        (a, len_a), (b, len_b) = (
            _expert_episode(state_env, state_expert, seed),
            _expert_episode(image_env, image_expert, seed),
        )
        assert (a["is_success"], a["side"], len_a) == (b["is_success"], b["side"], len_b)
        assert a["distance"] == pytest.approx(b["distance"], abs=1e-6)  # float32 obs rounding
    img0, _ = image_env.reset(seed=0)
    image_env.unwrapped.pos = np.array([0.8, -0.8])
    img1 = image_env.unwrapped.draw(32)
    assert img0.dtype == np.uint8 and not np.array_equal(img0, img1)
    # The robot is drawn red: the reddest pixel moves with it.
    red = img1[..., 0].astype(int) - img1[..., 1]
    row, col = np.unravel_index(np.argmax(red), red.shape)
    assert col > 16 and row > 16  # right half, bottom half


def test_mode_summary():
    s = mode_summary([True, True, False, True], [-1, 1, 0, 1])
    assert s == {
        "episodes": 4,
        "success_rate": 0.75,
        "left": 1,
        "right": 2,
        "min_side_share": 1 / 3,
    }
    assert mode_summary([False], [0])["min_side_share"] == 0.0
