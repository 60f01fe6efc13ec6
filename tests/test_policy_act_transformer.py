"""ACT (the Action Chunking Transformer) and the ResNet-18 image backbone.

Nothing here downloads weights: every backbone is randomly initialised, or loaded from a
state dict this file saves.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from il_core.batch import to_torch
from il_core.config import ConfigError
from il_core.constants import ACTION, ACTION_MASK, OBS
from il_core.export import export_policy, load_exported
from il_core.policies import make_config, make_policy
from il_core.policies.backbones import FrozenBatchNorm2d, ResNet18
from il_core.policies.encoders import ImageEncoderConfig
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec
from tests.helpers import image_spec, random_batch, vector_spec

CPU = torch.device("cpu")
TINY = {
    "n_obs_steps": 1,
    "horizon": 6,
    "n_action_steps": 3,
    "dim_model": 32,
    "n_heads": 4,
    "dim_feedforward": 64,
    "n_encoder_layers": 2,
    "n_vae_encoder_layers": 1,
    "latent_dim": 4,
    "dropout": 0.0,
}
RESNET = {"backbone": "resnet18", "norm": "frozen_batch", "pooling": "feature_map"}
# LeRobot 0.4.4's ACTPolicy at its default config, random init, for one 3x96x96 camera with
# a 14-d state and 14-d action: all parameters, and those used at inference (all but the VAE
# encoder). Measured with /work/main/.lerobot-venv (the `_lerobot_count` script below);
# test_parameter_count_matches_lerobot re-measures it wherever that venv exists.
LEROBOT_ACT_PARAMS = {"total": 51_613_582, "inference": 34_232_142}
LEROBOT_PYTHON = Path(__file__).resolve().parents[1] / ".lerobot-venv" / "bin" / "python"
LEROBOT_PYTHONS = [LEROBOT_PYTHON, Path("/work/main/.lerobot-venv/bin/python")]
LEROBOT_COUNT = textwrap.dedent(
    """
    import json, sys, types
    for m in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules[m] = types.ModuleType(m)  # see ../shared/lerobot-0.4.4/README.md
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    cfg = ACTConfig(
        input_features={
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(14,)),
            "observation.images.top": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 96, 96)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(14,))},
        pretrained_backbone_weights=None,
    )
    p = ACTPolicy(cfg)
    total = sum(x.numel() for x in p.parameters())
    vae = sum(x.numel() for n, x in p.named_parameters() if n.startswith("model.vae_encoder"))
    print(json.dumps({"total": total, "inference": total - vae}))
    """
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _lerobot_default_spec() -> DatasetSpec:
    obs = {"state": FeatureSpec("vector", (14,)), "top": FeatureSpec("image", (96, 96, 3))}
    return DatasetSpec(obs, ActionSpec("continuous", dim=14), 50.0)


def _counts(policy) -> dict[str, int]:
    total = sum(p.numel() for p in policy.parameters())
    vae = sum(p.numel() for n, p in policy.named_parameters() if n.startswith("vae_encoder"))
    return {"total": total, "inference": total - vae}


def _cam_cfg(**image) -> dict:
    return {**TINY, "image_encoder": {**RESNET, **image}}


def test_defaults_are_lerobots():
    cfg = make_config("act", {})
    assert (cfg.horizon, cfg.n_action_steps, cfg.n_obs_steps) == (100, 100, 1)
    assert (cfg.dim_model, cfg.n_heads, cfg.dim_feedforward) == (512, 8, 3200)
    assert (cfg.n_encoder_layers, cfg.n_decoder_layers, cfg.n_vae_encoder_layers) == (4, 1, 4)
    assert (cfg.latent_dim, cfg.dropout, cfg.kl_weight, cfg.pre_norm) == (32, 0.1, 10.0, False)
    assert cfg.image_encoder.backbone == "resnet18"
    assert cfg.image_encoder.norm == "frozen_batch"
    assert cfg.image_encoder.pretrained_backbone is None  # never a download by default
    assert cfg.inference_latent == "prior_mean"


def test_parameter_count_matches_lerobot():
    torch.manual_seed(0)
    ours = _counts(make_policy("act", {}, _lerobot_default_spec()))
    lerobot = dict(LEROBOT_ACT_PARAMS)
    python = next((p for p in LEROBOT_PYTHONS if p.exists()), None)
    if python is not None:  # measure it again where LeRobot is installed
        out = subprocess.run(
            [str(python), "-c", LEROBOT_COUNT], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr[-2000:]
        lerobot = json.loads(out.stdout.strip().splitlines()[-1])
        assert lerobot == LEROBOT_ACT_PARAMS  # the fallback constant is still right
    for part in ("total", "inference"):
        assert abs(ours[part] - lerobot[part]) <= 0.01 * lerobot[part], (ours, lerobot)


@pytest.mark.parametrize("spec_name", ["vector", "camera"])
def test_shapes_and_deterministic_inference(rng, spec_name):
    spec = vector_spec() if spec_name == "vector" else image_spec(cams=2, size=32)
    cfg = TINY if spec_name == "vector" else _cam_cfg()
    policy = make_policy("act", cfg, spec)
    batch = to_torch(random_batch(spec, rng, b=3, k=1, h=6), CPU)
    loss, logs = policy(batch)
    assert loss.ndim == 0 and {"loss", "recon", "kl"} <= set(logs)
    loss.backward()
    assert all(p.grad is not None for p in policy.parameters() if p.requires_grad)
    policy.eval()
    assert policy.noise_shape is None  # z = 0 at inference
    obs = {k: v[0] for k, v in random_batch(spec, rng, b=1, k=1, h=6)[OBS].items()}
    first, second = policy.predict_action_chunk(obs), policy.predict_action_chunk(obs)
    assert first.shape == (6, 2) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)


def test_history_steps_are_tokens(rng):
    spec = image_spec(cams=1, size=32)
    policy = make_policy("act", {**_cam_cfg(), "n_obs_steps": 2}, spec)
    assert policy.state_dim == 2 * 3
    assert policy.encoder_cam_feat_pos_embed.shape == (2 * 1 * 1, 32)  # 32 px -> 1x1 cells
    loss, _ = policy(to_torch(random_batch(spec, rng, b=2, k=2, h=6), CPU))
    assert torch.isfinite(loss)
    with pytest.raises(ConfigError, match="history_encoder.kind must be stack"):
        make_config("act", {"history_encoder": {"kind": "gru"}})


def test_loss_decreases_on_a_tiny_batch(rng):
    torch.manual_seed(0)
    spec = vector_spec()
    policy = make_policy("act", TINY, spec)
    batch = to_torch(random_batch(spec, rng, b=8, k=1, h=6), CPU)
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, logs = policy(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["recon"])
    assert losses[-1] < 0.7 * losses[0], losses[::10]


def test_padded_actions_do_not_change_the_posterior():
    torch.manual_seed(0)
    policy = make_policy("act", TINY, vector_spec()).eval()
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]], dtype=torch.float32)
    target = torch.randn(1, 6, 2) * mask[..., None]
    state = torch.randn(1, 4)
    mu, _ = policy._latent(state, target, mask)
    junk = target.clone()
    junk[:, 3:] = 5.0
    mu_junk, _ = policy._latent(state, junk, mask)
    torch.testing.assert_close(mu, mu_junk)


def test_sampling_takes_noise_and_without_vae_z_is_zero(rng):
    spec = vector_spec()
    policy = make_policy("act", {**TINY, "inference_latent": "sample"}, spec).eval()
    assert policy.noise_shape == (4,)
    obs = {"state": torch.zeros(2, 1, 4)}
    noise = torch.randn(2, 4)
    torch.testing.assert_close(
        policy.predict_chunk_tensor(obs, noise), policy.predict_chunk_tensor(obs, noise)
    )
    plain = make_policy("act", {**TINY, "use_vae": False}, spec)
    assert not any(n.startswith("vae_encoder") for n, _ in plain.named_parameters())
    loss, logs = plain(to_torch(random_batch(spec, rng, b=2, k=1, h=6), CPU))
    assert logs["kl"] == 0.0 and torch.isfinite(loss)


@pytest.mark.parametrize("fmt", ["onnx", "pt"])
def test_export_round_trip_with_a_resnet_camera(tmp_path, rng, fmt):
    spec = image_spec(cams=1, size=64)
    policy = make_policy("act", {**_cam_cfg(), "temporal_ensemble_coeff": 0.01,
                                 "n_action_steps": 1}, spec)  # fmt: skip
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    for _ in range(2):  # weights away from their initial values
        loss, _ = policy(to_torch(random_batch(spec, rng, b=4, k=1, h=6), CPU))
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    exported = load_exported(export_policy(policy, tmp_path / f"act.{fmt}"), seed=0)
    assert exported.noise_shape is None
    for _ in range(2):
        obs = {
            "state": rng.normal(size=(1, 3)).astype(np.float32),
            "cam0": rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8),
        }
        np.testing.assert_allclose(
            exported.predict_action_chunk(obs, None),
            policy.predict_action_chunk(obs),
            atol=1e-4,
            rtol=1e-4,
        )


@pytest.mark.parametrize("norm", ["batch", "frozen_batch", "group"])
def test_backbone_norm_variants(rng, norm):
    net = ResNet18(3, norm)
    kinds = {
        "batch": torch.nn.BatchNorm2d,
        "frozen_batch": FrozenBatchNorm2d,
        "group": torch.nn.GroupNorm,
    }
    assert isinstance(net.bn1, kinds[norm]) and isinstance(net.layer4[1].bn2, kinds[norm])
    n_params = sum(p.numel() for p in net.parameters())
    # torchvision's resnet18 has 11,689,512 parameters, 513,000 in fc and 9,600 in BN affines.
    assert n_params == 11_176_512 - (9_600 if norm == "frozen_batch" else 0)
    assert net(torch.zeros(2, 3, 64, 96)).shape == (2, 512, 2, 3)
    # The shared image encoder (every policy): resnet18 + spatial softmax keypoints.
    spec = image_spec(cams=1, size=32)
    image = {"backbone": "resnet18", "norm": norm, "feature_dim": 8}
    bc = make_policy("bc", {"hidden_dims": [16], "image_encoder": image}, spec)
    loss, _ = bc(to_torch(random_batch(spec, rng, b=2, k=1, h=1), CPU))
    loss.backward()
    assert bc.encoder.cnns["cam0"].backbone.conv1.weight.grad is not None


def test_feature_map_pooling_is_only_for_act():
    with pytest.raises(ConfigError, match="pooling"):
        make_policy(
            "bc", {"image_encoder": {"backbone": "resnet18", "pooling": "feature_map"}},
            image_spec(cams=1, size=32),
        )  # fmt: skip
    with pytest.raises(ConfigError, match="needs backbone resnet18"):
        ImageEncoderConfig(pretrained_backbone="weights.pt")
    with pytest.raises(ConfigError, match="norm"):
        ImageEncoderConfig(backbone="resnet18", norm="layer")


def _torchvision_like_file(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision-layout ResNet-18 state dict (with BN statistics and fc) saved to ``path``."""
    torch.manual_seed(1)
    net = ResNet18(3, "batch")
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    state = net.state_dict()
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save(state, path)
    return state


