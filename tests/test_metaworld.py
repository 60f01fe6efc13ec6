"""MetaWorld v3 envs (``il_ros/MetaWorld-<task>``, ``il_ros/MetaWorldPixels-<task>``).

Skipped where ``metaworld`` is not installed (it is an optional benchmark dependency). Where
it is, the pixel tests need OSMesa (``libosmesa6``): without it they fail, loudly, so that
CI (which installs it, see ``.ci/run``) never passes without having rendered.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import sim
from il_core.data import EpisodeDataset
from il_core.envs import GymAdapter, episode_success
from sim.experts import DEFAULT_EXPERTS, load_expert
from sim.metaworld_envs import TASKS, OffscreenCamera, pixels_id, state_id
from tests.helpers import il_core_json

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("metaworld") is None,
    reason="needs MetaWorld (pip install metaworld); an optional benchmark dependency",
)

# Before anything imports mujoco (it picks its GL backend then); the env does the same.
os.environ.setdefault("MUJOCO_GL", "osmesa")


def test_import_sim_stays_cheap() -> None:
    """Registering the 100 ids must not import metaworld or mujoco."""
    code = "import sys, sim; print(int('metaworld' in sys.modules or 'mujoco' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_every_mt50_task_is_registered_with_an_expert() -> None:
    import metaworld

    assert list(TASKS) == list(metaworld.ALL_V3_ENVIRONMENTS)
    for task in TASKS:
        for env_id in (state_id(task), pixels_id(task)):
            assert env_id in gym.registry
            assert gym.registry[env_id].max_episode_steps == 500
            assert DEFAULT_EXPERTS[env_id] == "metaworld"
    assert sim.METAWORLD_TASKS == TASKS


@pytest.fixture(scope="module")
def reach_pixels():
    env = gym.make(pixels_id("reach-v3"))
    yield env
    env.close()


def test_observation_spaces_of_state_and_pixels(reach_pixels) -> None:
    # check_env runs over the MT10 ids in tests/test_envs_check.py.
    env = gym.make(state_id("drawer-close-v3"))
    try:
        assert env.observation_space.shape == (39,)
    finally:
        env.close()
    space = reach_pixels.observation_space
    assert space["camera"].shape == (84, 84, 3) and space["state"].shape == (4,)


def test_seeded_reset_is_reproducible(reach_pixels) -> None:
    env = gym.make(state_id("drawer-close-v3"))
    try:
        actions = np.random.default_rng(0).uniform(-1, 1, (20, 4)).astype(np.float32)

        def run(e, seed):
            obs, info = e.reset(seed=seed)
            out = [obs]
            for a in actions:
                out.append(e.step(a)[0])
            return info["task_index"], out

        i1, a = run(env, 7)
        i2, b = run(env, 7)
        assert i1 == i2 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        # Goal xyz (the last 3 dims) differs between configurations drawn by other seeds.
        goals = {tuple(env.reset(seed=s)[0][-3:].round(4)) for s in range(8)}
        assert len(goals) > 1
        _, p1 = run(reach_pixels, 3)
        _, p2 = run(reach_pixels, 3)
        assert all(np.array_equal(x["camera"], y["camera"]) for x, y in zip(p1, p2, strict=True))
        assert all(np.array_equal(x["state"], y["state"]) for x, y in zip(p1, p2, strict=True))
    finally:
        env.close()


@pytest.mark.parametrize("task", ["reach-v3", "drawer-close-v3"])
def test_expert_succeeds_within_the_time_limit(task: str) -> None:
    env = gym.make(state_id(task))
    try:
        expert = load_expert("auto", env)
        for seed in range(3):
            obs, _ = env.reset(seed=seed)
            for t in range(500):  # noqa: B007 - t is reported on failure.
                action = expert(obs)
                assert env.action_space.contains(action)
                obs, _, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
            assert terminated and not truncated, (task, seed, t)
            assert info["is_success"] and episode_success(env.spec.id, True, False, info)
    finally:
        env.close()


def test_pixel_expert_uses_the_privileged_state(reach_pixels) -> None:
    expert = load_expert("auto", reach_pixels)
    obs, _ = reach_pixels.reset(seed=1)
    state = reach_pixels.unwrapped.state
    assert np.allclose(obs["state"], state[:4], atol=1e-6)
    assert np.array_equal(expert(obs), expert({"camera": None, "state": None}))


def _brown(img: np.ndarray) -> float:
    """Mean red-minus-blue: high on the wooden table, near 0 on the grey wall."""
    return float(img[..., 0].astype(float).mean() - img[..., 2].astype(float).mean())


def test_default_camera_shows_the_table_below_the_wall(reach_pixels) -> None:
    """Right way up, corner4 sees the grey wall at the top and the wooden table below."""
    img = reach_pixels.reset(seed=0)[0]["camera"]
    assert _brown(img[-28:]) > _brown(img[:20]) + 15


def test_which_cameras_are_mounted_upside_down(reach_pixels) -> None:
    """MetaWorld's corner cameras have their image "up" axis pointing at the floor."""
    base = reach_pixels.unwrapped
    upside_down = {
        name: bool(base._env.data.cam(name).xmat[7] < 0)
        for name in ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper")
    }
    assert upside_down == {
        "corner": True,
        "corner2": True,
        "corner3": True,
        "corner4": True,
        "topview": False,
        "behindGripper": False,
    }


