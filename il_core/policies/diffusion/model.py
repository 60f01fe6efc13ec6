"""Diffusion Policy (Chi et al. 2023): DDPM training, DDIM sampling, temporal U-Net with FiLM.

Training adds Gaussian noise of a random level t to the (min-max normalised) expert chunk and
trains a 1-D convolutional U-Net over the chunk's time axis to predict the noise (or the clean
chunk), conditioned through FiLM on the diffusion step and the encoded observation history.
Acting starts from Gaussian noise and runs ``num_inference_steps`` DDIM steps, which may be
far fewer than the ``num_train_timesteps`` noise levels seen in training.

Weights: ``net`` (observation encoder + U-Net) is what the optimiser trains; ``ema_net`` is its
exponential moving average, updated by :meth:`DiffusionPolicy.after_optimizer_step`. Both are
in ``state_dict`` (so a resumed run continues the average exactly), and every inference path,
``predict_chunk_tensor`` and therefore export, uses ``ema_net``. ``ema_net``'s parameters do
not require gradients, so the optimiser leaves them alone.
"""

from __future__ import annotations

import copy
import math
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from il_core.config import ConfigError
from il_core.constants import ACTION, ACTION_MASK, OBS
from il_core.normalize import Normalizer
from il_core.policies import register_policy
from il_core.policies.base import Policy
from il_core.policies.diffusion.configuration import DiffusionConfig
from il_core.policies.encoders import ObservationEncoder
from il_core.spec import DatasetSpec


def make_betas(cfg: DiffusionConfig) -> Tensor:
    """DDPM noise schedule ``(T,)`` float64 from the config."""
    t_count = cfg.num_train_timesteps
    if cfg.beta_schedule == "linear":
        return torch.linspace(cfg.beta_start, cfg.beta_end, t_count, dtype=torch.float64)
    if cfg.beta_schedule == "scaled_linear":
        lin = torch.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, t_count, dtype=torch.float64)
        return lin**2

    # squaredcos_cap_v2 (Nichol & Dhariwal): alpha_bar(t) = cos^2((t + 0.008) / 1.008 * pi/2).
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / t_count) / alpha_bar(i / t_count), 0.999)
        for i in range(t_count)
    ]
    return torch.tensor(betas, dtype=torch.float64)


class SinusoidalPosEmb(nn.Module):
    """Diffusion step ``(B,)`` -> sinusoidal embedding ``(B, dim)``.

    Always computed in float32 (a step of 99 times a frequency needs more than bfloat16's 8
    bits of mantissa) and returned in :attr:`dtype`.
    """

    freqs: Tensor  # (dim // 2,) buffer registered in __init__

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        freqs = torch.exp(torch.arange(half) * -(math.log(10000.0) / max(1, half - 1)))
        self.register_buffer("freqs", freqs, persistent=False)
        self.dtype = torch.float32

    def forward(self, t: Tensor) -> Tensor:
        """Embed steps ``(B,)`` as ``(B, dim)``."""
        x = t.to(torch.float32)[:, None] * self.freqs.to(torch.float32)[None, :]
        return torch.cat([x.sin(), x.cos()], dim=-1).to(self.dtype)