@pytest.mark.parametrize("norm", ["frozen_batch", "group", "batch"])
def test_pretrained_backbone_loads_from_a_file(tmp_path, norm):
    path = tmp_path / "resnet18.pt"
    state = _torchvision_like_file(path)
    spec = image_spec(cams=1, size=32)
    stats = _stats(spec)
    policy = make_policy("act", _cam_cfg(norm=norm, pretrained_backbone=str(path)), spec, stats)
    got = policy.backbones["cam0"].state_dict()
    torch.testing.assert_close(got["layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])
    torch.testing.assert_close(got["bn1.weight"], state["bn1.weight"])
    if norm != "group":
        torch.testing.assert_close(got["bn1.running_var"], state["bn1.running_var"])
    # Rebuilt from a checkpoint (stats None), the file is not needed.
    path.unlink()
    make_policy("act", _cam_cfg(norm=norm, pretrained_backbone=str(path)), spec)


def test_mismatched_or_missing_pretrained_file_is_a_clear_error(tmp_path):
    spec = image_spec(cams=1, size=32)
    stats = _stats(spec)
    path = tmp_path / "bad.pt"
    state = _torchvision_like_file(path)
    state["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    del state["layer4.1.bn2.bias"]
    torch.save(state, path)
    with pytest.raises(ConfigError) as err:
        make_policy("act", _cam_cfg(pretrained_backbone=str(path)), spec, stats)
    msg = str(err.value)
    assert str(path) in msg and "conv1.weight" in msg and "layer4.1.bn2.bias" in msg
    with pytest.raises(ConfigError, match="no file"):
        make_policy("act", _cam_cfg(pretrained_backbone=str(tmp_path / "nope.pt")), spec, stats)


def test_building_never_downloads(monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    spec = image_spec(cams=1, size=32)
    make_policy("act", _cam_cfg(), spec, _stats(spec))


def _stats(spec: DatasetSpec) -> dict:
    stats = {
        f"obs.{k}": {"mean": np.zeros(f.shape[-1]), "std": np.ones(f.shape[-1])}
        for k, f in spec.observations.items()
    }
    d = spec.action.dim
    stats["action"] = {
        "mean": np.zeros(d),
        "std": np.ones(d),
        "min": -np.ones(d),
        "max": np.ones(d),
    }
    return stats


def test_kl_and_masked_l1():
    torch.manual_seed(0)
    policy = make_policy("act", TINY, vector_spec())
    with torch.no_grad():  # posterior = prior: KL 0
        policy.vae_encoder_latent_output_proj.weight.zero_()
        policy.vae_encoder_latent_output_proj.bias.zero_()
    batch = {
        OBS: {"state": torch.randn(4, 1, 4)},
        ACTION: torch.rand(4, 6, 2) * 2 - 1,
        ACTION_MASK: torch.ones(4, 6),
    }
    _, logs = policy(batch)
    assert abs(logs["kl"]) < 1e-7
