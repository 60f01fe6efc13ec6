"""Roll a checkpoint out in a gymnasium env: ``il-core eval``.

The policy runs through :class:`il_core.execution.PolicyExecutor`, the same class the ROS
inference node uses, and each episode goes through :func:`il_core.rollout.run_episode`, the
same loop the collector uses.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from il_core.checkpoint import CheckpointError, policy_from_checkpoint_dict, read_checkpoint
from il_core.envs import GymAdapter, make_env
from il_core.execution import PolicyExecutor
from il_core.policies import Policy
from il_core.rollout import EpisodeResult, run_episode


def check_policy_matches_env(policy: Policy, adapter: GymAdapter, where: str) -> None:
    """Refuse a policy whose spec does not match the env's observation/action spec.

    Raises:
        CheckpointError: listing each mismatch (key, expected, got).
    """
    problems = policy.spec.compatible_with(adapter.spec)
    if problems:
        raise CheckpointError(
            f"{where}: policy spec does not match the environment: " + "; ".join(problems)
        )


def evaluate(
    checkpoint: str | Path | Policy,
    env_id: str,
    episodes: int,
    seed: int,
    *,
    video: str | Path | None = None,
    video_episodes: int = 1,
    plot: str | Path | None = None,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Evaluate a policy for ``episodes`` seeded episodes (episode i uses ``seed + i``).

    Args:
        checkpoint: Path to ``policy.pt`` or an already loaded policy.
        env_id: Gymnasium id (built-in or registered by ``sim``).
        episodes: Number of episodes.
        seed: Base seed.
        video: Write the first ``video_episodes`` episodes as ``.gif`` or ``.mp4``.
        video_episodes: How many episodes the video shows.
        plot: Write a PNG of per-episode returns and success.
        max_steps: Optional cap on steps per episode.

    Returns:
        ``episodes``, ``mean_return``, ``std_return``, ``success_rate`` (``None`` if the env
        defines no success), ``mean_length``, ``seed``, ``env``, ``steps_per_s``, and
        ``checkpoint_step`` (the training step of a checkpoint file).
    """
    step = None
    if isinstance(checkpoint, Policy):
        policy, where = checkpoint, "policy"
    else:
        where = str(checkpoint)
        data = read_checkpoint(checkpoint)
        policy = policy_from_checkpoint_dict(data, where)
        step = data.get("train", {}).get("step")
    render_mode = "rgb_array" if video else None
    if video:
        # Off-screen rendering: keep SDL (pygame, used by classic-control envs) from looking
        # for a display or an audio device on a headless robot computer or CI machine.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    env = make_env(env_id, render_mode=render_mode)
    adapter = GymAdapter(env)
    check_policy_matches_env(policy, adapter, where)
    executor = PolicyExecutor(policy)
    # The env may provide more than the policy consumes (side cameras recorded for
    # training only, see il_core.augment): the policy gets exactly the keys of its spec.
    keys = tuple(policy.spec.observations)

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        action = executor.step({k: obs[k] for k in keys})
        # A synchronous executor (the default) plans the current tick, so it never starves.
        assert action is not None
        return action

    results: list[EpisodeResult] = []
    frames: list[np.ndarray] = []
    t0 = time.perf_counter()
    try:
        for i in range(episodes):
            executor.reset()
            record = bool(video) and i < video_episodes
            res = run_episode(env, adapter, act, seed + i, render=record, max_steps=max_steps)
            results.append(res)
            if record and res.frames:
                frames.extend(res.frames)
    finally:
        env.close()
    elapsed = time.perf_counter() - t0
    returns = np.array([r.ret for r in results], dtype=np.float64)
    succ = [r.success for r in results]
    known = [s for s in succ if s is not None]  # all of succ unless the env defines none
    summary: dict[str, Any] = {
        "env": env_id,
        "episodes": episodes,
        "mean_return": float(returns.mean()) if episodes else float("nan"),
        "std_return": float(returns.std()) if episodes else float("nan"),
        "success_rate": float(np.mean(known)) if len(known) == len(succ) else None,
        "mean_length": float(np.mean([r.length for r in results])) if episodes else 0.0,
        "seed": seed,
        "steps_per_s": sum(r.length for r in results) / max(elapsed, 1e-9),
    }
    if step is not None:
        summary["checkpoint_step"] = int(step)
    if video and frames:
        write_video(video, frames, fps=float(policy.spec.control_rate_hz))
        summary["video"] = str(video)
    if plot:
        write_plot(plot, returns, succ, title=f"{env_id}: {where}")
        summary["plot"] = str(plot)
    return summary


def write_video(path: str | Path, frames: list[np.ndarray], fps: float) -> None:
    """Write RGB frames ``(H, W, 3)`` uint8 as a GIF (Pillow) or an H.264 MP4 (PyAV).

    Raises:
        ValueError: ``path`` ends neither in ``.gif`` nor in ``.mp4``.
    """
    path = Path(path)
    if path.suffix.lower() not in (".gif", ".mp4"):
        raise ValueError(f"{path}: a video is written as .gif or .mp4, not {path.suffix!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(
            path,
            save_all=True,
            append_images=images[1:],
            duration=max(20, round(1000 / fps)),
            loop=0,
        )
        return
    from il_core.video import write_mp4

    write_mp4(path, frames, fps)


def write_plot(
    path: str | Path, returns: np.ndarray, success: list[bool | None], title: str
) -> None:
    """Bar chart of per-episode returns, coloured by success, with the mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = ["tab:gray" if s is None else ("tab:green" if s else "tab:red") for s in success]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(np.arange(len(returns)), returns, color=colors)
    ax.axhline(float(returns.mean()), color="k", ls="--", lw=1, label=f"mean {returns.mean():.1f}")
    ax.set_xlabel("episode")
    ax.set_ylabel("return")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="best")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
