"""MetaWorld v3 (MuJoCo Sawyer arm) tasks as ``il_ros/MetaWorld-<task>`` gymnasium envs.

Two variants of each of the 50 MT50 tasks (:data:`TASKS`, ``"push-v3"`` ...):

- ``il_ros/MetaWorld-<task>``: MetaWorld's 39-d state, a ``Box(39,)`` (hand xyz, gripper
  opening, two object poses padded to 14, the same 18 of the previous step, goal xyz).
- ``il_ros/MetaWorldPixels-<task>``: a ``Dict`` of ``camera`` ``(H, W, 3)`` uint8 (84x84 by
  default) from one fixed camera, and ``state`` ``(4,)`` = hand xyz (m) and gripper opening
  (0 closed .. 1 open), the first 4 dims of the state.

Action ``(4,)`` in [-1, 1]: hand displacement (x, y, z; 1 = 1 cm per step) and grip effort.
One step is 5 physics steps of 2.5 ms (80 Hz). An episode terminates on MetaWorld's
``info["success"]`` (also reported as ``info["is_success"]``, which
:func:`il_core.envs.episode_success` reads) and is truncated after ``max_path_length`` (500)
steps.

Seeding: the configurations (object and goal positions) are MetaWorld's MT1 tasks, the 50
``metaworld.MT1(task, seed=task_seed).train_tasks``; ``reset(seed=s)`` seeds the env's
``np_random``, which picks one of them, so a seed always gives the same episode. MetaWorld's
own ``reset`` ignores its ``seed`` argument (and ``gym.make("Meta-World/MT1")`` samples the
task from an RNG that ``reset(seed=)`` does not touch), hence this wrapper.

Camera: ``corner4`` by default, a fixed view from the front right, close to the table, that
keeps the gripper and the task objects of the MT10 tasks in view at 84x84 through the
expert's episodes (``corner2`` sees the whole table but the objects shrink to a few pixels;
``topview`` loses the height of the hand; ``behindGripper`` moves with the hand, so it is no
fixed view). MetaWorld's ``corner*`` cameras are defined upside down (their image "up" axis
points at the floor), so an image is turned the right way up (rotated 180 degrees, not
mirrored) whenever the camera's up axis has a negative world z; ``topview`` and
``behindGripper`` are upright and left as they are.

Rendering is headless with OSMesa (Debian's ``libosmesa6``): ``MUJOCO_GL`` defaults to
``osmesa`` when it is unset and there is no display. Only the observation camera is
rendered, into an offscreen buffer of exactly the image size, with one renderer per env
that lives as long as the env (see :class:`OffscreenCamera`).

``metaworld`` and ``mujoco`` are imported when an env is made, never by ``import sim``.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = [
    "DEFAULT_CAMERA",
    "MT10_TASKS",
    "TASKS",
    "MetaWorldEnv",
    "MetaWorldExpert",
    "OffscreenCamera",
    "pixels_id",
    "state_id",
]

#: The 50 MetaWorld v3 tasks (MT50), in MetaWorld's order (``metaworld.ALL_V3_ENVIRONMENTS``;
#: tests/test_metaworld.py checks the two agree). Listed here so that registering the envs
#: does not import metaworld.
TASKS: tuple[str, ...] = (
    "assembly-v3",
    "basketball-v3",
    "bin-picking-v3",
    "box-close-v3",
    "button-press-topdown-v3",
    "button-press-topdown-wall-v3",
    "button-press-v3",
    "button-press-wall-v3",
    "coffee-button-v3",
    "coffee-pull-v3",
    "coffee-push-v3",
    "dial-turn-v3",
    "disassemble-v3",
    "door-close-v3",
    "door-lock-v3",
    "door-open-v3",
    "door-unlock-v3",
    "hand-insert-v3",
    "drawer-close-v3",
    "drawer-open-v3",
    "faucet-open-v3",
    "faucet-close-v3",
    "hammer-v3",
    "handle-press-side-v3",
    "handle-press-v3",
    "handle-pull-side-v3",
    "handle-pull-v3",
    "lever-pull-v3",
    "pick-place-wall-v3",
    "pick-out-of-hole-v3",
    "pick-place-v3",
    "plate-slide-v3",
    "plate-slide-side-v3",
    "plate-slide-back-v3",
    "plate-slide-back-side-v3",
    "peg-insert-side-v3",
    "peg-unplug-side-v3",
    "soccer-v3",
    "stick-push-v3",
    "stick-pull-v3",
    "push-v3",
    "push-wall-v3",
    "push-back-v3",
    "reach-v3",
    "reach-wall-v3",
    "shelf-place-v3",
    "sweep-into-v3",
    "sweep-v3",
    "window-open-v3",
    "window-close-v3",
)

#: The MT10 subset (``metaworld.env_dict.MT10_V3``).
MT10_TASKS: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)

#: Camera of the pixel variant (see the module docstring for the choice).
DEFAULT_CAMERA = "corner4"
#: ``render_quality`` values (see :class:`OffscreenCamera`).
RENDER_QUALITIES = ("fast", "full")
#: MetaWorld's episode length (``SawyerXYZEnv.max_path_length``).
MAX_PATH_LENGTH = 500


def state_id(task: str) -> str:
    """``"push-v3"`` -> ``"il_ros/MetaWorld-push-v3"``."""
    return f"il_ros/MetaWorld-{task}"


def pixels_id(task: str) -> str:
    """``"push-v3"`` -> ``"il_ros/MetaWorldPixels-push-v3"``."""
    return f"il_ros/MetaWorldPixels-{task}"


def _import_metaworld() -> Any:
    """Import metaworld (and mujoco), choosing OSMesa when no GL backend is chosen."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        # Must be set before mujoco is first imported: it picks its GL backend then.
        os.environ["MUJOCO_GL"] = "osmesa"
    try:
        import metaworld
    except ModuleNotFoundError as e:
        raise gym.error.DependencyNotInstalled(
            "the il_ros/MetaWorld* envs need MetaWorld: pip install metaworld (3.1)"
        ) from e
    return metaworld