@pytest.mark.parametrize(("camera", "upside_down"), [("corner4", True), ("behindGripper", False)])
def test_images_are_the_right_way_up(reach_pixels, camera: str, upside_down: bool) -> None:
    """Ours is MuJoCo's own image, turned by 180 degrees where the camera is upside down.

    Turned, not mirrored: a mirror image would also put the floor at the bottom.
    """
    import mujoco

    base = reach_pixels.unwrapped
    base.reset(seed=0)
    model, data = base._env.model, base._env.data
    cam = OffscreenCamera(model, camera, 64, 64)
    try:
        assert cam.upside_down(data) == upside_down
        img = cam.render(data).astype(int)
    finally:
        cam.close()
    # mujoco.Renderer returns the image in the camera's own frame.
    with mujoco.Renderer(model, 64, 64) as ref:
        ref.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        ref.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        ref.update_scene(data, camera=camera)
        theirs = ref.render().astype(int)
    expected = theirs[::-1, ::-1] if upside_down else theirs
    diff = np.abs(img - expected).mean()
    assert diff < 2.0
    for wrong in (theirs[::-1], theirs[:, ::-1], theirs if upside_down else theirs[::-1, ::-1]):
        assert np.abs(img - wrong).mean() > 5 * diff + 5


def test_closing_one_renderer_leaves_another_intact(reach_pixels) -> None:
    """mujoco.Renderer's close frees GL objects of the current context; ours does not."""
    obs, _ = reach_pixels.reset(seed=0)
    other = OffscreenCamera(reach_pixels.unwrapped._env.model, "corner4", 84, 84)
    other.render(reach_pixels.unwrapped._env.data)
    other.close()
    again, _ = reach_pixels.reset(seed=0)
    assert np.array_equal(obs["camera"], again["camera"])


def test_video_frames_and_the_adapter(reach_pixels) -> None:
    env = gym.make(state_id("reach-v3"), render_mode="rgb_array", render_size=48)
    try:
        env.reset(seed=0)
        frame = env.render()
        assert frame.shape == (48, 48, 3) and frame.dtype == np.uint8 and frame.std() > 10
    finally:
        env.close()
    adapter = GymAdapter(reach_pixels)
    assert set(adapter.spec.observations) == {"camera", "state"}
    assert adapter.spec.observations["camera"].kind == "image"
    assert adapter.control_rate_hz == 80.0


def test_collect_pixels_via_cli(tmp_path) -> None:
    out = tmp_path / "data"
    summary = il_core_json(
        "collect", "--env", pixels_id("reach-v3"), "--episodes", 2, "--seed", 0, "--out", out
    )
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0
    ds = EpisodeDataset(out)
    assert ds.num_episodes == 2
    ep = ds.episode(0)
    assert ep.observations["camera"].shape[1:] == (84, 84, 3)
    assert ep.observations["state"].shape[1:] == (4,)
    assert ep.actions.shape[1:] == (4,) and len(ep) < 500 and ep.info.success
