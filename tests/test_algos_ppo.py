"""PPO (il_core.algos.ppo): GAE, the clipped objective, the actor-critic, the env pool."""

import math

import numpy as np
import pytest
import torch

from il_core.algos.ppo import (
    ActorCritic,
    PPOConfig,
    PPOEnvPool,
    PPOLearner,
    ppo_collect,
    ppo_gae,
    ppo_policy_loss,
    ppo_run,
    ppo_value_loss,
)
from il_core.config import ConfigError, from_dict
from il_core.envs import GymAdapter, make_env
from il_core.evaluate import evaluate
from il_core.policies import make_policy


def _gae(rewards, values, next_values, terminated, ended, gamma=0.5, lam=0.5):
    col = [torch.tensor(x, dtype=torch.float32).reshape(3, 1) for x in (rewards, values)]
    nv = torch.tensor(next_values, dtype=torch.float32).reshape(3, 1)
    term = torch.tensor(terminated, dtype=torch.bool).reshape(3, 1)
    end = torch.tensor(ended, dtype=torch.bool).reshape(3, 1)
    adv, ret = ppo_gae(col[0], col[1], nv, term, end, gamma, lam)
    return adv.reshape(-1).tolist(), ret.reshape(-1).tolist()


def test_gae_matches_hand_computed_values():
    # gamma = lam = 0.5: deltas 1.0, 1.75, 2.5; A2 = 2.5, A1 = 1.75 + 0.25 * 2.5,
    # A0 = 1.0 + 0.25 * A1.
    adv, ret = _gae([1, 2, 3], [0.5, 1.0, 1.5], [1.0, 1.5, 2.0], [0, 0, 0], [0, 0, 0])
    assert adv == pytest.approx([1.59375, 2.375, 2.5])
    assert ret == pytest.approx([1.59375 + 0.5, 2.375 + 1.0, 2.5 + 1.5])


def test_gae_termination_drops_the_next_value_and_the_chain():
    # Terminated at step 1: delta1 = 2 - 1.0 (the 9 is ignored); A1 does not chain into A2.
    adv, _ = _gae([1, 2, 3], [0.5, 1.0, 1.5], [1.0, 9.0, 2.0], [0, 1, 0], [0, 1, 0])
    assert adv == pytest.approx([1.25, 1.0, 2.5])


def test_gae_truncation_bootstraps_from_the_final_observation():
    # Truncated at step 1: delta1 = 2 + 0.5 * 4 - 1.0 = 3 (bootstrapped), no chain into A2.
    adv, _ = _gae([1, 2, 3], [0.5, 1.0, 1.5], [1.0, 4.0, 2.0], [0, 0, 0], [0, 1, 0])
    assert adv == pytest.approx([1.75, 3.0, 2.5])


def test_gae_rejects_mismatched_shapes():
    r = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="next_values"):
        ppo_gae(r, r, torch.zeros(3, 1), r.bool(), r.bool(), 0.9, 0.9)


@pytest.mark.parametrize(
    ("ratio", "adv", "clipped"),
    [(1.5, 1.0, True), (1.1, 1.0, False), (0.5, -1.0, True), (1.5, -1.0, False)],
)
def test_clipped_loss_value_and_gradient(ratio, adv, clipped):
    old = torch.zeros(1)
    new = torch.full((1,), math.log(ratio), requires_grad=True)
    a = torch.full((1,), adv)
    loss, logs = ppo_policy_loss(new, old, a, clip_coef=0.2)
    loss.backward()
    expected_ratio = min(max(ratio, 0.8), 1.2) if clipped else ratio
    assert float(loss.detach()) == pytest.approx(-expected_ratio * adv)
    assert logs["clip_fraction"] == (1.0 if abs(ratio - 1) > 0.2 else 0.0)
    if clipped:
        # Past the clip in the direction the advantage rewards: no more push.
        assert float(new.grad) == 0.0
    else:
        # Gradient descent moves log p up for a positive advantage, down for a negative one.
        assert float(new.grad) == pytest.approx(-ratio * adv)
        assert np.sign(-float(new.grad)) == np.sign(adv)


def test_value_loss_is_half_mse():
    assert float(ppo_value_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0]))) == 1.25


def test_ppo_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="minibatch_size"):
        PPOConfig(num_envs=2, rollout_steps=8, minibatch_size=32)
    with pytest.raises(ConfigError, match="gae_lambda"):
        PPOConfig(gae_lambda=1.5)
    with pytest.raises(ConfigError, match=r"ppo\.bogus|bogus"):
        from_dict(PPOConfig, {"bogus": 1}, "ppo")


def _actor_critic(env_id, **policy):
    env = make_env(env_id)
    spec = GymAdapter(env).spec
    env.close()
    actor = make_policy("bc", {"hidden_dims": [16], **policy}, spec, None)
    return ActorCritic(actor, (16,))