class MatmulConv1d(nn.Module):
    """A ``Conv1d`` or ``ConvTranspose1d`` as one matrix product, for inference in ``dtype``.

    At batch 1 the big U-Net's convolutions are matrix-vector-like and bound by reading the
    weights; oneDNN's bfloat16 matrix products (AMX where present) halve the bytes and run
    far faster than PyTorch's bfloat16 convolutions. Weights are copied, flattened tap-major
    ``(out, k * in)``; a transposed convolution becomes a convolution of the zero-upsampled
    input with the flipped, transposed kernel.

    Args:
        conv: The module to replace (groups 1, dilation 1, no output padding).
        dtype: Dtype of the copied weights and of the computation.
    """

    # Buffers registered in __init__: the flattened weight and the bias column (or None).
    weight: Tensor
    bias: Tensor | None

    def __init__(self, conv: nn.Conv1d | nn.ConvTranspose1d, dtype: torch.dtype) -> None:
        super().__init__()
        if conv.groups != 1 or conv.dilation[0] != 1:
            raise ValueError("MatmulConv1d supports groups=1, dilation=1 only")
        if isinstance(conv.padding, str):
            raise ValueError("MatmulConv1d supports numeric padding only, not 'same'/'valid'")
        w = conv.weight.detach()
        k = w.shape[-1]
        if isinstance(conv, nn.ConvTranspose1d):
            if conv.output_padding[0] != 0:
                raise ValueError("MatmulConv1d supports output_padding=0 only")
            w = w.transpose(0, 1).flip(-1)
            self.up, self.pad, self.stride = conv.stride[0], k - 1 - conv.padding[0], 1
        else:
            self.up, self.pad, self.stride = 1, conv.padding[0], conv.stride[0]
        self.k = k
        flat = w.permute(0, 2, 1).reshape(w.shape[0], -1).to(dtype).contiguous()
        self.register_buffer("weight", flat)
        bias = None if conv.bias is None else conv.bias.detach().to(dtype)[:, None]
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T)`` -> ``(B, C_out, T_out)``, as the replaced module computes it."""
        if self.up > 1:
            b, c, t = x.shape
            z = x.new_zeros(b, c, (t - 1) * self.up + 1)
            z[..., :: self.up] = x
            x = z
        if self.pad:
            x = F.pad(x, (self.pad, self.pad))
        cols = x.unfold(2, self.k, self.stride)  # (B, C_in, T_out, k)
        b, c, t, k = cols.shape
        cols = cols.permute(3, 1, 0, 2).reshape(k * c, b * t)
        out = self.weight @ cols
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(-1, b, t).transpose(0, 1)


def _fast_cpu_path(x: Tensor, weight: Tensor, rows: int) -> bool:
    """Whether a convolution should run as one weight-streaming matrix product (see below)."""
    # Tracing first: under a trace the sizes are traced values, not plain ints.
    return (
        not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and rows <= _FAST_MAX_ROWS
        and weight.numel() >= _FAST_MIN_WEIGHTS
    )


# Below 4 MB of weights the layer is cache-resident and PyTorch's own kernel is as fast; above
# 16 output columns (batch x time) the product is no longer bound by reading the weights.
_FAST_MIN_WEIGHTS = 1 << 20
_FAST_MAX_ROWS = 16


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` (same parameters and ``state_dict``) with a faster CPU inference path.

    At batch 1 the U-Net's large convolutions have only a few output columns (batch x time:
    4 at the 2048-channel level) and are bound by streaming the weights. PyTorch's float32
    CPU kernel for them (``_slow_conv2d_forward``: im2col, then a GEMM with the weight on the
    left) reaches about half the memory bandwidth that a GEMM with the weight as a transposed
    right operand does, so without gradients, on CPU, in float32 and for small outputs,
    :meth:`forward` unfolds the input and calls ``F.linear`` with a view of the weight
    ``(out, in * k)`` (no copy; the same sum, in another order: float rounding apart, the
    output is the same). Traced exports (TorchScript, ONNX) and training keep the stock path.
    """

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T)`` -> ``(B, C_out, T_out)``."""
        if (
            self.groups != 1
            or self.dilation[0] != 1
            or self.padding_mode != "zeros"
            or isinstance(self.padding, str)  # "same" / "valid": no int padding to read
        ):
            return super().forward(x)
        k, s, p = self.kernel_size[0], self.stride[0], self.padding[0]
        b, _, t = x.shape
        t_out = (t + 2 * p - k) // s + 1
        if not _fast_cpu_path(x, self.weight, b * t_out):
            return super().forward(x)
        if p:
            x = F.pad(x, (p, p))
        cols = x.unfold(2, k, s).permute(0, 2, 1, 3).reshape(b * t_out, -1)  # (B*T, C_in*k)
        out = F.linear(cols, self.weight.reshape(self.out_channels, -1), self.bias)
        return out.reshape(b, t_out, -1).transpose(1, 2).contiguous()


class ConvTranspose1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with the same faster CPU inference path as :class:`Conv1d`.

    The product ``x^T (B*T, C_in) @ W (C_in, C_out * k)`` (a view of the weight) gives each
    input step's contribution to ``k`` output steps; they are added at stride ``s`` and the
    padding is cropped.
    """

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        """``(B, C_in, T)`` -> ``(B, C_out, T_out)``."""
        k, s = self.kernel_size[0], self.stride[0]
        b, c_in, t = x.shape
        if (
            output_size is not None
            or self.groups != 1
            or self.dilation[0] != 1
            or self.output_padding[0] != 0
            or isinstance(self.padding, str)  # never for a transposed conv; typed as possible
            or not _fast_cpu_path(x, self.weight, b * t)
        ):
            return super().forward(x, output_size)
        p = self.padding[0]
        c_out = self.out_channels
        y = x.transpose(1, 2).reshape(b * t, c_in) @ self.weight.reshape(c_in, c_out * k)
        y = y.reshape(b, t, c_out, k).permute(0, 2, 3, 1)  # (B, C_out, k, T)
        full = (t - 1) * s + k
        z = x.new_zeros(b, c_out, full)
        for j in range(k):
            z[:, :, j : j + s * (t - 1) + 1 : s] += y[:, :, j]
        z = z[:, :, p : full - p]
        return z if self.bias is None else z + self.bias[:, None]


