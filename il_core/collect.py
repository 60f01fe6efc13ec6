"""Record seeded scripted-expert episodes from a gymnasium env into a dataset.

``collect("CartPole-v1", "auto", episodes=50, seed=0, out="data/cp")`` runs episode
``i`` from ``env.reset(seed=seed + i)`` with the expert, through the shared rollout loop
(:func:`il_core.rollout.run_episode`), and writes every step with
:class:`il_core.data.DatasetWriter`. Each observation is stored with the action the expert
chose from exactly that (float32) observation. Step timestamps are simulated time,
``step_index / control_rate_hz``.

Command line::

    python -m il_core.collect --env CartPole-v1 --episodes 50 --seed 0 --out data/cp

Scripted experts come from the installed plugins (:mod:`il_core.experts`; ``sim`` registers
this repository's).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from il_core.envs import GymAdapter, make_env
from il_core.experts import load_expert
from il_core.rollout import run_episode, step_timestamp

__all__ = ["collect", "main"]


def collect(
    env_id: str,
    expert: str,
    episodes: int,
    seed: int,
    out: str | Path,
    *,
    flush_every: int = 50,
    successful_only: bool = False,
    max_attempts: int | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` seeded expert episodes and record them into the dataset at ``out``.

    With ``successful_only`` an episode the env does not label a success is discarded and
    the next seed is tried, until ``episodes`` successful ones are stored (scripted experts
    are not perfect: MetaWorld's peg-insert-side policy fails about one episode in four, and
    a failed demonstration teaches the failure). The seeds used are ``seed, seed + 1, ...``
    in order, failed ones skipped, so the dataset is still reproducible.

    The dataset is created with :func:`il_core.envs.spec_from_env` of the env (spec metadata
    ``{"env_id": env_id}``) or, if it exists, appended to (its spec must match). Each episode
    is labelled with its success (:func:`il_core.envs.episode_success`) and metadata
    ``{"env_id", "seed", "expert", "return"}``. An exception (or Ctrl-C) during an episode
    discards that episode and leaves the completed ones in place. A tqdm progress bar is
    shown only when stderr is a terminal.

    Args:
        env_id: Gymnasium id (``"CartPole-v1"``, ``"MountainCar-v0"``, ``"il_ros/..."``).
        expert: Expert name, ``"auto"`` or ``"module:callable"`` (see
            :func:`il_core.experts.load_expert`).
        episodes: Number of episodes, >= 1.
        seed: Episode ``i`` is reset with ``seed + i``.
        out: Dataset directory.
        flush_every: Steps between crash-safety flushes of the writer.
        successful_only: Keep only episodes labelled a success (needs an env with a
            success definition).
        max_attempts: With ``successful_only``, give up after this many episodes (default
            ``10 * episodes``).

    Returns:
        Summary ``{"episodes", "steps", "mean_return", "success_rate", "out", "env_id",
        "expert", "seed", "attempts", "discarded"}``: ``episodes``, ``steps`` and
        ``mean_return`` count the stored episodes; ``success_rate`` is over all attempts
        (the expert's own rate) and None when the env has no success definition.

    Raises:
        ValueError: ``episodes < 1``; ``successful_only`` on an env without a success
            definition, or fewer than ``episodes`` successes in ``max_attempts``; unknown
            env id or expert (from ``make_env`` / ``load_expert``); ``out`` holds another
            env's dataset (a ``DatasetError``, also a ValueError, when the spaces differ).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    attempts_cap = episodes if not successful_only else (max_attempts or 10 * episodes)
    if attempts_cap < episodes:
        raise ValueError(f"max_attempts must be >= episodes ({episodes}), got {max_attempts}")
    # Lazy imports: tqdm and the data writer cost nothing for callers that want names only.
    from tqdm.auto import tqdm

    from il_core.data import DatasetWriter

    out = Path(out)
    env = make_env(env_id)
    bar = None
    try:
        adapter = GymAdapter(env)
        expert_obj = load_expert(expert, env)
        rate = adapter.control_rate_hz

        def act(obs: dict[str, np.ndarray]) -> np.ndarray:
            # The expert sees the recorded float32 observation (not the raw env one), so the
            # stored action is exactly the expert's action on the stored observation.
            return adapter.action_from_env(expert_obj(adapter.obs_to_raw(obs)))

        returns: list[float] = []
        successes: list[bool] = []
        steps = 0
        with DatasetWriter(out, adapter.spec, flush_every=flush_every) as writer:
            # The writer only compares shapes; two envs with the same spaces (CartPole-v0 and
            # v1) would otherwise be mixed silently into one dataset.
            stored_id = writer.spec.metadata.get("env_id")
            if stored_id is not None and stored_id != env_id:
                raise ValueError(
                    f"dataset {out} holds episodes of {stored_id!r}, not {env_id!r}; "
                    "collect into another directory"
                )

            def on_step(obs: dict[str, np.ndarray], action: np.ndarray, t: int) -> None:
                writer.add_step(obs, action, step_timestamp(t, rate))

            bar = tqdm(total=episodes, desc=f"collect {env_id}", unit="ep", disable=None)
            attempts = 0
            while len(returns) < episodes:  # the bar is closed in the finally below
                if attempts == attempts_cap:
                    raise ValueError(
                        f"the expert {expert!r} succeeded in {len(returns)} of {attempts} "
                        f"episodes of {env_id} (seeds {seed}..{seed + attempts - 1}), fewer "
                        f"than the {episodes} successful ones asked for; the stored ones "
                        f"are kept in {out}"
                    )
                ep_seed = seed + attempts
                attempts += 1
                expert_obj.reset(seed=ep_seed)
                writer.start_episode(
                    metadata={"env_id": env_id, "seed": ep_seed, "expert": expert}
                )
                try:
                    result = run_episode(env, adapter, act, ep_seed, on_step=on_step)
                except BaseException:
                    # A half-recorded demo is not a demo: drop it, keep the completed ones.
                    writer.discard_episode()
                    raise
                if result.success is not None:
                    successes.append(result.success)
                    bar.set_postfix(success=f"{np.mean(successes):.2f}", refresh=False)
                if successful_only and result.success is None:
                    writer.discard_episode()
                    raise ValueError(
                        f"{env_id} has no success definition, so --successful-only cannot "
                        "tell which demonstrations to keep"
                    )
                if successful_only and not result.success:
                    writer.discard_episode()
                    continue
                writer.end_episode(success=result.success, metadata={"return": result.ret})
                returns.append(result.ret)
                steps += result.length
                bar.update()
    finally:
        if bar is not None:
            bar.close()
        env.close()
    return {
        "episodes": len(returns),
        "steps": steps,
        "mean_return": float(np.mean(returns)),
        "success_rate": float(np.mean(successes)) if successes else None,
        "out": str(out),
        "env_id": env_id,
        "expert": expert,
        "seed": seed,
        "attempts": attempts,
        "discarded": attempts - len(returns),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the summary as JSON. Returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m il_core.collect", description="Record scripted-expert demonstrations."
    )
    parser.add_argument("--env", required=True, help="gymnasium env id, e.g. CartPole-v1")
    parser.add_argument("--expert", default="auto", help="name, 'auto' or 'module:callable'")
    parser.add_argument("--episodes", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0, help="episode i uses seed + i")
    parser.add_argument("--out", required=True, help="dataset directory")
    parser.add_argument("--flush-every", type=int, default=50)
    parser.add_argument("--successful-only", action="store_true", help="keep successes only")
    args = parser.parse_args(argv)
    try:
        summary = collect(
            args.env,
            args.expert,
            args.episodes,
            args.seed,
            args.out,
            flush_every=args.flush_every,
            successful_only=args.successful_only,
        )
    except ValueError as e:  # Unknown env id or expert, bad arguments: no traceback needed.
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
