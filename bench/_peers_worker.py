"""The peer side of ``bench/bench_peers.py``: the ``imitation`` library's BC, DAgger, GAIL, AIRL.

This file runs in the peers' virtualenv (``make peers-venv``: imitation 1.0.1 with
gymnasium 0.29 and stable-baselines3 2.2, torch 2.13.0), never in il_ros's own ``.venv``
(gymnasium 1.x), so it imports neither ``il_core`` nor ``sim``; ``bench/bench_peers.py``
starts it as a subprocess and reads the JSON it writes. One run per process::

    .venv-peers/bin/python bench/_peers_worker.py --algo bc --data demos.npz \
        --out result.json [--seed 0] [--params '{"batch_size": 256}']

``--data`` is the ``.npz`` that ``bench_peers.py`` exports from an il_core dataset: ``obs``
``(N, D)`` float32, ``acts`` ``(N,)`` int64 or ``(N, A)`` float32, ``episode_starts`` and
``episode_lengths`` ``(E,)`` int64, ``final_obs`` ``(E, D)`` (the observation after each
episode's last action, which imitation's ``Trajectory`` needs and an il_core dataset does not
store) and ``terminal`` ``(E,)`` bool. ``--params`` (JSON) overrides the defaults of the
algorithm (``DEFAULTS`` below; unknown keys are errors), which ``bench_peers.py`` fills from
the same il_core configs its own side trains with.

Every algorithm is evaluated here the way ``il-core eval`` evaluates ours: episode ``i``
reset with ``eval_seed + i``, the deterministic action (``predict(deterministic=True)``).
The result JSON holds the evaluation, the timed section's seconds (everything before it,
imports, env and network construction, is set-up and is not timed), the algorithm's own
figures (samples/s, expert labels, env steps) and the library versions.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from torch import nn

# The imitation / stable-baselines3 imports are inside the functions: each algorithm pulls
# in only what it needs (imitation.algorithms.dagger imports `datasets` and pyarrow, seconds
# of start-up that BC need not pay).

DEFAULTS: dict[str, dict[str, Any]] = {
    # Behaviour cloning: `steps` gradient steps on batches of `batch_size` transitions.
    "bc": {
        "env": "CartPole-v1",
        "hidden_dims": [64, 64],
        "batch_size": 32,
        "lr": 1e-3,
        "steps": 3000,
        "eval_episodes": 50,
        "eval_seed": 1000,
    },
    # DAgger: round 0 runs the expert (beta = 1), round r >= 1 mixes per step with beta =
    # beta_decay ** r; `episodes_per_round` episodes a round, episode i of round r reset
    # with episode_seed(seed, r, i) (il_core.algos.dagger's); after each round BC trains
    # `steps_per_round` more gradient steps on everything so far.
    "dagger": {
        "env": "CartPole-v1",
        "hidden_dims": [64, 64],
        "batch_size": 32,
        "lr": 1e-3,
        "steps_per_round": 1000,
        "rounds": 4,
        "episodes_per_round": 2,
        "beta_decay": 0.5,
        "eval_episodes": 50,
        "eval_seed": 1000,
    },
    # GAIL: SB3 PPO generator; one round = one PPO rollout of num_envs x rollout_steps env
    # steps, then `disc_updates` discriminator steps on disc_batch_size expert + as many
    # generator pairs.
    "gail": {
        "env": "CartPole-v1",
        "total_env_steps": 30720,
        "hidden_dims": [64, 64],
        "value_hidden_dims": [64, 64],
        "num_envs": 8,
        "rollout_steps": 32,
        "minibatch_size": 256,
        "epochs": 20,
        "ppo_lr": 1e-3,
        "anneal_lr": True,
        "gamma": 0.98,
        "gae_lambda": 0.8,
        "clip_coef": 0.2,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
        "disc_hidden_dims": [64, 64],
        "disc_lr": 3e-4,
        "disc_batch_size": 256,
        "disc_updates": 1,
        "eval_episodes": 50,
        "eval_seed": 1000,
    },
}
# AIRL: GAIL's settings, the discriminator being a shaped reward net f(s, a) + gamma h(s') -
# h(s) (imitation's BasicShapedRewardNet) instead of an MLP classifier.
DEFAULTS["airl"] = {
    **{k: v for k, v in DEFAULTS["gail"].items() if k != "disc_hidden_dims"},
    "reward_hidden_dims": [64, 64],
    "potential_hidden_dims": [64, 64],
    "reward_use_action": True,
}

#: il_core's scripted CartPole expert (sim/experts.py, CartPoleLinearExpert): push right
#: iff k . [x, x_dot, theta, theta_dot] > 0. Repeated here because this venv cannot import
#: sim; bench_peers.py checks that the two agree.
CARTPOLE_GAINS = (0.910, 2.143, 30.856, 7.879)


def episode_seed(seed: int, round_num: int, episode: int) -> int:
    """Reset seed of episode ``episode`` of DAgger round ``round_num`` (il_core's formula).

    The same formula as ``il_core.algos.dagger.episode_seed``, so both sides' round ``r``
    starts its episodes from the same states (round 0, the expert's, is the same data).
    """
    return 1_000_000 * (seed + 1) + 10_000 * round_num + episode


def load_trajectories(path: Path) -> list[Any]:
    """The exported episodes as imitation ``Trajectory`` objects (observations ``T + 1``)."""
    from imitation.data.types import Trajectory

    with np.load(path) as z:
        obs, acts, final = z["obs"], z["acts"], z["final_obs"]
        starts, lengths, terminal = z["episode_starts"], z["episode_lengths"], z["terminal"]
    trajs = []
    for e, (lo, n) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
        ep_obs = np.concatenate([obs[lo : lo + n], final[e : e + 1]]).astype(np.float32)
        trajs.append(
            Trajectory(obs=ep_obs, acts=acts[lo : lo + n], infos=None, terminal=bool(terminal[e]))
        )
    return trajs


def quiet_logger(folder: Path) -> Any:
    """An imitation logger that writes nothing: stdout stays free, no CSV or log files.

    Both sides are timed without their loggers' output (ours: no TensorBoard), so what is
    measured is the training itself.
    """
    from imitation.util import logger

    return logger.configure(folder=folder, format_strs=[])


def evaluate(policy: Any, env_id: str, episodes: int, seed: int) -> dict[str, Any]:
    """Mean return of ``policy.predict(obs, deterministic=True)``, episode i from seed + i."""
    env = gym.make(env_id)
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            act, _ = policy.predict(obs, deterministic=True)
            obs, r, term, trunc, _ = env.step(int(act) if discrete else act)
            total += float(r)
            done = term or trunc
        returns.append(total)
    env.close()
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "episodes": episodes,
        "eval_seed": seed,
    }


def make_bc_policy(env: gym.Env, hidden: list[int], lr: float) -> Any:
    """SB3's ActorCriticPolicy with il_core's ``bc`` actor: a ReLU MLP of ``hidden`` sizes.

    ``vf=[]``: imitation's BC loss also evaluates the value head, which it never trains on;
    an empty value MLP keeps that unused work to one 4->1 linear layer, in the library's
    favour. (imitation's own default would be a 32x32 tanh MLP for both heads.)
    """
    from stable_baselines3.common.policies import ActorCriticPolicy

    return ActorCriticPolicy(
        env.observation_space,
        env.action_space,
        lr_schedule=lambda _: lr,
        net_arch={"pi": list(hidden), "vf": []},
        activation_fn=nn.ReLU,
    )


def make_bc(
    env: gym.Env, p: dict[str, Any], rng: np.random.Generator, log: Any, demos: Any
) -> Any:
    """The library's ``bc.BC`` with Adam at ``p["lr"]`` and batches of ``p["batch_size"]``."""
    from imitation.algorithms import bc

    return bc.BC(
        observation_space=env.observation_space,
        action_space=env.action_space,
        rng=rng,
        policy=make_bc_policy(env, p["hidden_dims"], p["lr"]),
        demonstrations=demos,
        batch_size=p["batch_size"],
        optimizer_cls=th.optim.Adam,
        optimizer_kwargs={"lr": p["lr"]},
        custom_logger=log,
        device="cpu",
    )


def run_bc(data: Path, p: dict[str, Any], seed: int, scratch: Path) -> dict[str, Any]:
    """BC on all exported transitions; times ``BC.train`` alone."""
    from imitation.data import rollout

    env = gym.make(p["env"])
    transitions = rollout.flatten_trajectories(load_trajectories(data))
    trainer = make_bc(env, p, np.random.default_rng(seed), quiet_logger(scratch), transitions)
    t0 = time.perf_counter()
    trainer.train(n_batches=p["steps"], progress_bar=False)
    train_s = time.perf_counter() - t0
    return {
        "train_s": train_s,
        "samples_per_s": p["steps"] * p["batch_size"] / train_s,
        "transitions": len(transitions),
        "eval": evaluate(trainer.policy, p["env"], p["eval_episodes"], p["eval_seed"]),
    }


def _cartpole_expert(env: gym.Env) -> Any:
    """The scripted CartPole expert as an SB3 policy (SimpleDAggerTrainer requires one)."""
    from stable_baselines3.common.policies import BasePolicy

    class CartPoleLinearExpert(BasePolicy):
        """Bang-bang linear feedback, exactly as il_core's ``cartpole_linear`` in numpy."""

        def __init__(self) -> None:
            super().__init__(env.observation_space, env.action_space)
            self.gains = np.asarray(CARTPOLE_GAINS, dtype=np.float64)

        def _predict(self, observation: th.Tensor, deterministic: bool = False) -> th.Tensor:
            return (observation.to(th.float64) @ th.as_tensor(self.gains) > 0).long()

        def predict(
            self,
            observation: Any,
            state: Any = None,
            episode_start: Any = None,
            deterministic: bool = False,
        ) -> tuple[np.ndarray, None]:
            # In float64 numpy like il_core's expert, so both label a state identically.
            obs = np.asarray(observation, dtype=np.float64).reshape(-1, 4)
            return (obs @ self.gains > 0.0).astype(np.int64), None

    return CartPoleLinearExpert()


class _SeededResets(gym.Wrapper):
    """Resets without a seed take the next one from :attr:`seeds` (set before each round).

    DummyVecEnv resets its envs without a seed after the first episode; this makes episode
    ``i`` of DAgger round ``r`` start from ``episode_seed(seed, r, i)``, as ours does.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.seeds: Any = iter(())

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        """Reset with ``seed``, else with the next scheduled seed (None once they run out)."""
        if seed is None:
            seed = next(self.seeds, None)
        return self.env.reset(seed=seed, options=options)


def run_dagger(data: Path, p: dict[str, Any], seed: int, scratch: Path) -> dict[str, Any]:
    """The library's SimpleDAggerTrainer for ``rounds + 1`` rounds; times the whole loop.

    The rounds are driven one by one with the library's own calls, the body of
    ``SimpleDAggerTrainer.train`` (collect with the beta-mixed collector, then
    ``extend_and_update``): its ``train`` counts a budget of env steps, ours counts rounds,
    and the round count is what has to match. ``data`` is unused: round 0 records the
    expert itself, from the same seeds as ours.
    """
    del data
    from imitation.algorithms import dagger
    from imitation.data import rollout
    from imitation.data.wrappers import RolloutInfoWrapper
    from stable_baselines3.common.vec_env import DummyVecEnv

    if p["env"] != "CartPole-v1":
        raise SystemExit(f"dagger: only CartPole-v1 has an expert here, not {p['env']!r}")
    seeded = _SeededResets(gym.make(p["env"]))
    venv = DummyVecEnv([lambda: RolloutInfoWrapper(seeded)])
    rng = np.random.default_rng(seed)
    log = quiet_logger(scratch / "log")
    trainer = dagger.SimpleDAggerTrainer(
        venv=venv,
        scratch_dir=scratch / "dagger",
        expert_policy=_cartpole_expert(seeded),
        rng=rng,
        bc_trainer=make_bc(seeded, p, rng, log, None),
        beta_schedule=dagger.ExponentialBetaSchedule(p["beta_decay"]),
        custom_logger=log,
    )
    # No evaluation rollouts inside BC.train (extend_and_update would add 5 episodes per
    # log interval by default): ours runs one evaluation episode per round, no more.
    bc_kwargs = {
        "n_batches": p["steps_per_round"],
        "log_rollouts_venv": None,
        "progress_bar": False,
    }
    labels: list[int] = []
    t0 = time.perf_counter()
    for r in range(p["rounds"] + 1):
        n = p["episodes_per_round"]
        seeded.seeds = iter([episode_seed(seed, r, i) for i in range(n)])
        collector = trainer.create_trajectory_collector()
        trajs = rollout.generate_trajectories(
            policy=trainer.expert_policy,
            venv=collector,
            sample_until=rollout.make_sample_until(min_timesteps=None, min_episodes=n),
            deterministic_policy=True,
            rng=collector.rng,
        )
        labels.append(sum(len(t) for t in trajs))  # every visited step is labelled
        trainer.extend_and_update(bc_kwargs)
    wall_s = time.perf_counter() - t0
    return {
        "wall_s": wall_s,
        "labels": int(sum(labels)),
        "labels_per_round": labels,
        "eval": evaluate(trainer.policy, p["env"], p["eval_episodes"], p["eval_seed"]),
    }


def _ppo(venv: Any, p: dict[str, Any], seed: int) -> Any:
    """SB3 PPO with il_core's PPO settings (config/gail_cartpole.yaml's ``ppo:``).

    ``anneal_lr``: ours decays the rate linearly to 0 over the budget. SB3's schedules see
    the progress of one ``learn`` call, and imitation calls ``learn`` once per round, so the
    schedule here reads the generator's env-step count against the whole budget instead:
    update k of n runs at ``lr * (1 - k / n)``, as ours does.
    """
    from stable_baselines3 import PPO

    holder: dict[str, Any] = {}
    per_round = p["num_envs"] * p["rollout_steps"]

    def lr(_progress: float) -> float:
        if not p["anneal_lr"] or "model" not in holder:
            return float(p["ppo_lr"])
        done_before = holder["model"].num_timesteps - per_round  # this update's rollout
        return float(p["ppo_lr"]) * max(0.0, 1.0 - done_before / p["total_env_steps"])

    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=p["rollout_steps"],
        batch_size=p["minibatch_size"],
        n_epochs=p["epochs"],
        learning_rate=lr,
        gamma=p["gamma"],
        gae_lambda=p["gae_lambda"],
        clip_range=p["clip_coef"],
        ent_coef=p["ent_coef"],
        vf_coef=p["vf_coef"],
        max_grad_norm=p["max_grad_norm"],
        policy_kwargs={
            "net_arch": {"pi": list(p["hidden_dims"]), "vf": list(p["value_hidden_dims"])},
            "activation_fn": nn.ReLU,
        },
        seed=seed,
        device="cpu",
        verbose=0,
    )
    holder["model"] = model
    return model


def run_adversarial(
    algo: str, data: Path, p: dict[str, Any], seed: int, scratch: Path
) -> dict[str, Any]:
    """The library's GAIL or AIRL for ``total_env_steps``; times ``trainer.train`` alone."""
    from imitation.algorithms.adversarial.airl import AIRL
    from imitation.algorithms.adversarial.gail import GAIL
    from imitation.rewards.reward_nets import BasicRewardNet, BasicShapedRewardNet
    from imitation.util.networks import RunningNorm
    from imitation.util.util import make_vec_env

    demos = load_trajectories(data)
    venv = make_vec_env(p["env"], rng=np.random.default_rng(seed), n_envs=p["num_envs"])
    gen = _ppo(venv, p, seed)
    # Inputs normalised by a running mean/std (imitation's documented set-up); ours
    # normalises by the expert data's statistics.
    if algo == "gail":
        reward_net: Any = BasicRewardNet(
            venv.observation_space,
            venv.action_space,
            hid_sizes=tuple(p["disc_hidden_dims"]),
            normalize_input_layer=RunningNorm,
        )
        cls: Any = GAIL
    else:
        reward_net = BasicShapedRewardNet(
            venv.observation_space,
            venv.action_space,
            reward_hid_sizes=tuple(p["reward_hidden_dims"]),
            potential_hid_sizes=tuple(p["potential_hidden_dims"]),
            use_action=p["reward_use_action"],
            discount_factor=p["gamma"],
            normalize_input_layer=RunningNorm,
        )
        cls = AIRL
    per_round = p["num_envs"] * p["rollout_steps"]
    trainer = cls(
        demonstrations=demos,
        demo_batch_size=p["disc_batch_size"],
        # The discriminator sees the last rollout only, as ours does.
        gen_replay_buffer_capacity=per_round,
        n_disc_updates_per_round=p["disc_updates"],
        venv=venv,
        gen_algo=gen,
        reward_net=reward_net,
        disc_opt_kwargs={"lr": p["disc_lr"]},
        custom_logger=quiet_logger(scratch),
        log_dir=scratch,
        # CartPole episodes end when the pole falls: lengths vary, which imitation refuses
        # unless told (its seals envs have fixed horizons).
        allow_variable_horizon=True,
    )
    t0 = time.perf_counter()
    trainer.train(p["total_env_steps"])
    wall_s = time.perf_counter() - t0
    return {
        "wall_s": wall_s,
        "env_steps": int(gen.num_timesteps),
        "eval": evaluate(gen.policy, p["env"], p["eval_episodes"], p["eval_seed"]),
    }


def versions() -> dict[str, str]:
    """Versions of the libraries this side ran on."""
    import imitation
    import stable_baselines3

    return {
        "python": sys.version.split()[0],
        "imitation": imitation.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "gymnasium": gym.__version__,
        "torch": th.__version__,
        "numpy": np.__version__,
    }


def main(argv: list[str] | None = None) -> None:
    """Run one algorithm and write its result JSON to ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--algo", required=True, choices=sorted(DEFAULTS))
    ap.add_argument("--data", required=True, type=Path, help=".npz of expert episodes")
    ap.add_argument("--out", required=True, type=Path, help="result JSON to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--params", default="{}", help="JSON overriding DEFAULTS[algo]")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    overrides = json.loads(args.params)
    unknown = sorted(set(overrides) - set(DEFAULTS[args.algo]))
    if unknown:
        raise SystemExit(f"--params: unknown keys for {args.algo}: {unknown}")
    p = {**DEFAULTS[args.algo], **overrides}
    # One thread, as ours: on a shared 2-core machine a second thread mostly adds contention.
    th.set_num_threads(args.threads)
    th.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix=f"peers_{args.algo}_") as tmp:
        scratch = Path(tmp)
        if args.algo == "bc":
            result = run_bc(args.data, p, args.seed, scratch)
        elif args.algo == "dagger":
            result = run_dagger(args.data, p, args.seed, scratch)
        else:
            result = run_adversarial(args.algo, args.data, p, args.seed, scratch)
    result.update(algo=args.algo, seed=args.seed, params=p, versions=versions())
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
