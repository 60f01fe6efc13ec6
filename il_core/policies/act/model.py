"""ACT, the Action Chunking Transformer (Zhao et al. 2023, arXiv 2304.13705).

Follows the structure of LeRobot 0.4.4's ``lerobot/policies/act/modeling_act.py``
(Apache-2.0; the module names below are LeRobot's so the two are easy to compare), written
for this package's policy contract: the shared normaliser, history windows, masked chunks,
``predict_chunk_tensor(obs, noise)`` and TorchScript/ONNX export.

Training: the VAE encoder (a transformer encoder over ``[CLS, state, a_1..a_h]`` with
sinusoidal positions; padded actions are masked out of attention) gives ``mu, log var`` of
z; z is sampled with the reparameterisation trick. The transformer encoder reads
``[latent, state, image cells...]`` (1-D learned positions for the first two, 2-D sine
positions for the cells); the decoder cross-attends with ``h`` learned queries; a linear head
gives the normalised chunk. Loss = masked L1 + ``kl_weight * KL(q || N(0, I))``.
Acting: z = 0 (the prior mean: deterministic), or a prior draw passed as ``noise``.

Attention is written with plain matrix products rather than ``nn.MultiheadAttention``
(whose fused inference path neither TorchScript tracing nor ONNX export can follow); the
parameters keep ``nn.MultiheadAttention``'s names and shapes (``in_proj_weight``,
``in_proj_bias``, ``out_proj``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from il_core.config import ConfigError
from il_core.constants import ACTION, ACTION_MASK, OBS
from il_core.normalize import Normalizer
from il_core.policies import register_policy
from il_core.policies.act.configuration import ACTConfig
from il_core.policies.base import Policy
from il_core.policies.cvae import cvae_loss, kl_to_standard_normal, latent_noise_shape
from il_core.policies.encoders import make_backbone
from il_core.spec import DatasetSpec


class Attention(nn.Module):
    """Multi-head attention, batch first, ``nn.MultiheadAttention``'s parameter layout.

    Args:
        dim: Model width.
        heads: Number of heads (divides ``dim``).
        dropout: Dropout on the attention weights (training only).
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        """Queries ``(B, Sq, D)``, keys/values ``(B, Sk, D)``, additive mask ``(B, 1, 1, Sk)``.

        Returns:
            ``(B, Sq, D)``.
        """
        b, sq, d = q.shape
        sk = k.shape[1]
        wq, wk, wv = self.in_proj_weight.chunk(3, dim=0)
        bq, bk, bv = self.in_proj_bias.chunk(3, dim=0)
        hd = d // self.heads
        qh = F.linear(q, wq, bq).reshape(b, sq, self.heads, hd).transpose(1, 2)
        kh = F.linear(k, wk, bk).reshape(b, sk, self.heads, hd).transpose(1, 2)
        vh = F.linear(v, wv, bv).reshape(b, sk, self.heads, hd).transpose(1, 2)
        att = (qh * (1.0 / math.sqrt(hd))) @ kh.transpose(-1, -2)
        if mask is not None:
            att = att + mask
        att = att.softmax(-1)
        if self.training and self.dropout > 0:
            att = F.dropout(att, self.dropout)
        y = (att @ vh).transpose(1, 2).reshape(b, sq, d)
        return self.out_proj(y)

    def constant_rows(self, v: Tensor) -> Tensor:
        """Self-attention output when every token equals ``v`` ``(B, 1, D)``: ``(B, 1, D)``.

        Attention weights sum to one and every value row is the same, so the weights drop out.
        """
        _, _, wv = self.in_proj_weight.chunk(3, dim=0)
        _, _, bv = self.in_proj_bias.chunk(3, dim=0)
        return self.out_proj(F.linear(v, wv, bv))


def _activation(name: str):
    return F.relu if name == "relu" else F.gelu


class EncoderLayer(nn.Module):
    """Transformer encoder layer (LeRobot's ``ACTEncoderLayer``): positions added to q and k."""

    def __init__(self, cfg: ACTConfig) -> None:
        super().__init__()
        d = cfg.dim_model
        self.self_attn = Attention(d, cfg.n_heads, cfg.dropout)
        self.linear1 = nn.Linear(d, cfg.dim_feedforward)
        self.linear2 = nn.Linear(cfg.dim_feedforward, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.dropout1 = nn.Dropout(cfg.dropout)
        self.dropout2 = nn.Dropout(cfg.dropout)
        self.activation = _activation(cfg.feedforward_activation)
        self.pre_norm = cfg.pre_norm

    def forward(self, x: Tensor, pos: Tensor, mask: Tensor | None = None) -> Tensor:
        """Tokens ``(B, S, D)``, positions ``(1 or B, S, D)`` -> ``(B, S, D)``."""
        skip = x
        if self.pre_norm:
            x = self.norm1(x)
        qk = x + pos
        x = skip + self.dropout1(self.self_attn(qk, qk, x, mask))
        if self.pre_norm:
            skip = x
            x = self.norm2(x)
        else:
            x = skip = self.norm1(x)
        x = skip + self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))
        return x if self.pre_norm else self.norm2(x)


