"""Diffusion policy: noise schedules, the DDIM sampler's arithmetic, EMA weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from il_core.batch import to_torch
from il_core.checkpoint import load_policy, save_checkpoint
from il_core.config import ConfigError
from il_core.policies import make_config, make_policy
from il_core.policies.diffusion.model import Conv1d, ConvTranspose1d, make_betas
from tests.helpers import random_batch, vector_spec

SMALL = {
    "n_obs_steps": 2,
    "horizon": 8,
    "n_action_steps": 4,
    "down_dims": [8, 16],
    "diffusion_step_embed_dim": 8,
    "n_groups": 4,
}
STATS = {
    "obs.state": {"mean": np.zeros(4), "std": np.ones(4)},
    "action": {"min": np.full(2, -2.0), "max": np.full(2, 2.0)},
}


@pytest.mark.parametrize("schedule", ["squaredcos_cap_v2", "linear", "scaled_linear"])
def test_noise_schedules_go_from_clean_to_noise(schedule):
    # The linear betas (1e-4 .. 0.02) are DDPM's, meant for 1000 levels.
    cfg = make_config("diffusion", {"beta_schedule": schedule, "num_train_timesteps": 1000})
    betas = make_betas(cfg)
    alpha_bar = torch.cumprod(1 - betas, 0)
    assert betas.shape == (1000,) and torch.all((betas > 0) & (betas < 1))
    assert alpha_bar[0] > 0.99 and alpha_bar[-1] < 0.01
    assert torch.all(alpha_bar[1:] < alpha_bar[:-1])


def test_config_checks():
    with pytest.raises(ConfigError, match="divisible by 4"):
        make_config("diffusion", {"horizon": 6, "n_action_steps": 2, "down_dims": [8, 16, 32]})
    with pytest.raises(ConfigError, match="num_inference_steps"):
        make_config("diffusion", {"num_train_timesteps": 10, "num_inference_steps": 20})
    with pytest.raises(ConfigError, match="n_groups"):
        make_config("diffusion", {"down_dims": [12, 16], "n_groups": 8})


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
@pytest.mark.parametrize(("train_steps", "inference_steps"), [(100, 10), (50, 50), (100, 3)])
def test_ddim_with_an_ideal_denoiser_lands_on_the_data(prediction, train_steps, inference_steps):
    # If every demonstration is the same chunk c, the ideal network predicts exactly the noise
    # in x_t (or c itself), and DDIM from any initial noise must end on c.
    cfg = {
        **SMALL,
        "prediction_type": prediction,
        "num_train_timesteps": train_steps,
        "num_inference_steps": inference_steps,
    }
    policy = make_policy("diffusion", cfg, vector_spec(), STATS).eval()
    target_raw = torch.tensor([0.5, -1.5]).expand(8, 2)  # raw units; normalised /2
    c = policy.normalizer.normalize_action(target_raw)

    def ideal(x, t, cond):
        if prediction == "sample":
            return c.expand_as(x)
        return (x - policy.sqrt_ab[t, None, None] * c) / policy.sqrt_1m_ab[t, None, None]

    policy.ema_net.unet.forward = ideal
    noise = torch.randn(3, *policy.noise_shape)
    obs = {"state": torch.zeros(3, 2, 4)}
    out = policy.predict_chunk_tensor(obs, noise=noise)
    torch.testing.assert_close(out, target_raw.expand(3, 8, 2), atol=1e-4, rtol=0)


def test_ddim_eta_adds_per_step_noise():
    policy = make_policy("diffusion", {**SMALL, "ddim_eta": 1.0}, vector_spec(), STATS).eval()
    assert policy.noise_shape == (11, 8, 2)
    det = make_policy("diffusion", SMALL, vector_spec(), STATS)
    assert det.noise_shape == (1, 8, 2)


def test_ema_weights_are_trained_saved_and_used_for_inference(tmp_path, rng):
    torch.manual_seed(0)
    policy = make_policy("diffusion", SMALL, vector_spec(), STATS)
    ema_params = list(policy.ema_net.parameters())
    assert ema_params and not any(p.requires_grad for p in ema_params)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    before = [p.clone() for p in ema_params]
    batch = to_torch(random_batch(vector_spec(), rng, b=8, k=2, h=8), torch.device("cpu"))
    for step in range(1, 6):
        loss, _ = policy(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        policy.after_optimizer_step(step)
    # The optimiser never touches the EMA copy directly, yet the average moved towards the
    # trained weights and is not equal to them.
    net, ema = dict(policy.net.named_parameters()), dict(policy.ema_net.named_parameters())
    moved = [not torch.equal(a, b) for a, b in zip(before, ema_params, strict=True)]
    assert all(moved)
    assert any(not torch.equal(net[k], ema[k]) for k in net)
    # Inference reads the EMA weights only: wrecking the trained ones changes nothing.
    policy.eval()
    obs = {"state": torch.randn(1, 2, 4)}
    noise = torch.randn(1, *policy.noise_shape)
    with torch.no_grad():
        ref = policy.predict_chunk_tensor(obs, noise=noise)
        for p in policy.net.parameters():
            p.add_(1.0)
        torch.testing.assert_close(policy.predict_chunk_tensor(obs, noise=noise), ref)
    # Both sets are in the checkpoint (resuming continues the average exactly).
    state = policy.state_dict()
    assert any(k.startswith("ema_net.") for k in state) and any(
        k.startswith("net.") for k in state
    )
    loaded = load_policy(save_checkpoint(tmp_path / "p.pt", policy))
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict_chunk_tensor(obs, noise=noise), ref)


def test_ema_decay_warms_up_and_can_be_off():
    policy = make_policy("diffusion", {**SMALL, "ema_power": 0.75}, vector_spec(), STATS)
    with torch.no_grad():
        for p in policy.net.parameters():
            p.fill_(1.0)
        for p in policy.ema_net.parameters():
            p.fill_(0.0)
    policy.after_optimizer_step(1)  # decay 1 - 2 ** -0.75 = 0.405
    got = next(policy.ema_net.parameters()).flatten()[0].item()
    assert got == pytest.approx(2**-0.75, rel=1e-5)
    off = make_policy("diffusion", {**SMALL, "use_ema": False}, vector_spec(), STATS)
    assert off.ema_net is None and not any(k.startswith("ema_net") for k in off.state_dict())
    off.after_optimizer_step(1)


def test_schedule_buffers_are_not_saved():
    state = make_policy("diffusion", SMALL, vector_spec(), STATS).state_dict()
    assert not any(k.startswith(("ddim_", "sqrt_")) for k in state)


@pytest.mark.parametrize(
    "conv",
    [
        torch.nn.Conv1d(8, 16, 5, padding=2),
        torch.nn.Conv1d(16, 16, 3, 2, 1),  # the U-Net's downsampling
        torch.nn.ConvTranspose1d(16, 16, 4, 2, 1),  # and its upsampling
        torch.nn.Conv1d(16, 4, 1, bias=False),
    ],
)
def test_matmul_convolution_equals_the_module(conv):
    from il_core.policies.diffusion.model import MatmulConv1d

    x = torch.randn(3, conv.in_channels, 8)
    with torch.no_grad():
        torch.testing.assert_close(MatmulConv1d(conv, torch.float32)(x), conv(x))


def test_bfloat16_inference_tracks_float32_and_the_current_weights():
    torch.manual_seed(0)
    cfg = {**SMALL, "clip_sample": False}
    fp32 = make_policy("diffusion", cfg, vector_spec(), STATS).eval()
    bf16 = make_policy("diffusion", {**cfg, "inference_dtype": "bfloat16"}, vector_spec(), STATS)
    bf16.load_state_dict(fp32.state_dict())
    bf16.eval()
    obs = {"state": torch.randn(4, 2, 4)}
    noise = torch.randn(4, *fp32.noise_shape)
    with torch.no_grad():
        ref = fp32.predict_chunk_tensor(obs, noise=noise)
        got = bf16.predict_chunk_tensor(obs, noise=noise)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, ref, atol=0.05, rtol=0.05)  # bfloat16: ~3 digits
        assert "_lowp_unet" not in str(list(bf16.state_dict()))
        # New weights reach the cached bfloat16 copy.
        for p in bf16.ema_net.parameters():
            p.mul_(0.5)
        bf16.load_state_dict(bf16.state_dict())
        assert not torch.allclose(bf16.predict_chunk_tensor(obs, noise=noise), got, atol=1e-3)


def test_bfloat16_policy_exports(tmp_path):
    import warnings

    from il_core.export import ExportedPolicy, export_policy

    torch.manual_seed(0)
    cfg = {**SMALL, "clip_sample": False, "num_inference_steps": 3}
    policy = make_policy("diffusion", {**cfg, "inference_dtype": "bfloat16"}, vector_spec(), STATS)
    obs = {"state": np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)}
    noise = np.random.default_rng(1).standard_normal((1, *policy.noise_shape), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = ExportedPolicy(export_policy(policy, tmp_path / "p.pt"))
        onnx = ExportedPolicy(export_policy(policy, tmp_path / "p.onnx"))
    assert ts.config["inference_dtype"] == "bfloat16"
    assert onnx.config["inference_dtype"] == "float32"  # no bfloat16 kernels in ORT's CPU EP
    assert policy.config.inference_dtype == "bfloat16"  # restored after the ONNX export
    with torch.no_grad():
        t_obs = {"state": torch.from_numpy(obs["state"])[None]}
        eager = policy.eval().predict_chunk_tensor(t_obs, noise=torch.from_numpy(noise))[0]
    eager = policy.spec.action.clip(eager.numpy())
    np.testing.assert_allclose(ts.predict_action_chunk(obs, noise), eager, atol=1e-3)
    np.testing.assert_allclose(onnx.predict_action_chunk(obs, noise), eager, atol=0.05)


@pytest.mark.parametrize(
    "conv",
    [
        lambda: Conv1d(512, 512, 5, padding=2),
        lambda: Conv1d(512, 512, 3, 2, 1),
        lambda: Conv1d(2048, 512, 1),
        lambda: ConvTranspose1d(512, 512, 4, 2, 1),
    ],
)
def test_cpu_inference_conv_path_matches_stock_convolution(conv):
    """The batch-1 CPU inference path (F.linear on a weight view) = nn.Conv1d, float rounding."""
    torch.manual_seed(0)
    m = conv()
    stock = type(m).__mro__[1]  # nn.Conv1d / nn.ConvTranspose1d
    for b, t in ((1, 4), (2, 8), (1, 16)):
        x = torch.randn(b, m.in_channels, t)
        with torch.no_grad():
            ref = stock.forward(m, x)
            np.testing.assert_allclose(m(x).numpy(), ref.numpy(), atol=2e-5, rtol=1e-5)
        # With gradients (training) the stock kernel runs, bit for bit.
        assert torch.equal(m(x).detach(), ref)