@functools.lru_cache(maxsize=64)
def _mt1_tasks(task: str, task_seed: int) -> tuple[Any, ...]:
    """The 50 MT1 train tasks of ``task`` (about 2 s to make, so made once per process).

    A :class:`metaworld.types.Task` holds only a name and pickled bytes, so sharing the
    tuple between envs is safe.
    """
    metaworld = _import_metaworld()
    return tuple(metaworld.MT1(task, seed=task_seed).train_tasks)


class OffscreenCamera:
    """Renders one MuJoCo camera into a reused offscreen buffer of exactly its image size.

    Faster than gymnasium's ``MujocoRenderer`` for small images: the buffer is ``H x W``
    (not the model's 480x480), the scene holds one camera, and the pixels are read into a
    preallocated array. It also frees its GL objects in the right order: ``mujoco.Renderer
    .close`` destroys its GL context before freeing the MuJoCo render context, which (with
    OSMesa) frees GL objects of whatever other context is current, so closing one env's
    renderer garbles the images of another env that is still open.

    The image is turned the right way up: OpenGL reads rows bottom-up, and a camera whose
    "up" axis points at the floor (MetaWorld's ``corner*``) gets an extra 180 degree turn.
    """

    def __init__(
        self, model: Any, camera: str, width: int, height: int, quality: str = "fast"
    ) -> None:
        """Create the GL context and the render context for ``camera`` of ``model``.

        Args:
            model: The ``mujoco.MjModel`` (its offscreen buffer size is set to the image's).
            camera: Camera name.
            width: Image width (pixels).
            height: Image height (pixels).
            quality: ``"fast"``: no shadows, no reflections, no multisampling, about 14x
                faster with OSMesa (the shadow pass dominates; see docs/benchmarks.md).
                ``"full"``: MetaWorld's look (shadows, reflections, 4x multisampling).

        Raises:
            ValueError: ``camera`` is not a camera of the model (the message lists them).
            RuntimeError: no OpenGL (for OSMesa: ``apt-get install libosmesa6``).
        """
        import mujoco

        cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if quality not in RENDER_QUALITIES:
            raise ValueError(f"render quality must be one of {RENDER_QUALITIES}, got {quality!r}")
        if cam_id < 0:
            names = [model.camera(i).name for i in range(model.ncam)]
            raise ValueError(f"unknown MetaWorld camera {camera!r}; the model has {names}")
        self._mujoco, self._model, self.camera, self.width, self.height = (
            mujoco,
            model,
            camera,
            int(width),
            int(height),
        )
        # The offscreen framebuffer is allocated from these when the render context is made.
        model.vis.global_.offwidth = max(self.width, 1)
        model.vis.global_.offheight = max(self.height, 1)
        # Read when the render context is made, like the buffer size.
        model.vis.quality.offsamples = 4 if quality == "full" else 0
        self._gl = self._ctx = None
        try:
            self._gl = mujoco.GLContext(self.width, self.height)
            self._gl.make_current()
            self._ctx = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50)
        except Exception as e:  # PyOpenGL and MuJoCo raise several types without GL.
            raise RuntimeError(
                f"cannot create an OpenGL context for MuJoCo (MUJOCO_GL="
                f"{os.environ.get('MUJOCO_GL')!r} when mujoco was first imported): {e}. "
                "Headless rendering needs OSMesa: apt-get install libosmesa6, and "
                "MUJOCO_GL=osmesa set before mujoco is imported"
            ) from e
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._ctx)
        self._scene = mujoco.MjvScene(model, maxgeom=1000)
        self._option = mujoco.MjvOption()
        if quality == "fast":
            self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            self._scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._cam = mujoco.MjvCamera()
        self._cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._cam.fixedcamid = cam_id
        self._cam_id = cam_id
        self._rect = mujoco.MjrRect(0, 0, self.width, self.height)
        self._buf = np.empty((self.height, self.width, 3), dtype=np.uint8)

    def upside_down(self, data: Any) -> bool:
        """Whether the camera's image "up" axis (its frame's y) points below the horizon."""
        return bool(data.cam_xmat[self._cam_id][7] < 0.0)  # Row-major 3x3: [2, 1] = y_z.

    def render(self, data: Any) -> np.ndarray:
        """The camera image of ``data`` (after ``mj_forward``), ``(H, W, 3)`` uint8, a copy."""
        m = self._mujoco
        if self._ctx is None or self._gl is None:
            raise RuntimeError("render after close")
        m.mjv_updateScene(
            self._model, data, self._option, None, self._cam, m.mjtCatBit.mjCAT_ALL, self._scene
        )
        self._gl.make_current()
        m.mjr_render(self._rect, self._scene, self._ctx)
        m.mjr_readPixels(self._buf, None, self._rect, self._ctx)
        # Rows come bottom-up; an upside-down camera is rotated by 180 degrees, which for
        # bottom-up rows is a left-right flip only.
        img = self._buf[:, ::-1] if self.upside_down(data) else self._buf[::-1]
        return np.ascontiguousarray(img)

    def close(self) -> None:
        """Free the render context with its own GL context current, then the GL context."""
        if self._ctx is not None:
            assert self._gl is not None  # The render context is only made in a GL context.
            self._gl.make_current()
            self._ctx.free()
            self._ctx = None
        if self._gl is not None:
            self._gl.free()
            self._gl = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # Interpreter shutdown: GL may already be gone.
            pass