class Encoder(nn.Module):
    """A stack of encoder layers, with a final LayerNorm when pre-norm (LeRobot's)."""

    def __init__(self, cfg: ACTConfig, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(num_layers))
        self.norm = nn.LayerNorm(cfg.dim_model) if cfg.pre_norm else nn.Identity()

    def forward(self, x: Tensor, pos: Tensor, mask: Tensor | None = None) -> Tensor:
        """``(B, S, D)`` -> ``(B, S, D)``."""
        for layer in self.layers:
            x = layer(x, pos, mask)
        return self.norm(x)


class DecoderLayer(nn.Module):
    """Transformer decoder layer (LeRobot's ``ACTDecoderLayer``)."""

    def __init__(self, cfg: ACTConfig) -> None:
        super().__init__()
        d = cfg.dim_model
        self.self_attn = Attention(d, cfg.n_heads, cfg.dropout)
        self.multihead_attn = Attention(d, cfg.n_heads, cfg.dropout)
        self.linear1 = nn.Linear(d, cfg.dim_feedforward)
        self.linear2 = nn.Linear(cfg.dim_feedforward, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.dropout1 = nn.Dropout(cfg.dropout)
        self.dropout2 = nn.Dropout(cfg.dropout)
        self.dropout3 = nn.Dropout(cfg.dropout)
        self.activation = _activation(cfg.feedforward_activation)
        self.pre_norm = cfg.pre_norm

    def forward(
        self, x: Tensor, memory: Tensor, pos: Tensor, memory_pos: Tensor, zero_input: bool = False
    ) -> Tensor:
        """Queries ``(B, h, D)`` attend to encoder output ``(B, S, D)`` -> ``(B, h, D)``.

        ``zero_input``: ``x`` is all zeros (the first layer's input). Then every value row of
        the self-attention is the same vector, so its output is that vector whatever the
        attention weights: computed from one row, exactly, instead of from ``h`` queries.
        """
        skip = x
        if self.pre_norm:
            x = self.norm1(x)
        if zero_input:
            attn = self.self_attn.constant_rows(x[:, :1]).expand_as(x)
        else:
            qk = x + pos
            attn = self.self_attn(qk, qk, x)
        x = skip + self.dropout1(attn)
        if self.pre_norm:
            skip = x
            x = self.norm2(x)
        else:
            x = skip = self.norm1(x)
        x = skip + self.dropout2(self.multihead_attn(x + pos, memory + memory_pos, memory))
        if self.pre_norm:
            skip = x
            x = self.norm3(x)
        else:
            x = skip = self.norm2(x)
        x = skip + self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))
        return x if self.pre_norm else self.norm3(x)


class Decoder(nn.Module):
    """A stack of decoder layers followed by a LayerNorm."""

    def __init__(self, cfg: ACTConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_decoder_layers))
        self.norm = nn.LayerNorm(cfg.dim_model)

    def forward(self, x: Tensor, memory: Tensor, pos: Tensor, memory_pos: Tensor) -> Tensor:
        """Zero queries ``(B, h, D)`` -> ``(B, h, D)``."""
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, pos, memory_pos, zero_input=(i == 0))
        return self.norm(x)


