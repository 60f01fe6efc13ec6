"""Autoregressive discretised-action policy (RT-1 style binning, predicted one token at a time).

A chunk of h actions with D dimensions is a sequence of ``T = h * D`` tokens in time-major
order (all dimensions of step 0, then step 1, ...). Each continuous dimension is min-max
normalised to [-1, 1] and cut into ``num_bins`` equal bins; a discrete action is one token
whose bins are its classes. Token i is classified from the observation features and the
values of tokens ``0 .. i-1`` (their bin centres), so the second dimension of a step is
predicted knowing the first: a bimodal first dimension is sampled once and the rest follow
it.

The network is an MLP shared by all positions. Its input for position i is the observation
features, the previous token values masked to positions ``< i`` together with the mask
itself, and a learned position embedding; training evaluates all T positions in parallel
with teacher forcing (a MADE-style mask), acting runs T sequential steps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from il_core.constants import ACTION, ACTION_MASK, OBS
from il_core.normalize import Normalizer
from il_core.policies import register_policy
from il_core.policies.ar.configuration import ARConfig
from il_core.policies.base import Policy
from il_core.policies.encoders import ObservationEncoder, mlp
from il_core.spec import DatasetSpec


# The same two helpers as in il_core.policies.mog.model; repeated so that sibling policy
# packages stay independent of each other.
def normal_to_uniform(z: Tensor) -> Tensor:
    """Map standard-normal draws to uniform (0, 1) with the normal CDF (exportable)."""
    return 0.5 * (1.0 + torch.erf(z * (1.0 / math.sqrt(2.0))))


def categorical_from_uniform(probs: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF sampling: ``probs`` ``(B, K)``, ``u`` ``(B,)`` in (0, 1) -> ``(B,)`` int64."""
    below = (probs.cumsum(-1) < u.unsqueeze(-1)).sum(-1)
    return below.clamp(max=probs.shape[-1] - 1)


