"""The contract every expressive policy (diffusion, mog, act, ar) keeps, and what they learn.

Per-policy details live in ``tests/test_policy_<name>.py``; here each policy goes through the
same checks: registry, config errors, loss shapes and masking, images, history encoders,
seeded noise, checkpoints, and learning a two-mode toy distribution that MSE averages away.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from il_core.batch import to_torch
from il_core.checkpoint import load_policy, save_checkpoint
from il_core.config import ConfigError
from il_core.constants import ACTION, ACTION_MASK, OBS, OBS_MASK
from il_core.execution import PolicyExecutor
from il_core.policies import available_policies, make_config, make_policy
from il_core.policies.encoders import HistoryEncoder, HistoryEncoderConfig, _CausalBlock
from tests.helpers import image_spec, random_batch, vector_spec

CPU = torch.device("cpu")
NAMES = ["bc", "diffusion", "mog", "act", "act_mlp", "ar"]
# Tiny sizes so the whole file runs in seconds.
SMALL = {
    "diffusion": {
        "down_dims": [16, 32],
        "diffusion_step_embed_dim": 16,
        "obs_mlp_dims": [32],
        "n_groups": 4,
        "num_inference_steps": 5,
    },
    "bc": {"hidden_dims": [32, 32]},
    "mog": {"hidden_dims": [32, 32], "num_modes": 3},
    "act": {
        "dim_model": 32,
        "n_heads": 2,
        "dim_feedforward": 64,
        "n_encoder_layers": 1,
        "n_vae_encoder_layers": 1,
        "latent_dim": 4,
    },
    "act_mlp": {"hidden_dims": [32, 32], "latent_dim": 4},
    "ar": {"hidden_dims": [32, 32], "num_bins": 16},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models on a shared 2-core machine: a second thread only adds contention.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(name: str, **extra) -> dict:
    return {"n_obs_steps": 2, "horizon": 4, "n_action_steps": 2, **SMALL[name], **extra}


def _obs(rng, k=2) -> dict[str, np.ndarray]:
    return {"state": rng.normal(size=(k, 4)).astype(np.float32)}


def _predict(policy, obs: dict[str, np.ndarray], noise: np.ndarray | None) -> np.ndarray:
    batch = {k: torch.from_numpy(v)[None] for k, v in obs.items()}
    with torch.inference_mode():
        if noise is None:
            return policy.predict_chunk_tensor(batch)[0].numpy()
        return policy.predict_chunk_tensor(batch, noise=torch.from_numpy(noise))[0].numpy()


def test_all_are_registered_by_name():
    assert set(NAMES) <= set(available_policies())


@pytest.mark.parametrize("name", NAMES)
def test_config_rejects_unknown_keys_and_bad_chunking(name):
    with pytest.raises(ConfigError, match="unknown keys"):
        make_config(name, {"no_such_key": 1})
    with pytest.raises(ConfigError, match="n_action_steps"):
        make_config(name, {"horizon": 4, "n_action_steps": 5})
    with pytest.raises(ConfigError, match="history_encoder"):
        make_config(name, {"history_encoder": {"kind": "lstm"}})


@pytest.mark.parametrize("name", ["diffusion", "mog", "act"])
def test_continuous_only_policies_refuse_discrete_actions(name):
    with pytest.raises(ConfigError, match="continuous"):
        make_policy(name, _cfg(name), vector_spec(discrete=3))


@pytest.mark.parametrize("history", ["stack", "gru", "transformer"])
@pytest.mark.parametrize("name", NAMES)
def test_loss_backward_and_chunk_shapes(rng, name, history):
    spec = vector_spec()
    if name == "act" and history != "stack":  # act reads the history as tokens
        with pytest.raises(ConfigError, match="history_encoder.kind must be stack"):
            make_policy(name, _cfg(name, history_encoder={"kind": history}), spec)
        return
    policy = make_policy(name, _cfg(name, history_encoder={"kind": history}), spec)
    batch = to_torch(random_batch(spec, rng, b=6, k=2, h=4), CPU)
    loss, logs = policy(batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and "loss" in logs
    loss.backward()
    trained = [p for p in policy.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trained)
    policy.eval()
    chunk = policy.predict_action_chunk(_obs(rng))
    assert chunk.shape == (4, 2) and chunk.dtype == np.float32
    assert np.all(np.abs(chunk) <= 1.0)  # clamped to the spec bounds


# Not diffusion: its U-Net convolves over the whole noisy chunk, so padded steps (the last
# action repeated by the dataset) are input context; only their loss terms are masked.
@pytest.mark.parametrize("name", ["mog", "act", "ar"])
def test_padded_chunk_steps_do_not_change_the_loss(rng, name):
    spec = vector_spec()
    policy = make_policy(name, _cfg(name), spec)
    batch = random_batch(spec, rng, b=5, k=2, h=4)
    batch[ACTION_MASK][:, 3] = False
    torch.manual_seed(0)
    loss_a, _ = policy(to_torch(batch, CPU))
    batch[ACTION][:, 3] = -batch[ACTION][:, 3]  # other values in the padded step
    torch.manual_seed(0)
    loss_b, _ = policy(to_torch(batch, CPU))
    assert torch.allclose(loss_a, loss_b, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_cameras_train_and_act(rng, name):
    spec = image_spec(cams=1, size=24)
    cfg = _cfg(name, image_encoder={"channels": [4, 4], "strides": [2, 1], "feature_dim": 8})
    policy = make_policy(name, cfg, spec)
    batch = to_torch(random_batch(spec, rng, b=3, k=2, h=4), CPU)
    loss, _ = policy(batch)
    loss.backward()
    prefix = "backbones.cam0" if name == "act" else "cnns.cam0"
    cnn = [p.grad for n, p in policy.named_parameters() if prefix in n and p.requires_grad]
    assert cnn and all(g is not None and g.abs().sum() > 0 for g in cnn)
    obs = {"state": np.zeros(3, np.float32), "cam0": np.zeros((24, 24, 3), np.uint8)}
    assert policy.eval().select_action(obs).shape == (2,)


@pytest.mark.parametrize("name", NAMES)
def test_noise_input_makes_inference_reproducible(rng, name):
    policy = make_policy(name, _cfg(name), vector_spec()).eval()
    shape = getattr(policy, "noise_shape", None)  # bc has none: deterministic
    obs = _obs(rng)
    if shape is None:  # deterministic by configuration (act at the prior mean)
        np.testing.assert_array_equal(_predict(policy, obs, None), _predict(policy, obs, None))
        return
    n1 = rng.standard_normal((1, *shape)).astype(np.float32)
    n2 = rng.standard_normal((1, *shape)).astype(np.float32)
    np.testing.assert_array_equal(_predict(policy, obs, n1), _predict(policy, obs, n1))
    torch.manual_seed(3)
    a = policy.predict_action_chunk(obs)
    torch.manual_seed(3)
    np.testing.assert_array_equal(a, policy.predict_action_chunk(obs))
    assert not np.array_equal(_predict(policy, obs, n1), _predict(policy, obs, n2))


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip_acts_the_same(tmp_path, rng, name):
    spec = vector_spec()
    stats = {
        "obs.state": {"mean": np.full(4, 0.5), "std": np.full(4, 2.0)},
        "action": {
            "mean": np.zeros(2),
            "std": np.ones(2),
            "min": np.full(2, -1.0),
            "max": np.ones(2),
        },
    }
    history = {"kind": "stack" if name == "act" else "gru"}
    policy = make_policy(name, _cfg(name, history_encoder=history), spec, stats).eval()
    policy.after_optimizer_step(1)
    path = save_checkpoint(tmp_path / "p.pt", policy)
    loaded = load_policy(path)
    obs = _obs(rng)
    shape = getattr(policy, "noise_shape", None)  # bc has none: deterministic
    noise = None if shape is None else rng.standard_normal((1, *shape)).astype(np.float32)
    np.testing.assert_allclose(_predict(policy, obs, noise), _predict(loaded, obs, noise))


def test_act_temporal_ensembling_setting_reaches_the_executor(rng):
    with pytest.raises(ConfigError, match="n_action_steps 1"):
        make_config("act", {"horizon": 4, "n_action_steps": 2, "temporal_ensemble_coeff": 0.01})
    cfg = _cfg("act", n_action_steps=1, temporal_ensemble_coeff=0.01)
    policy = make_policy("act", cfg, vector_spec()).eval()
    # The executor's default takes the setting from the policy config (il-core eval and
    # the inference node build it that way); an explicit None turns ensembling off.
    ex = PolicyExecutor(policy)
    assert ex.temporal_ensemble_coeff == 0.01
    for _ in range(5):
        assert ex.step({"state": rng.normal(size=4).astype(np.float32)}).shape == (2,)
    assert ex.inference_count == 5  # one chunk per tick when ensembling
    assert PolicyExecutor(policy, temporal_ensemble_coeff=None).temporal_ensemble_coeff is None
    plain = make_policy("act", _cfg("act"), vector_spec()).eval()
    assert PolicyExecutor(plain).temporal_ensemble_coeff is None


# -- history encoders ------------------------------------------------------------------------


def test_causal_transformer_block_never_looks_ahead():
    torch.manual_seed(0)
    block = _CausalBlock(8, 2)
    mask = torch.full((4, 4), float("-inf")).triu(1)
    x = torch.randn(2, 4, 8)
    y = x.clone()
    y[:, 2:] += 5.0  # change the future of positions 0 and 1
    out_x, out_y = block(x, mask), block(y, mask)
    torch.testing.assert_close(out_x[:, :2], out_y[:, :2])
    assert not torch.allclose(out_x[:, 2:], out_y[:, 2:])


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_sequence_history_encoders_use_every_step_and_keep_width(kind):
    cfg = HistoryEncoderConfig(kind=kind, hidden_dim=16, num_heads=2)
    enc = HistoryEncoder(step_dim=5, n_obs_steps=3, cfg=cfg)
    f = torch.randn(4, 3, 5, requires_grad=True)
    out = enc(f)
    assert out.shape == (4, 16) and enc.out_dim == 16
    (out * torch.randn(16)).sum().backward()  # not out.sum(): LayerNorm makes that constant
    assert torch.all(f.grad.abs().sum(dim=(0, 2)) > 0)  # every history step matters


def test_stack_history_adds_no_weights():
    enc = HistoryEncoder(step_dim=5, n_obs_steps=3, cfg=HistoryEncoderConfig())
    assert enc.out_dim == 15 and not list(enc.parameters())
    with pytest.raises(ConfigError, match="divisible"):
        HistoryEncoderConfig(kind="transformer", hidden_dim=10, num_heads=3)


def test_bc_keeps_stacking_and_its_weights():
    policy = make_policy("bc", {"hidden_dims": [8], "n_obs_steps": 3}, vector_spec())
    assert not hasattr(policy.encoder, "history")
    assert policy.encoder.out_dim == 12
    assert all(k.startswith(("normalizer.", "head.")) for k in policy.state_dict())


# -- learning a two-mode toy distribution ---------------------------------------------------


def _toy_batch(rng: np.random.Generator, b: int) -> dict:
    """Constant observation; the chunk moves to +0.8 or -0.8 with equal probability."""
    sign = np.where(rng.random(b) < 0.5, 1.0, -1.0).astype(np.float32)
    act = np.zeros((b, 4, 2), np.float32)
    act[..., 0] = 0.8 * sign[:, None]
    act[..., 1] = 0.3
    return {
        OBS: {"state": np.zeros((b, 2, 4), np.float32)},
        OBS_MASK: np.ones((b, 2), bool),
        ACTION: act,
        ACTION_MASK: np.ones((b, 4), bool),
    }


TOY_STATS = {
    "obs.state": {"mean": np.zeros(4), "std": np.ones(4)},
    "action": {"mean": np.zeros(2), "std": np.ones(2), "min": -np.ones(2), "max": np.ones(2)},
}


@pytest.mark.parametrize(
    ("name", "steps", "extra"),
    [
        ("diffusion", 300, {}),
        ("mog", 300, {}),
        ("act", 300, {"kl_weight": 0.1, "inference_latent": "sample"}),
        ("ar", 300, {}),
        ("bc", 300, {"hidden_dims": [32, 32]}),
    ],
)
def test_two_modes_are_kept_apart_except_by_mse_bc(name, steps, extra):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = {"n_obs_steps": 2, "horizon": 4, "n_action_steps": 2, **SMALL.get(name, {}), **extra}
    policy = make_policy(name, cfg, vector_spec(), TOY_STATS)
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    for step in range(steps):
        loss, _ = policy(to_torch(_toy_batch(rng, 64), CPU))
        opt.zero_grad()
        loss.backward()
        opt.step()
        policy.after_optimizer_step(step + 1)
    policy.eval()
    with torch.inference_mode():  # 100 independent draws as one batch
        chunks = policy.predict_chunk_tensor({"state": torch.zeros(100, 2, 4)}).numpy()
    first = chunks[:, :, 0].mean(-1)
    if name == "bc":
        assert np.all(np.abs(first) < 0.3), first  # MSE averages +-0.8 into ~0
        return
    # Samples, not averages. Prior draws of the CVAE that fall between the two posterior
    # clusters decode blends, a property of the model: a lower bar for it.
    assert (np.abs(first) > 0.5).mean() >= (0.8 if name == "act" else 0.9), first
    assert 0.2 <= (first > 0).mean() <= 0.8, first  # and both modes are sampled


def test_multimodal_configs_share_data_history_chunking_and_budget():
    from il_core.config import load_yaml

    cfgs = {n: load_yaml(f"config/{n}_multimodal.yaml") for n in ["bc", *NAMES]}
    shared = ("n_obs_steps", "horizon", "n_action_steps")
    ref = cfgs["bc"]
    for name, cfg in cfgs.items():
        assert cfg["policy"]["name"] == name
        assert {k: cfg["policy"][k] for k in shared} == {k: ref["policy"][k] for k in shared}
        assert cfg["train"] == ref["train"], name
        make_config(name, {k: v for k, v in cfg["policy"].items() if k != "name"})
