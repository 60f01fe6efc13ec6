"""Autoregressive discretisation: binning, the causal mask, sequential decoding."""

from __future__ import annotations

import numpy as np
import torch

from il_core.batch import to_torch
from il_core.policies import make_policy
from tests.helpers import random_batch, vector_spec

CFG = {"n_obs_steps": 1, "horizon": 3, "n_action_steps": 1, "hidden_dims": [16, 16]}
STATS = {
    "obs.state": {"mean": np.zeros(4), "std": np.ones(4)},
    "action": {"min": np.array([-2.0, 0.0]), "max": np.array([2.0, 1.0])},
}


def test_tokens_round_trip_within_half_a_bin():
    policy = make_policy("ar", {**CFG, "num_bins": 20}, vector_spec(), STATS)
    a = torch.stack([torch.linspace(-2, 2, 300), torch.linspace(0, 1, 300)], -1).reshape(100, 3, 2)
    tokens = policy.tokenize(a)
    assert tokens.shape == (100, 6) and tokens.min() == 0 and tokens.max() == 19
    back = policy.normalizer.unnormalize_action(policy.centres[tokens].reshape(100, 3, 2))
    half_bin = torch.tensor([4.0, 1.0]) / 20 / 2
    assert torch.all((back - a).abs() <= half_bin + 1e-6)


def test_token_i_never_sees_tokens_at_or_after_i(rng):
    """Teacher forcing must not leak: logits of position i ignore values at positions >= i."""
    policy = make_policy("ar", CFG, vector_spec(), STATS)
    feats = torch.randn(2, policy.encoder.out_dim)
    base = policy.feat_in(feats).unsqueeze(1) + policy.pos
    values = torch.rand(2, 6) * 2 - 1
    logits = policy._logits(base, values, policy.known)
    for i in range(6):
        changed = values.clone()
        changed[:, i:] = -changed[:, i:] + 0.3
        again = policy._logits(base, changed, policy.known)
        torch.testing.assert_close(logits[:, : i + 1], again[:, : i + 1])
        if i < 5:
            assert not torch.allclose(logits[:, i + 1 :], again[:, i + 1 :])


def test_sequential_decoding_matches_the_teacher_forced_scores(rng):
    # Greedy decoding picks, at every position, the arg-max of the teacher-forced logits given
    # the tokens it already chose: the two code paths compute the same model.
    torch.manual_seed(0)
    policy = make_policy("ar", {**CFG, "inference": "greedy"}, vector_spec(), STATS).eval()
    obs = {"state": torch.randn(5, 1, 4)}
    chunk = policy.predict_chunk_tensor(obs)
    tokens = policy.tokenize(chunk)
    feats = policy.encoder(policy.normalizer.normalize_obs(obs))
    base = policy.feat_in(feats).unsqueeze(1) + policy.pos
    logits = policy._logits(base, policy.centres[tokens], policy.known)
    torch.testing.assert_close(logits.argmax(-1), tokens)


def test_discrete_actions_are_one_token_per_step(rng):
    spec = vector_spec(discrete=4)
    policy = make_policy("ar", {**CFG, "horizon": 5}, spec)
    assert policy.num_tokens == 5 and policy.nb == 4
    loss, logs = policy(to_torch(random_batch(spec, rng, b=6, k=1, h=5), torch.device("cpu")))
    loss.backward()
    assert "accuracy" in logs
    chunk = policy.eval().predict_action_chunk({"state": np.zeros((1, 4), np.float32)})
    assert chunk.shape == (5,) and chunk.dtype == np.int64 and set(chunk) <= {0, 1, 2, 3}
