"""The lane-following simulator (sim.lane), its privileged expert, and the CarRacing driver."""

from __future__ import annotations

import importlib.util
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim
from il_core.augment import steering_offset_from_geometry
from il_core.collect import collect
from il_core.data import EpisodeDataset
from il_core.envs import GymAdapter, make_env
from sim.experts import CarRacingPursuitExpert, LanePurePursuitExpert, load_expert
from sim.lane import CameraMount, LaneFollowEnv, generate_track

ID = "il_ros/LaneFollow-v0"
NOISY = "il_ros/LaneFollowNoisy-v0"


def drive(env: gym.Env, policy, seed: int) -> tuple[float, dict, int]:
    """One raw episode: (return, final info, steps)."""
    env.reset(seed=seed)
    ret, steps = 0.0, 0
    while True:
        _, reward, terminated, truncated, info = env.step(policy())
        ret += reward
        steps += 1
        if terminated or truncated:
            return ret, info, steps


@pytest.mark.parametrize("env_id", [ID, NOISY])
def test_passes_the_gymnasium_env_checker(env_id):
    env = gym.make(env_id, render_mode="rgb_array").unwrapped
    with warnings.catch_warnings():
        # The action is in physical units (rad, m/s) on purpose; the checker recommends
        # [-1, 1] for reinforcement learning.
        warnings.filterwarnings("ignore", message=".*symmetric and normalized space")
        check_env(env)


def test_spaces_spec_and_registration():
    env = make_env(ID)
    adapter = GymAdapter(env)
    assert sorted(adapter.spec.observations) == ["cam_center", "cam_left", "cam_right"]
    assert {f.shape for f in adapter.spec.observations.values()} == {(64, 64, 3)}
    assert adapter.spec.action.kind == "continuous" and adapter.spec.action.dim == 2
    assert adapter.spec.action.low == pytest.approx((-0.5, 0.0))
    assert adapter.control_rate_hz == 10.0
    noisy = make_env(NOISY).unwrapped
    assert noisy.steering_bias == sim.LANE_EVAL_NOISE["steering_bias"] > 0
    assert noisy.random_bias_sign and noisy.steering_noise > 0
    assert isinstance(load_expert("auto", env), LanePurePursuitExpert)
    assert isinstance(load_expert("auto", make_env(NOISY)), LanePurePursuitExpert)


def test_tracks_are_seeded_drivable_and_varied():
    lengths = set()
    for seed in range(8):
        a = generate_track(np.random.default_rng(seed))
        b = generate_track(np.random.default_rng(seed))
        np.testing.assert_array_equal(a.points, b.points)
        assert a.min_radius >= 2.0
        gaps = np.linalg.norm(np.diff(a.points, axis=0, append=a.points[:1]), axis=1)
        np.testing.assert_allclose(gaps, a.ds, rtol=0.05)  # uniform sampling, closed
        lengths.add(round(a.length, 3))
    assert len(lengths) == 8
    env = LaneFollowEnv()
    o1, _ = env.reset(seed=5)
    o2, _ = env.reset(seed=5)
    o3, _ = env.reset(seed=6)
    np.testing.assert_array_equal(o1["cam_center"], o2["cam_center"])
    assert not np.array_equal(o1["cam_center"], o3["cam_center"])


def test_expert_completes_every_lap_on_the_centreline():
    env = make_env(ID)
    expert = load_expert("auto", env)
    for seed in range(20):
        ret, info, steps = drive(env, lambda: expert(None), seed)
        assert info["is_success"] and not info["off_road"], f"seed {seed}: {info}"
        assert ret == pytest.approx(info["track_length"], abs=0.2)  # reward = progress
        # Measured: about 9 mm on average on seeds 0..49, on a 1 m wide road.
        assert info["mean_lateral_error"] < 0.02, f"seed {seed}: {info}"
        assert steps < 1.1 * info["track_length"] / (1.5 * 0.1)


def test_leaving_the_road_ends_the_episode_as_a_failure():
    env = LaneFollowEnv()
    ret, info, steps = drive(env, lambda: np.array([0.5, 1.5], np.float32), seed=0)
    assert info["off_road"] and not info["is_success"]
    assert abs(info["lateral_error"]) > env.road_half_width
    assert steps < 40


def test_a_stopped_car_is_truncated():
    env = LaneFollowEnv(time_limit_factor=1.5)
    env.reset(seed=0)
    for _ in range(10_000):
        _, _, terminated, truncated, info = env.step(np.zeros(2, np.float32))
        if terminated or truncated:
            break
    assert truncated and not terminated and not info["is_success"]