class MetaWorldEnv(gym.Env):
    """One MetaWorld v3 task with seeded MT1 configurations; state or pixel observations.

    See the module docstring for the spaces, seeding, termination and the camera.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(
        self,
        task: str,
        observation: str = "state",
        camera: str = DEFAULT_CAMERA,
        width: int = 84,
        height: int = 84,
        task_seed: int = 0,
        render_mode: str | None = None,
        render_size: int = 224,
        render_quality: str = "fast",
    ) -> None:
        """Build the env.

        Args:
            task: MT50 task name, e.g. ``"push-v3"`` (:data:`TASKS`).
            observation: ``"state"`` (``Box(39,)``) or ``"pixels"`` (``Dict`` of
                ``camera`` and ``state`` (4,)).
            camera: MetaWorld camera of the pixel observation (``corner``, ``corner2``,
                ``corner3``, ``corner4``, ``topview``, ``behindGripper``, ``gripperPOV``).
            width: Image width (pixels).
            height: Image height (pixels).
            task_seed: Seed of ``metaworld.MT1``: which 50 configurations the episodes use.
            render_mode: None or ``"rgb_array"`` (``render()`` returns the same camera at
                ``render_size`` x ``render_size``, for evaluation videos).
            render_size: Side of the ``render()`` frames (pixels).
            render_quality: ``"fast"`` (no shadows, reflections or multisampling) or
                ``"full"`` (MetaWorld's look, about 14x slower with OSMesa).

        Raises:
            ValueError: unknown task, observation kind or camera, or a bad size.
        """
        if task not in TASKS:
            raise ValueError(f"unknown MetaWorld v3 task {task!r}; tasks: {list(TASKS)}")
        if observation not in ("state", "pixels"):
            raise ValueError(f"observation must be 'state' or 'pixels', got {observation!r}")
        if min(width, height, render_size) < 1:
            raise ValueError(f"image sizes must be >= 1, got {width}x{height}, {render_size}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        metaworld = _import_metaworld()
        self.task, self.observation, self.render_mode = task, observation, render_mode
        self._tasks = _mt1_tasks(task, int(task_seed))
        self._env = metaworld.ALL_V3_ENVIRONMENTS[task]()
        # MT1's tasks make the goal observable (the last 3 dims), which also fixes the space.
        self._env.set_task(self._tasks[0])
        full = self._env.sawyer_observation_space
        self._state_space = spaces.Box(full.low, full.high, dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
        if observation == "state":
            self.observation_space: spaces.Space = self._state_space
        else:
            self.observation_space = spaces.Dict(
                {
                    "camera": spaces.Box(0, 255, (int(height), int(width), 3), np.uint8),
                    "state": spaces.Box(
                        full.low[:4].astype(np.float32),
                        full.high[:4].astype(np.float32),
                        dtype=np.float32,
                    ),
                }
            )
        self.dt = float(self._env.dt)
        self.max_path_length = int(self._env.max_path_length)
        self._size = (int(width), int(height))
        self._camera_name = camera
        self._render_size = int(render_size)
        self._camera: OffscreenCamera | None = None
        self._video: OffscreenCamera | None = None
        self._state = np.zeros(self._state_space.shape, dtype=np.float64)
        self.task_index: int | None = None
        if observation == "pixels":
            self._camera = OffscreenCamera(self._env.model, camera, width, height, render_quality)
        if render_mode == "rgb_array":
            self._video = OffscreenCamera(
                self._env.model, camera, render_size, render_size, render_quality
            )

    @property
    def state(self) -> np.ndarray:
        """The latest full 39-d state (privileged in the pixel variant), a copy."""
        return self._state.copy()

    def _obs(self) -> Any:
        if self.observation == "state":
            return self._state.copy()
        assert self._camera is not None
        return {
            "camera": self._camera.render(self._env.data),
            "state": self._state[:4].astype(np.float32),
        }

    def _set_state(self, raw: np.ndarray) -> None:
        # MetaWorld clips step observations to its space but not the reset one.
        space = self._state_space
        self._state = np.clip(np.asarray(raw, dtype=np.float64), space.low, space.high)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start an episode in one of the 50 MT1 configurations, drawn by ``np_random``.

        Args:
            seed: Seeds ``np_random``; the same seed gives the same configuration and, with
                the same actions, the same episode.
            options: ``{"task_index": i}`` picks configuration ``i`` (0..49) instead.

        Returns:
            ``(obs, info)``; ``info["task_index"]`` is the configuration used.
        """
        super().reset(seed=seed)
        if options and "task_index" in options:
            index = int(options["task_index"])
            if not 0 <= index < len(self._tasks):
                raise ValueError(f"task_index must be in [0, {len(self._tasks)}), got {index}")
        else:
            index = int(self.np_random.integers(len(self._tasks)))
        self.task_index = index
        self._env.set_task(self._tasks[index])
        raw, _ = self._env.reset()
        self._set_state(raw)
        return self._obs(), {"task_index": index}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """One control step (80 Hz); ``terminated`` on success, ``truncated`` at 500 steps."""
        a = np.clip(np.asarray(action, dtype=np.float32).reshape(4), -1.0, 1.0)
        raw, reward, _, truncated, info = self._env.step(a)
        self._set_state(raw)
        success = bool(info.get("success", 0.0) >= 1.0)
        info = dict(info, is_success=success, task_index=self.task_index)
        return self._obs(), float(reward), success, bool(truncated), info

    def render(self) -> np.ndarray | None:
        """With ``render_mode="rgb_array"``, the camera at ``render_size``; else None."""
        if self._video is None:
            return None
        return self._video.render(self._env.data)

    def close(self) -> None:
        """Free the renderers and the MuJoCo env."""
        for cam in (self._camera, self._video):
            if cam is not None:
                cam.close()
        self._camera = self._video = None
        self._env.close()


class MetaWorldExpert:
    """MetaWorld's own scripted policy for the task (``metaworld.policies.ENV_POLICY_MAP``).

    The policies need the full 39-d state, so in the pixel variant the expert reads it from
    the env (privileged, like ``lane_pure_pursuit``); in the state variant it uses the
    observation it is given. Actions are clipped to [-1, 1]. Success rates over 20 seeded
    episodes per MT10 task are in ``docs/benchmarks.md``.
    """

    def __init__(self, env: gym.Env) -> None:
        """Build the policy for the task of ``env`` (a wrapped :class:`MetaWorldEnv`)."""
        from sim.experts import ExpertError

        base = env.unwrapped
        if not isinstance(base, MetaWorldEnv):
            raise ExpertError(f"expert 'metaworld' needs an il_ros/MetaWorld* env, got {base}")
        from metaworld.policies import ENV_POLICY_MAP
        from metaworld.policies.policy import Policy

        # The map's values are concrete policy classes, but mypy infers the join of them as
        # the abstract base class itself, which it refuses to instantiate; called as a plain
        # factory it is fine.
        make_policy: Callable[[], Policy] = ENV_POLICY_MAP[base.task]
        self._env, self.policy = base, make_policy()

    def reset(self, seed: int | None = None) -> None:
        """MetaWorld's policies are stateless and deterministic: nothing to reset."""

    def __call__(self, obs: Any) -> np.ndarray:
        """``(4,)`` float32 action from the full state (``obs`` itself in the state variant)."""
        if self._env.observation == "state":
            state = np.asarray(obs, dtype=np.float64)
        else:
            state = self._env.state
        with warnings.catch_warnings():
            # The policies' gains trip MetaWorld's own "Constant(s) may be too high" warning
            # on every call; the action is clipped to [-1, 1] below, as the env would.
            warnings.simplefilter("ignore", UserWarning)
            action = np.asarray(self.policy.get_action(state), dtype=np.float32)
        return np.clip(action, -1.0, 1.0)
