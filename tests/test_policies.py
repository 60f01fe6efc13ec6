import numpy as np
import pytest
import torch

from il_core.batch import to_torch
from il_core.config import ConfigError
from il_core.constants import ACTION_MASK
from il_core.execution import PolicyExecutor
from il_core.policies import available_policies, make_config, make_policy
from tests.helpers import image_spec, random_batch, vector_spec


def test_registry_lists_bc_and_rejects_unknown_names():
    assert "bc" in available_policies()
    with pytest.raises(ConfigError, match="unknown policy 'nope'.*available"):
        make_policy("nope", {}, vector_spec())


def test_bc_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="unknown keys \\['hiden_dims'\\]"):
        make_config("bc", {"hiden_dims": [3]})
    with pytest.raises(ConfigError, match="n_action_steps"):
        make_config("bc", {"horizon": 2, "n_action_steps": 3})
    with pytest.raises(ConfigError, match="hidden_dims"):
        make_config("bc", {"hidden_dims": "wide"})


@pytest.mark.parametrize("discrete", [None, 3])
def test_bc_vector_forward_and_chunk_shapes(rng, discrete):
    spec = vector_spec(discrete=discrete)
    policy = make_policy(
        "bc", {"hidden_dims": [16], "n_obs_steps": 2, "horizon": 4, "n_action_steps": 2}, spec
    )
    batch = to_torch(random_batch(spec, rng, b=5, k=2, h=4), torch.device("cpu"))
    loss, logs = policy(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert "loss" in logs
    chunk = policy.predict_action_chunk({"state": np.zeros((2, 4), np.float32)})
    if discrete:
        assert chunk.shape == (4,) and chunk.dtype == np.int64
        assert set(chunk.tolist()) <= {0, 1, 2}
    else:
        assert chunk.shape == (4, 2) and chunk.dtype == np.float32
        assert np.all(np.abs(chunk) <= 1.0)  # clamped to the spec bounds


def test_bc_images_several_cameras(rng):
    spec = image_spec(cams=2, size=32)
    policy = make_policy(
        "bc",
        {
            "hidden_dims": [32],
            "image_encoder": {"channels": [8, 8], "strides": [2, 1], "feature_dim": 16},
        },
        spec,
    )
    batch = to_torch(random_batch(spec, rng, b=4), torch.device("cpu"))
    loss, _ = policy(batch)
    loss.backward()
    grads = [p.grad for n, p in policy.named_parameters() if n.startswith("encoder.cnns.cam1")]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    obs = {
        "state": np.zeros(3, np.float32),
        "cam0": np.zeros((32, 32, 3), np.uint8),
        "cam1": np.zeros((32, 32, 3), np.uint8),
    }
    assert policy.select_action(obs).shape == (2,)


def test_masked_steps_do_not_contribute_to_loss(rng):
    spec = vector_spec()
    policy = make_policy("bc", {"hidden_dims": [8], "horizon": 3, "n_action_steps": 1}, spec)
    batch = random_batch(spec, rng, b=4, h=3)
    batch[ACTION_MASK][:, 2] = False
    loss_a, _ = policy(to_torch(batch, torch.device("cpu")))
    batch["action"][:, 2] += 100.0  # garbage in the padded step must not matter
    loss_b, _ = policy(to_torch(batch, torch.device("cpu")))
    assert torch.allclose(loss_a, loss_b)


def test_executor_queues_chunk_and_pads_history():
    spec = vector_spec()
    policy = make_policy(
        "bc", {"hidden_dims": [8], "n_obs_steps": 3, "horizon": 4, "n_action_steps": 3}, spec
    )
    seen = []
    real = policy.predict_action_chunk

    def spy(obs):
        seen.append(obs["state"].copy())
        return real(obs)

    policy.predict_action_chunk = spy
    ex = PolicyExecutor(policy)
    for t in range(7):
        ex.step({"state": np.full(4, t, np.float32)})
    # Chunks predicted at t=0, 3, 6: each history is the last 3 frames, padded at the start.
    assert ex.inference_count == 3
    np.testing.assert_array_equal(seen[0][:, 0], [0, 0, 0])
    np.testing.assert_array_equal(seen[1][:, 0], [1, 2, 3])
    np.testing.assert_array_equal(seen[2][:, 0], [4, 5, 6])
    ex.reset()
    ex.step({"state": np.full(4, 9, np.float32)})
    np.testing.assert_array_equal(seen[3][:, 0], [9, 9, 9])


@pytest.mark.parametrize("name", ["bc", "diffusion", "act", "act_mlp", "mog", "ar"])
def test_obs_min_std_floors_the_scale_of_nearly_constant_features(name):
    """A feature spread of 1e-3 is scaled as 0.01 with ``obs_min_std: 0.01``.

    Wide features keep their std, constant ones stay unscaled.
    """
    spec = vector_spec()
    stats = {
        "obs.state": {
            "mean": np.zeros(4, np.float32),
            "std": np.array([1e-3, 0.5, 0.0, 2e-3], np.float32),
        },
        "action": {
            "mean": np.zeros(2, np.float32),
            "std": np.ones(2, np.float32),
            "min": -np.ones(2, np.float32),
            "max": np.ones(2, np.float32),
        },
    }
    small = {"hidden_dims": [8]} if name == "bc" else {}
    scale = {}
    for floor in (0.0, 0.01):
        policy = make_policy(name, {**small, "obs_min_std": floor}, spec, stats)
        scale[floor] = policy.normalizer.obs_0_scale.numpy()
    np.testing.assert_allclose(scale[0.0], [1e-3, 0.5, 1.0, 2e-3], rtol=1e-6)
    np.testing.assert_allclose(scale[0.01], [0.01, 0.5, 1.0, 0.01], rtol=1e-6)
    with pytest.raises(ConfigError, match="obs_min_std must be >= 0"):
        make_config(name, {"obs_min_std": -1.0})