@register_policy("ar")
class ARPolicy(Policy):
    """Autoregressive policy over binned action tokens (continuous or discrete actions)."""

    config_class = ARConfig
    config: ARConfig
    # Buffers registered in __init__: the MADE mask and the value of each bin.
    known: Tensor
    centres: Tensor

    def __init__(
        self,
        config: ARConfig,
        spec: DatasetSpec,
        stats: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> None:
        super().__init__(config, spec, stats)
        self.discrete = spec.action.kind == "discrete"
        self.normalizer = Normalizer(
            spec, stats, action_mode="min_max", obs_min_scale=config.obs_min_std
        )
        self.encoder = ObservationEncoder(
            spec,
            config.n_obs_steps,
            config.image_encoder,
            config.history_encoder,
            load_pretrained=stats is not None,
        )
        self.dim = 1 if self.discrete else spec.action.dim
        if self.discrete:
            # ActionSpec requires num_classes (>= 2) for discrete actions.
            assert spec.action.num_classes is not None
            self.nb = int(spec.action.num_classes)
        else:
            self.nb = config.num_bins
        self.num_tokens = config.horizon * self.dim
        t, h0 = self.num_tokens, config.hidden_dims[0]
        self.feat_in = nn.Linear(self.encoder.out_dim, h0)
        self.tok_in = nn.Linear(2 * t, h0, bias=False)
        self.pos = nn.Parameter(torch.randn(t, h0) * 0.02)
        self.head = nn.Sequential(nn.ReLU(), mlp(h0, config.hidden_dims[1:], self.nb))
        # known[i, j] = 1 where token j precedes token i (the MADE mask); value of each bin.
        self.register_buffer("known", torch.ones(t, t).tril(-1), persistent=False)
        centres = torch.linspace(-1.0, 1.0, self.nb)
        if not self.discrete:
            centres = -1.0 + (2.0 * torch.arange(self.nb) + 1.0) / self.nb
        self.register_buffer("centres", centres, persistent=False)

    def tokenize(self, action: Tensor) -> Tensor:
        """Raw actions ``(B, h, D)`` float (or ``(B, h)`` int64) -> tokens ``(B, T)`` int64."""
        if self.discrete:
            return action.long()
        a = self.normalizer.normalize_action(action.float())
        idx = torch.floor((a + 1.0) * 0.5 * self.nb).long().clamp(0, self.nb - 1)
        return idx.reshape(a.shape[0], -1)

    def _logits(self, base: Tensor, values: Tensor, known: Tensor) -> Tensor:
        """Logits of the positions given by ``known`` rows.

        Args:
            base: ``(B, 1, H)`` or ``(B, T, H)``: observation term plus position embedding.
            values: ``(B, T)`` token values (bin centres), any value where not known.
            known: ``(T', T)`` mask rows of the positions to score.

        Returns:
            ``(B, T', num_bins)``.
        """
        prev = values.unsqueeze(1) * known
        inp = torch.cat([prev, known.expand_as(prev)], dim=-1)
        return self.head(base + self.tok_in(inp))

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """Teacher-forced cross-entropy over all tokens (masked); logs ``loss``, ``accuracy``."""
        feats = self.encoder(self.normalizer.normalize_obs(batch[OBS]))
        tokens = self.tokenize(batch[ACTION])
        values = self.centres[tokens]
        base = self.feat_in(feats).unsqueeze(1) + self.pos
        logits = self._logits(base, values, self.known)  # (B, T, nb)
        mask = batch[ACTION_MASK].to(logits.dtype).repeat_interleave(self.dim, dim=1)
        ce = F.cross_entropy(logits.reshape(-1, self.nb), tokens.reshape(-1), reduction="none")
        denom = mask.sum().clamp_min(1.0)
        loss = (ce.reshape(mask.shape) * mask).sum() / denom
        with torch.no_grad():
            acc = ((logits.argmax(-1) == tokens).to(mask.dtype) * mask).sum() / denom
        return loss, {"loss": float(loss.detach()), "accuracy": float(acc)}

    @property
    def noise_shape(self) -> tuple[int, ...] | None:
        """Per-sample standard-normal noise, one per token when sampling (None if greedy)."""
        return (self.num_tokens,) if self.config.inference == "sample" else None

    def predict_chunk_tensor(self, obs: dict[str, Tensor], noise: Tensor | None = None) -> Tensor:
        """Decode T tokens one after the other from raw observation histories.

        Args:
            obs: ``{key: (B, k, ...)}`` raw observations.
            noise: ``(B, T)`` standard normal (sampling only); drawn here when None.

        Returns:
            ``(B, h, D)`` float32 raw actions, or ``(B, h)`` int64 classes.
        """
        feats = self.encoder(self.normalizer.normalize_obs(obs))
        b = feats.shape[0]
        sample = self.config.inference == "sample"
        if sample and noise is None:
            noise = torch.randn((b, self.num_tokens), device=feats.device)
        obs_term = self.feat_in(feats).unsqueeze(1)
        values = feats.new_zeros((b, self.num_tokens))
        tokens = []
        positions = torch.arange(self.num_tokens, device=feats.device)
        for i in range(self.num_tokens):
            logits = self._logits(obs_term + self.pos[i], values, self.known[i : i + 1])[:, 0]
            if sample:
                assert noise is not None  # passed in, or drawn above when sampling
                probs = (logits / self.config.temperature).softmax(-1)
                tok = categorical_from_uniform(probs, normal_to_uniform(noise[:, i]))
            else:
                tok = logits.argmax(-1)
            tokens.append(tok)
            values = values + (positions == i).to(values.dtype) * self.centres[tok].unsqueeze(-1)
        if self.discrete:
            return torch.stack(tokens, dim=1)
        chunk = values.reshape(b, self.config.horizon, self.dim)
        return self.normalizer.unnormalize_action(chunk)