def sinusoidal_1d(num_positions: int, dim: int) -> Tensor:
    """``(num_positions, dim)`` sine/cosine embedding of Attention Is All You Need."""
    pos = np.arange(num_positions)[:, None]
    angle = pos / np.power(10000, 2 * (np.arange(dim) // 2) / dim)
    angle[:, 0::2] = np.sin(angle[:, 0::2])
    angle[:, 1::2] = np.cos(angle[:, 1::2])
    return torch.from_numpy(angle).float()


def sinusoidal_2d(height: int, width: int, dim: int) -> Tensor:
    """``(H * W, dim)`` 2-D sine embedding of a feature map (DETR's, as LeRobot's ACT).

    Half the channels encode the row, half the column; positions are normalised to (0, 2 pi].
    """
    half = dim // 2
    eps, two_pi = 1e-6, 2 * math.pi
    y = torch.arange(1, height + 1, dtype=torch.float32)[:, None].expand(height, width)
    x = torch.arange(1, width + 1, dtype=torch.float32)[None, :].expand(height, width)
    y = y / (height + eps) * two_pi
    x = x / (width + eps) * two_pi
    inv = 10000 ** (2 * (torch.arange(half, dtype=torch.float32) // 2) / half)
    x, y = x[..., None] / inv, y[..., None] / inv
    pe_x = torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), dim=-1).flatten(2)
    pe_y = torch.stack((y[..., 0::2].sin(), y[..., 1::2].cos()), dim=-1).flatten(2)
    return torch.cat((pe_y, pe_x), dim=-1).reshape(height * width, 2 * half)


@register_policy("act")
class ACTPolicy(Policy):
    """Action Chunking Transformer (continuous actions only).

    Parameter count at LeRobot's defaults (one 3x96x96 camera, 14-d state and action):
    see ``tests/test_policy_act_transformer.py``, which checks it against LeRobot's own.
    """

    config_class = ACTConfig
    config: ACTConfig
    # Buffers registered in __init__ (the VAE encoder's only with use_vae).
    vae_encoder_pos_enc: Tensor
    encoder_cam_feat_pos_embed: Tensor

    def __init__(
        self,
        config: ACTConfig,
        spec: DatasetSpec,
        stats: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> None:
        super().__init__(config, spec, stats)
        if spec.action.kind != "continuous":
            raise ConfigError("policy 'act' needs continuous actions")
        cfg = config
        d = cfg.dim_model
        k = cfg.n_obs_steps
        self.normalizer = Normalizer(spec, stats, obs_min_scale=config.obs_min_std)
        self.vector_keys = spec.vector_keys
        self.image_keys = spec.image_keys
        self.state_dim = k * sum(spec.observations[key].shape[0] for key in self.vector_keys)
        action_dim = spec.action.dim
        n_state = 1 if self.state_dim else 0

        if cfg.use_vae:
            self.vae_encoder = Encoder(cfg, cfg.n_vae_encoder_layers)
            self.vae_encoder_cls_embed = nn.Embedding(1, d)
            if n_state:
                self.vae_encoder_robot_state_input_proj = nn.Linear(self.state_dim, d)
            self.vae_encoder_action_input_proj = nn.Linear(action_dim, d)
            self.vae_encoder_latent_output_proj = nn.Linear(d, 2 * cfg.latent_dim)
            pos = sinusoidal_1d(1 + n_state + cfg.horizon, d)
            self.register_buffer("vae_encoder_pos_enc", pos[None], persistent=False)

        # Image tokens: per camera (or one shared) backbone + 1x1 conv; fixed 2-D positions.
        self.backbones = nn.ModuleDict()
        self.img_proj = nn.ModuleDict()
        cam_pos = []
        hw = (0, 0)
        icfg = cfg.image_encoder
        if self.image_keys:
            shapes = {spec.observations[key].shape for key in self.image_keys}
            if icfg.shared and len(shapes) != 1:
                raise ConfigError(
                    f"image_encoder.shared needs cameras of one shape, got {sorted(shapes)}"
                )
        for i, key in enumerate(self.image_keys):
            shape = spec.observations[key].shape
            if icfg.shared and i > 0:
                self.backbones[f"cam{i}"] = self.backbones["cam0"]
                self.img_proj[f"cam{i}"] = self.img_proj["cam0"]
                fh, fw = hw
            else:
                net, ch, fh, fw = make_backbone(shape, icfg, load_pretrained=stats is not None)
                hw = (fh, fw)
                self.backbones[f"cam{i}"] = net
                self.img_proj[f"cam{i}"] = nn.Conv2d(ch, d, kernel_size=1)
            cam_pos += [sinusoidal_2d(fh, fw, d)] * k
        if not self.image_keys and not n_state:
            raise ConfigError("policy 'act' needs a vector observation or a camera")

        self.encoder = Encoder(cfg, cfg.n_encoder_layers)
        self.decoder = Decoder(cfg)
        if n_state:
            self.encoder_robot_state_input_proj = nn.Linear(self.state_dim, d)
        self.encoder_latent_input_proj = nn.Linear(cfg.latent_dim, d)
        self.encoder_1d_feature_pos_embed = nn.Embedding(1 + n_state, d)
        cam = torch.cat(cam_pos) if cam_pos else torch.zeros(0, d)
        self.register_buffer("encoder_cam_feat_pos_embed", cam, persistent=False)
        self.decoder_pos_embed = nn.Embedding(cfg.horizon, d)
        self.action_head = nn.Linear(d, action_dim)
        # Xavier-uniform transformer weights, as the original code and LeRobot.
        for p in [*self.encoder.parameters(), *self.decoder.parameters()]:
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    # -- pieces ------------------------------------------------------------------------------

    def _state(self, nobs: dict[str, Tensor]) -> Tensor:
        """All vector keys of all k steps as one ``(B, state_dim)`` vector."""
        b = nobs[self.vector_keys[0]].shape[0]
        return torch.cat([nobs[key].reshape(b, -1) for key in self.vector_keys], dim=-1)

    def _latent(self, state: Tensor | None, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``mu, logvar`` ``(B, Z)`` of q(z | state, chunk); padded actions masked out."""
        b = target.shape[0]
        tokens = [self.vae_encoder_cls_embed.weight.expand(b, 1, -1)]
        if state is not None:
            tokens.append(self.vae_encoder_robot_state_input_proj(state)[:, None])
        tokens.append(self.vae_encoder_action_input_proj(target))
        x = torch.cat(tokens, dim=1)
        keep = torch.cat([mask.new_ones(b, x.shape[1] - mask.shape[1]), mask], dim=1)
        additive = torch.zeros_like(keep).masked_fill(keep < 0.5, float("-inf"))
        out = self.vae_encoder(x, self.vae_encoder_pos_enc, additive[:, None, None, :])[:, 0]
        mu, logvar = self.vae_encoder_latent_output_proj(out).chunk(2, dim=-1)
        return mu, logvar

    def _decode(self, nobs: dict[str, Tensor], state: Tensor | None, z: Tensor) -> Tensor:
        """Normalised observations and latent ``(B, Z)`` -> normalised chunk ``(B, h, D)``."""
        b = z.shape[0]
        tokens = [self.encoder_latent_input_proj(z)[:, None]]
        if state is not None:
            tokens.append(self.encoder_robot_state_input_proj(state)[:, None])
        for i, key in enumerate(self.image_keys):
            x = nobs[key]  # (B, k, C, H, W)
            k = x.shape[1]
            # The normaliser's channels-first view of HWC frames has channels-last strides;
            # oneDNN runs ResNet-18 on channels-last tensors about 1.4x slower at batch 1.
            x = x.reshape(b * k, *x.shape[2:]).contiguous()
            fmap = self.backbones[f"cam{i}"](x)
            fmap = self.img_proj[f"cam{i}"](fmap)  # (B k, D, H', W')
            tokens.append(fmap.flatten(2).transpose(1, 2).reshape(b, -1, fmap.shape[1]))
        pos = torch.cat(
            [self.encoder_1d_feature_pos_embed.weight, self.encoder_cam_feat_pos_embed]
        )[None]
        memory = self.encoder(torch.cat(tokens, dim=1), pos)
        queries = self.decoder_pos_embed.weight[None]
        out = self.decoder(memory.new_zeros(b, *queries.shape[1:]), memory, queries, pos)
        return self.action_head(out)

    # -- contract ----------------------------------------------------------------------------

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """CVAE loss; logs ``loss``, ``recon`` and ``kl``."""
        nobs = self.normalizer.normalize_obs(batch[OBS])
        state = self._state(nobs) if self.state_dim else None
        target = self.normalizer.normalize_action(batch[ACTION].to(torch.float32))
        mask = batch[ACTION_MASK].to(target.dtype)
        target = target * mask[..., None]
        b = target.shape[0]
        if self.config.use_vae:
            mu, logvar = self._latent(state, target, mask)
            z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
            kl = kl_to_standard_normal(mu, logvar)
        else:
            z = target.new_zeros(b, self.config.latent_dim)
            kl = target.new_zeros(())
        pred = self._decode(nobs, state, z)
        return cvae_loss(pred, target, mask, kl, self.config)

    @property
    def noise_shape(self) -> tuple[int, ...] | None:
        """Per-sample standard-normal noise (the prior draw of z), None at the prior mean."""
        return latent_noise_shape(self.config)

    def predict_chunk_tensor(self, obs: dict[str, Tensor], noise: Tensor | None = None) -> Tensor:
        """Raw observation histories ``{key: (B, k, ...)}`` -> raw chunks ``(B, h, D)``.

        Args:
            obs: Raw observations.
            noise: ``(B, latent_dim)`` prior draw for ``inference_latent: sample`` (drawn
                here when None); ignored at the prior mean.
        """
        nobs = self.normalizer.normalize_obs(obs)
        b = next(iter(nobs.values())).shape[0]
        state = self._state(nobs) if self.state_dim else None
        shape = (b, self.config.latent_dim)
        if self.config.inference_latent == "prior_mean":
            z = torch.zeros(shape, device=self.action_head.weight.device)
        else:
            z = (
                torch.randn(shape, device=self.action_head.weight.device)
                if noise is None
                else noise
            )
        return self.normalizer.unnormalize_action(self._decode(nobs, state, z))