def lowp_unet_copy(unet: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Inference copy of a U-Net: convolutions as :class:`MatmulConv1d`, weights in ``dtype``.

    Buffers (the step-embedding frequencies) stay float32; the copy takes and returns
    ``dtype`` tensors.
    """
    copy_ = copy.deepcopy(unet).requires_grad_(False)

    def swap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, (nn.Conv1d, nn.ConvTranspose1d)):
                setattr(module, name, MatmulConv1d(child, dtype))
            else:
                swap(child)

    swap(copy_)
    for p in copy_.parameters():
        p.data = p.data.to(dtype)
    for m in copy_.modules():
        if isinstance(m, SinusoidalPosEmb):
            m.dtype = dtype
    return copy_.eval()


class Conv1dBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish, ``(B, C_in, T)`` -> ``(B, C_out, T)``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Conv1d(c_in, c_out, kernel, padding=kernel // 2),
            nn.GroupNorm(groups, c_out),
            nn.Mish(),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block."""
        return self.block(x)


class ConditionalResidualBlock1D(nn.Module):
    """Two conv blocks with FiLM (per-channel scale and bias from the condition) between.

    Input ``x`` ``(B, C_in, T)`` and ``cond`` ``(B, cond_dim)``; output ``(B, C_out, T)``.
    """

    def __init__(
        self, c_in: int, c_out: int, cond_dim: int, kernel: int, groups: int, scale: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [Conv1dBlock(c_in, c_out, kernel, groups), Conv1dBlock(c_out, c_out, kernel, groups)]
        )
        self.c_out = c_out
        self.scale = scale
        self.cond_encoder = nn.Sequential(
            nn.Mish(), nn.Linear(cond_dim, 2 * c_out if scale else c_out)
        )
        self.residual = Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """FiLM-conditioned residual block."""
        out = self.blocks[0](x)
        film = self.cond_encoder(cond).unsqueeze(-1)
        if self.scale:
            out = film[:, : self.c_out] * out + film[:, self.c_out :]
        else:
            out = out + film
        out = self.blocks[1](out)
        return out + self.residual(x)


class ConditionalUnet1D(nn.Module):
    """1-D temporal U-Net over an action chunk, FiLM-conditioned (diffusion_policy layout).

    Args:
        action_dim: D, channels of the input and output chunk.
        global_cond_dim: Size of the observation features.
        down_dims: Channels per level; time is halved between levels.
        kernel_size: Temporal kernel.
        n_groups: GroupNorm groups.
        step_embed_dim: Diffusion-step embedding size.
        film_scale: FiLM with scale and bias.

    ``forward(sample (B, h, D), timestep (B,), global_cond (B, G)) -> (B, h, D)``.
    """

    def __init__(
        self,
        action_dim: int,
        global_cond_dim: int,
        down_dims: tuple[int, ...],
        kernel_size: int = 5,
        n_groups: int = 8,
        step_embed_dim: int = 128,
        film_scale: bool = True,
    ) -> None:
        super().__init__()
        dims = [action_dim, *down_dims]
        e = step_embed_dim
        self.step_encoder = nn.Sequential(
            SinusoidalPosEmb(e), nn.Linear(e, 4 * e), nn.Mish(), nn.Linear(4 * e, e)
        )
        cond_dim = e + global_cond_dim

        def res(c_in: int, c_out: int) -> ConditionalResidualBlock1D:
            return ConditionalResidualBlock1D(
                c_in, c_out, cond_dim, kernel_size, n_groups, film_scale
            )

        in_out = list(zip(dims[:-1], dims[1:], strict=True))
        self.down = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(in_out):
            last = i == len(in_out) - 1
            sample = nn.Identity() if last else Conv1d(c_out, c_out, 3, 2, 1)
            self.down.append(nn.ModuleList([res(c_in, c_out), res(c_out, c_out), sample]))
        mid = dims[-1]
        self.mid = nn.ModuleList([res(mid, mid), res(mid, mid)])
        self.up = nn.ModuleList()
        for c_in, c_out in reversed(in_out[1:]):
            up = ConvTranspose1d(c_in, c_in, 4, 2, 1)
            self.up.append(nn.ModuleList([res(2 * c_out, c_in), res(c_in, c_in), up]))
        start = down_dims[0]
        self.final = nn.Sequential(
            Conv1dBlock(start, start, kernel_size, n_groups), Conv1d(start, action_dim, 1)
        )

    def forward(self, sample: Tensor, timestep: Tensor, global_cond: Tensor) -> Tensor:
        """Predict noise (or the clean chunk) ``(B, h, D)`` for a noisy chunk at ``timestep``."""
        x = sample.transpose(1, 2)
        cond = torch.cat([self.step_encoder(timestep), global_cond], dim=-1)
        skips = []
        # Each level is the ModuleList([res, res, resample]) built in __init__ (ModuleList
        # iterates as plain Modules, which the type checker cannot unpack).
        for level in self.down:
            res1, res2, down = cast(nn.ModuleList, level)
            x = res2(res1(x, cond), cond)
            skips.append(x)
            x = down(x)
        for block in self.mid:
            x = block(x, cond)
        for level in self.up:
            res1, res2, up = cast(nn.ModuleList, level)
            x = torch.cat([x, skips.pop()], dim=1)
            x = up(res2(res1(x, cond), cond))
        return self.final(x).transpose(1, 2)


class _DenoiserNet(nn.Module):
    """Everything the EMA averages: observation encoder + U-Net."""

    def __init__(self, spec: DatasetSpec, cfg: DiffusionConfig, load_pretrained: bool) -> None:
        super().__init__()
        self.encoder = ObservationEncoder(
            spec,
            cfg.n_obs_steps,
            cfg.image_encoder,
            cfg.history_encoder,
            load_pretrained=load_pretrained,
        )
        cond_dim = self.encoder.out_dim
        layers: list[nn.Module] = []
        for i, d in enumerate(cfg.obs_mlp_dims):
            layers += [nn.Linear(cond_dim, d)] + (
                [nn.Mish()] if i < len(cfg.obs_mlp_dims) - 1 else []
            )
            cond_dim = d
        self.obs_mlp = nn.Sequential(*layers)
        self.unet = ConditionalUnet1D(
            spec.action.dim,
            cond_dim,
            cfg.down_dims,
            cfg.kernel_size,
            cfg.n_groups,
            cfg.diffusion_step_embed_dim,
            cfg.use_film_scale_modulation,
        )


@register_policy("diffusion")
class DiffusionPolicy(Policy):
    """Diffusion Policy over action chunks (continuous actions only).

    Stochastic: :attr:`noise_shape` gives the per-sample standard-normal noise that
    :meth:`predict_chunk_tensor` consumes (drawn from torch's global generator when not
    passed), so that an exported model can be fed the same noise as the eager one.
    """

    config_class = DiffusionConfig
    config: DiffusionConfig
    # Buffers registered in __init__ (derived from the config, not saved): the DDPM schedule
    # sqrt(alpha_bar), sqrt(1 - alpha_bar) and the DDIM step coefficients and timesteps.
    sqrt_ab: Tensor
    sqrt_1m_ab: Tensor
    ddim_coeffs: Tensor
    ddim_timesteps: Tensor

    def __init__(
        self,
        config: DiffusionConfig,
        spec: DatasetSpec,
        stats: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> None:
        super().__init__(config, spec, stats)
        if spec.action.kind != "continuous":
            raise ConfigError("policy 'diffusion' needs continuous actions")
        # Min-max to [-1, 1]: the range the sample clipping and the unit-variance noise assume.
        self.normalizer = Normalizer(
            spec, stats, action_mode="min_max", obs_min_scale=config.obs_min_std
        )
        self.net = _DenoiserNet(spec, config, load_pretrained=stats is not None)
        self.ema_net: _DenoiserNet | None = None
        if config.use_ema:
            self.ema_net = copy.deepcopy(self.net).requires_grad_(False)
        self.action_dim = spec.action.dim
        betas = make_betas(config)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        # Derived from the config, so not saved (persistent=False keeps state_dict small).
        self.register_buffer("sqrt_ab", alphas_cumprod.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_1m_ab", (1 - alphas_cumprod).sqrt().float(), persistent=False)
        self._register_ddim(alphas_cumprod)
        self._lowp_unet: nn.Module | None = None  # cached bfloat16 copy, see _inference_unet

    # -- low-precision inference copy ------------------------------------------------------

    def _inference_unet(self, net: _DenoiserNet) -> tuple[nn.Module, torch.dtype]:
        """The U-Net to sample with and its dtype (a cached bfloat16 copy if configured)."""
        if self.config.inference_dtype == "float32":
            return net.unet, torch.float32
        lowp = self._lowp_unet
        if lowp is None:
            lowp = lowp_unet_copy(net.unet, torch.bfloat16)
            # Stored outside the module tree: not a submodule, not in state_dict.
            self.__dict__["_lowp_unet"] = lowp
        return lowp, torch.bfloat16

    def _drop_lowp(self) -> None:
        self.__dict__["_lowp_unet"] = None

    def train(self, mode: bool = True) -> DiffusionPolicy:
        """Switch mode; the low-precision copy is rebuilt from the current weights."""
        self._drop_lowp()
        return super().train(mode)

    def _apply(self, fn: Any, recurse: bool = True) -> DiffusionPolicy:
        self._drop_lowp()  # .to(device) and friends
        return super()._apply(fn, recurse)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load weights; the low-precision copy is rebuilt from them."""
        self._drop_lowp()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- schedule ------------------------------------------------------------------------

    def _register_ddim(self, ab: Tensor) -> None:
        """Precompute the DDIM step coefficients ("trailing" timestep spacing).

        Trailing spacing (Lin et al. 2024) starts at the last training level T - 1, so even a
        few steps begin from (almost) pure noise, and ends at the lowest levels.
        """
        cfg = self.config
        n, t_count = cfg.num_inference_steps, cfg.num_train_timesteps
        ts = [round(t_count - i * t_count / n) - 1 for i in range(n)]
        prev = ts[1:] + [-1]
        ab_t = ab[ts]
        ab_prev = torch.stack([ab[p] if p >= 0 else torch.ones((), dtype=ab.dtype) for p in prev])
        var = (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
        sigma = cfg.ddim_eta * var.clamp_min(0).sqrt()
        coeffs = torch.stack(
            [
                ab_t.sqrt(),
                (1 - ab_t).sqrt(),
                ab_prev.sqrt(),
                (1 - ab_prev - sigma**2).clamp_min(0).sqrt(),
                sigma,
            ],
            dim=1,
        )
        self.register_buffer("ddim_coeffs", coeffs.float(), persistent=False)
        self.register_buffer(
            "ddim_timesteps", torch.tensor(ts, dtype=torch.long), persistent=False
        )

    # -- training ------------------------------------------------------------------------

    def _global_cond(self, net: _DenoiserNet, obs: dict[str, Tensor]) -> Tensor:
        return net.obs_mlp(net.encoder(self.normalizer.normalize_obs(obs)))

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """Denoising loss on a batch of windows (masked MSE over valid chunk steps)."""
        cond = self._global_cond(self.net, batch[OBS])
        x0 = self.normalizer.normalize_action(batch[ACTION].to(cond.dtype))
        b = x0.shape[0]
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.config.num_train_timesteps, (b,), device=x0.device)
        x_t = self.sqrt_ab[t, None, None] * x0 + self.sqrt_1m_ab[t, None, None] * noise
        pred = self.net.unet(x_t, t, cond)
        target = noise if self.config.prediction_type == "epsilon" else x0
        mask = batch[ACTION_MASK].to(pred.dtype)
        loss = ((pred - target).square().mean(-1) * mask).sum() / mask.sum().clamp_min(1.0)
        return loss, {"loss": float(loss.detach())}

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        """Update the EMA weights (diffusion_policy's warm-up schedule)."""
        self._drop_lowp()
        if self.ema_net is None:
            return
        decay = min(self.config.ema_max_decay, 1.0 - (1.0 + step) ** -self.config.ema_power)
        for e, p in zip(self.ema_net.parameters(), self.net.parameters(), strict=True):
            e.lerp_(p.detach(), 1.0 - decay)
        for e_buf, b in zip(self.ema_net.buffers(), self.net.buffers(), strict=True):
            e_buf.copy_(b)

    # -- acting --------------------------------------------------------------------------

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """Per-sample standard-normal noise :meth:`predict_chunk_tensor` consumes.

        ``(1 + num_inference_steps, h, D)`` when ``ddim_eta > 0`` (initial noise, then one
        draw per step), else ``(1, h, D)`` (DDIM with eta 0 is deterministic after that).
        """
        n = 1 + (self.config.num_inference_steps if self.config.ddim_eta > 0 else 0)
        return (n, self.config.horizon, self.action_dim)

    def predict_chunk_tensor(self, obs: dict[str, Tensor], noise: Tensor | None = None) -> Tensor:
        """Sample action chunks by DDIM from raw observation histories.

        Args:
            obs: ``{key: (B, k, ...)}`` raw observations.
            noise: ``(B, *noise_shape)`` standard normal; drawn here when None.

        Returns:
            ``(B, h, D)`` raw actions.
        """
        net = self.ema_net if self.ema_net is not None else self.net
        cond = self._global_cond(net, obs)
        unet, dtype = self._inference_unet(net)
        cond_u = cond.to(dtype)
        b = cond.shape[0]
        if noise is None:
            noise = torch.randn((b, *self.noise_shape), device=cond.device, dtype=cond.dtype)
        x = noise[:, 0]
        clip, r = self.config.clip_sample, self.config.clip_sample_range
        eps_pred = self.config.prediction_type == "epsilon"
        for i in range(self.config.num_inference_steps):
            sa, s1a, sap, dir_c, sigma = self.ddim_coeffs[i]
            t = self.ddim_timesteps[i].expand(b)
            out = unet(x.to(dtype), t, cond_u).to(x.dtype)
            x0 = (x - s1a * out) / sa if eps_pred else out
            if clip:
                x0 = x0.clamp(-r, r)
            eps = (x - sa * x0) / s1a
            x = sap * x0 + dir_c * eps
            if self.config.ddim_eta > 0:
                x = x + sigma * noise[:, 1 + i]
        return self.normalizer.unnormalize_action(x)
