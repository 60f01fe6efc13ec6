"""Mixture of Gaussians: the likelihood, its numerical stability, and inference modes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from il_core.constants import ACTION, ACTION_MASK, OBS
from il_core.policies import make_policy
from il_core.policies.mog.model import categorical_from_uniform, normal_to_uniform
from tests.helpers import vector_spec

CFG = {"n_obs_steps": 1, "horizon": 2, "n_action_steps": 1, "hidden_dims": [8], "num_modes": 3}


def _batch(action: torch.Tensor) -> dict:
    b = action.shape[0]
    return {OBS: {"state": torch.zeros(b, 1, 4)}, ACTION: action, ACTION_MASK: torch.ones(b, 2)}


def _set_head(policy, logits, means, stds_raw):
    """Make the head output fixed values (zero weights, the values as bias)."""
    last = policy.head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.cat([logits, means.flatten(), stds_raw.flatten()]))


def test_nll_matches_the_mixture_density():
    policy = make_policy("mog", CFG, vector_spec())
    logits = torch.tensor([0.0, 1.0, -1.0])
    means = torch.randn(3, 2, 2)
    stds_raw = torch.randn(3, 2, 2)
    _set_head(policy, logits, means, stds_raw)
    a = torch.randn(5, 2, 2)
    loss, _ = policy(_batch(a))
    stds = torch.nn.functional.softplus(stds_raw) + policy.config.min_std
    comp = torch.distributions.Independent(torch.distributions.Normal(means, stds), 2)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logits), comp
    )
    want = -(mix.log_prob(a) / 4).mean()  # per action element
    torch.testing.assert_close(loss, want)


def test_nll_stays_finite_far_from_every_component():
    policy = make_policy("mog", {**CFG, "min_std": 1e-4}, vector_spec())
    _set_head(policy, torch.zeros(3), torch.zeros(3, 2, 2), torch.full((3, 2, 2), -30.0))
    # exp(log N) underflows to 0 for every component; logsumexp keeps the loss finite.
    loss, _ = policy(_batch(torch.full((2, 2, 2), 5.0)))
    assert torch.isfinite(loss) and loss > 1e8
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in policy.parameters() if p.grad is not None)


def test_inverse_cdf_sampling_follows_the_weights():
    probs = torch.tensor([[0.2, 0.5, 0.3]]).expand(20000, 3)
    u = normal_to_uniform(torch.randn(20000, generator=torch.Generator().manual_seed(0)))
    counts = torch.bincount(categorical_from_uniform(probs, u), minlength=3) / 20000
    torch.testing.assert_close(counts, torch.tensor([0.2, 0.5, 0.3]), atol=0.015, rtol=0)
    assert categorical_from_uniform(probs[:1], torch.tensor([1.0])).item() == 2  # no overflow


@pytest.mark.parametrize("mode", ["mode", "component_mean", "sample"])
def test_inference_modes(mode):
    policy = make_policy("mog", {**CFG, "inference": mode}, vector_spec()).eval()
    means = torch.stack([torch.full((2, 2), v) for v in (-0.5, 0.25, 0.75)])
    _set_head(policy, torch.tensor([0.0, math.log(3.0), 0.0]), means, torch.full((3, 2, 2), -3.0))
    obs = {"state": torch.zeros(4000, 1, 4)}
    torch.manual_seed(0)
    with torch.no_grad():
        out = policy.predict_chunk_tensor(obs)[:, 0, 0].numpy()
    if mode == "mode":
        assert policy.noise_shape is None
        np.testing.assert_allclose(out, 0.25)
        return
    assert policy.noise_shape == (1 + 4,)
    share = [np.mean(np.abs(out - v) < 0.2) for v in (-0.5, 0.25, 0.75)]
    np.testing.assert_allclose(share, [0.2, 0.6, 0.2], atol=0.03)
    if mode == "component_mean":
        assert set(np.round(out, 5)) == {-0.5, 0.25, 0.75}
    else:
        assert len(set(np.round(out, 5))) > 100  # Gaussian noise around the means