def test_a_side_camera_sees_what_the_centre_camera_sees_after_a_drift():
    """The premise of side-view augmentation, exact in this simulator."""
    d, psi = 0.2, 0.15
    env = LaneFollowEnv(cameras=[("left", d, psi), ("center", 0.0, 0.0)])
    obs, _ = env.reset(seed=3)
    x, y, th = env._state
    fwd = env.camera_forward
    # Move the car so that its centre camera sits where the left camera was, turned by psi.
    cam = np.array(
        [x + fwd * math.cos(th) - d * math.sin(th), y + fwd * math.sin(th) + d * math.cos(th)]
    )
    th2 = th + psi
    env._state = np.array([cam[0] - fwd * math.cos(th2), cam[1] - fwd * math.sin(th2), th2])
    moved = env.render_camera(CameraMount("center"))
    np.testing.assert_array_equal(moved, obs["left"])
    assert not np.array_equal(obs["left"], obs["center"])


def test_steering_bias_and_noise_act_on_the_car():
    env = LaneFollowEnv(steering_bias=0.1, substeps=1)
    env.reset(seed=0)
    th0 = env._state[2]
    env.step(np.array([0.0, 1.0], np.float32))
    # Kinematic bicycle: heading rate v tan(delta) / W.
    assert env._state[2] - th0 == pytest.approx(1.0 * math.tan(0.1) / env.wheelbase * env.dt)
    signs = set()
    env = LaneFollowEnv(steering_bias=0.1, random_bias_sign=True)
    for seed in range(10):
        _, info = env.reset(seed=seed)
        signs.add(info["steering_bias"])
    assert signs == {0.1, -0.1}
    noisy = LaneFollowEnv(steering_noise=0.05)
    noisy.reset(seed=0)
    headings = []
    for _ in range(5):
        noisy.step(np.array([0.0, 1.0], np.float32))
        headings.append(noisy._state[2])
    assert np.std(np.diff(headings)) > 0  # straight commands, wandering heading


def test_the_privileged_expert_recovers_from_the_evaluation_bias():
    env = LaneFollowEnv(steering_bias=0.08)
    expert = LanePurePursuitExpert(env)
    _, biased, _ = drive(env, lambda: expert(None), 0)
    # It closes the loop on the true pose, so the bias only costs it some lateral error.
    assert biased["is_success"] and biased["mean_lateral_error"] < 0.1


def test_default_side_cameras_give_a_correction_of_the_right_sign():
    env = LaneFollowEnv()
    left, centre, right = env.cameras
    assert (left.lateral_offset, centre.lateral_offset, right.lateral_offset) == (0.2, 0.0, -0.2)
    # Steering + = left: the left camera's label steers right, and vice versa.
    assert steering_offset_from_geometry(left.lateral_offset, left.yaw, 1.0, env.wheelbase) < 0
    assert steering_offset_from_geometry(right.lateral_offset, right.yaw, 1.0, env.wheelbase) > 0


def test_render_and_collect(tmp_path):
    env = LaneFollowEnv(render_mode="rgb_array", image_size=32)
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    summary = collect(ID, "auto", 2, 0, tmp_path / "data")
    assert summary["success_rate"] == 1.0
    ds = EpisodeDataset(tmp_path / "data")
    assert sorted(ds.spec.image_keys) == ["cam_center", "cam_left", "cam_right"]
    assert ds.num_steps == summary["steps"]


@pytest.mark.skipif(importlib.util.find_spec("Box2D") is None, reason="needs gymnasium[box2d]")
def test_carracing_driver_drives():
    env = gym.make("CarRacing-v3")
    expert = load_expert("carracing_pursuit", env)
    assert isinstance(expert, CarRacingPursuitExpert)
    obs, _ = env.reset(seed=1)
    ret = 0.0
    for _ in range(300):
        obs, reward, terminated, truncated, _ = env.step(expert(obs))
        ret += reward
    assert ret > 250  # tiles collected in the first 300 frames (of about 800 per lap)


def test_carracing_driver_refuses_other_envs():
    with pytest.raises(sim.ExpertError, match="carracing_pursuit"):
        CarRacingPursuitExpert(gym.make("CartPole-v1"))
    with pytest.raises(sim.ExpertError, match="lane_pure_pursuit"):
        LanePurePursuitExpert(gym.make("CartPole-v1"))
