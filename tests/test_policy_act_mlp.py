"""act_mlp (the MLP CVAE): the KL term, the posterior's use of the chunk, prior-mean inference."""

from __future__ import annotations

import numpy as np
import torch

from il_core.constants import ACTION, ACTION_MASK, OBS
from il_core.policies import make_policy
from tests.helpers import vector_spec

CFG = {"n_obs_steps": 1, "horizon": 2, "n_action_steps": 1, "hidden_dims": [16], "latent_dim": 3}


def _batch(b: int = 4) -> dict:
    return {
        OBS: {"state": torch.randn(b, 1, 4)},
        ACTION: torch.rand(b, 2, 2) * 2 - 1,
        ACTION_MASK: torch.ones(b, 2),
    }


def test_kl_is_zero_when_the_posterior_is_the_prior():
    policy = make_policy("act_mlp", CFG, vector_spec())
    last = policy.posterior[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()  # mu = 0, log var = 0: q = N(0, I)
    _, logs = policy(_batch())
    assert abs(logs["kl"]) < 1e-7
    with torch.no_grad():
        last.bias[:3] = 1.0  # mu = 1 per latent dim: KL = 3 * 0.5
    _, logs = policy(_batch())
    assert abs(logs["kl"] - 1.5) < 1e-6


def test_posterior_sees_the_chunk_and_decoding_ignores_it():
    torch.manual_seed(0)
    policy = make_policy("act_mlp", {**CFG, "kl_weight": 1.0}, vector_spec())
    batch = _batch()
    batch[ACTION].requires_grad_(True)
    loss, _ = policy(batch)
    loss.backward()
    assert batch[ACTION].grad.abs().sum() > 0
    policy.eval()
    obs = {"state": np.zeros((1, 4), np.float32)}
    a = policy.predict_action_chunk(obs)
    np.testing.assert_array_equal(a, policy.predict_action_chunk(obs))  # z = 0
    assert policy.noise_shape is None


def test_prior_sampling_varies_the_chunk():
    policy = make_policy("act_mlp", {**CFG, "inference_latent": "sample"}, vector_spec()).eval()
    assert policy.noise_shape == (3,)
    obs = {"state": torch.zeros(1, 1, 4)}
    a = policy.predict_chunk_tensor(obs, noise=torch.zeros(1, 3))
    b = policy.predict_chunk_tensor(obs, noise=torch.ones(1, 3))
    torch.testing.assert_close(a, make_policy_prior_mean(policy)(obs))
    assert not torch.allclose(a, b)


def make_policy_prior_mean(policy):
    """The same weights decoded at the prior mean (z = 0)."""

    def run(obs):
        feats = policy.encoder(policy.normalizer.normalize_obs(obs))
        z = feats.new_zeros(feats.shape[0], policy.config.latent_dim)
        return policy.normalizer.unnormalize_action(policy._decode(feats, z))

    return run