def test_actor_critic_refuses_history_and_chunks():
    with pytest.raises(ConfigError, match="horizon"):
        _actor_critic("CartPole-v1", horizon=2, n_action_steps=1)


def test_discrete_actor_mode_is_what_the_checkpoint_policy_does(rng):
    torch.manual_seed(0)
    ac = _actor_critic("CartPole-v1")
    # Make the head output non-trivial (PPO initialises it near zero).
    torch.nn.init.normal_(list(ac.actor.head.modules())[-1].weight)
    obs = {"state": torch.as_tensor(rng.normal(size=(64, 4)), dtype=torch.float32)}
    dist = ac.distribution(obs)
    mode = dist.probs.argmax(-1)
    policy_actions = ac.actor.predict_chunk_tensor({"state": obs["state"][:, None]})[:, 0]
    assert torch.equal(mode, policy_actions)
    assert len(set(mode.tolist())) == 2  # both classes appear: the check is not vacuous
    sample, env_action, logp, value = ac.act(obs)
    assert sample.shape == env_action.shape == logp.shape == value.shape == (64,)
    assert torch.allclose(logp, dist.log_prob(sample))


def test_continuous_actor_samples_stay_in_bounds_and_mean_matches_policy(rng):
    torch.manual_seed(0)
    ac = _actor_critic("Pendulum-v1")
    with torch.no_grad():
        ac.log_std.fill_(1.0)  # wide enough that raw samples leave [-2, 2]
    obs = {"state": torch.as_tensor(rng.normal(size=(256, 3)), dtype=torch.float32)}
    sample, env_action, logp, _ = ac.act(obs)
    assert sample.shape == env_action.shape == (256, 1)
    assert logp.shape == (256,)
    assert float(env_action.abs().max()) <= 2.0
    assert float(ac.actor.normalizer.unnormalize_action(sample).abs().max()) > 2.0
    mean_action = ac.env_action(ac.distribution(obs).mean)
    policy_actions = ac.actor.predict_chunk_tensor({"state": obs["state"][:, None]})[:, 0]
    assert torch.allclose(mean_action, policy_actions, atol=1e-6)


def test_env_pool_is_seeded_and_keeps_the_final_observation():
    pools = [PPOEnvPool("CartPole-v1", 2, seed=5) for _ in range(2)]
    starts = [p.reset()["state"] for p in pools]
    np.testing.assert_array_equal(starts[0], starts[1])
    pool = pools[0]
    ended_at = None
    for t in range(600):
        out = pool.step(np.ones(2, dtype=np.int64))  # always push right: falls within ~10 steps
        if out["terminated"].any():
            ended_at = t
            break
    assert ended_at is not None
    i = int(np.flatnonzero(out["terminated"])[0])
    final = out["next_obs"]["state"][i]
    # The final observation is the failed state; the next one acted on is a fresh reset.
    assert abs(final[2]) > 0.2095 or abs(final[0]) > 2.4
    assert np.abs(out["obs"]["state"][i]).max() <= 0.05
    assert out["episodes"] and out["episodes"][0][1] == ended_at + 1
    for p in pools:
        p.close()


def test_collect_and_one_update_change_the_policy():
    torch.manual_seed(0)
    cfg = PPOConfig(num_envs=2, rollout_steps=16, minibatch_size=16, epochs=2, anneal_lr=False)
    pool = PPOEnvPool("CartPole-v1", 2, seed=0)
    ac = _actor_critic("CartPole-v1")
    pool.reset()
    rollout = ppo_collect(ac, pool, cfg.rollout_steps)
    assert rollout.values.shape == (16, 2)
    assert rollout.obs["state"].shape == rollout.next_obs["state"].shape == (16, 2, 4)
    assert rollout.num_steps == 32
    before = [p.detach().clone() for p in ac.parameters()]
    learner = PPOLearner(ac, cfg, total_updates=1, generator=torch.Generator().manual_seed(0))
    logs = learner.update(rollout, rollout.env_rewards)
    assert {"policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"} <= set(logs)
    assert any(not torch.equal(b, p) for b, p in zip(before, ac.parameters(), strict=True))
    with pytest.raises(ValueError, match="rewards have shape"):
        learner.update(rollout, rollout.env_rewards[:3])
    pool.close()


@pytest.mark.expensive
def test_ppo_alone_learns_cartpole_from_the_env_reward():
    """The learner without GAIL: the env's reward, 50k steps, seeded (~15 s)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = PPOConfig()
    pool = PPOEnvPool("CartPole-v1", cfg.num_envs, seed=0)
    actor = make_policy("bc", {"hidden_dims": [64, 64]}, pool.spec, None)
    ac = ActorCritic(actor, cfg.value_hidden_dims)
    steps = ppo_run(ac, pool, cfg, 50_000, generator=torch.Generator().manual_seed(0))
    pool.close()
    assert steps >= 50_000
    result = evaluate(ac.actor, "CartPole-v1", 20, seed=1000)
    assert result["mean_return"] >= 450, result
