import numpy as np
import pytest
import torch

from il_core.checkpoint import CheckpointError, load_policy, save_checkpoint
from il_core.config import ConfigError, load_yaml, parse_overrides
from il_core.policies import make_policy
from il_core.train import resolve_config
from tests.helpers import vector_spec


def test_overrides_parse_yaml_values_and_nest():
    got = parse_overrides(["train.lr=3e-4", "policy.hidden_dims=[64, 64]", "train.device=cpu"])
    assert got == {"train": {"lr": 3e-4, "device": "cpu"}, "policy": {"hidden_dims": [64, 64]}}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["train.lr"])


def test_config_errors_name_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepz: 10\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: train: unknown keys \['stepz'\]"):
        resolve_config(load_yaml(bad), where=str(bad))
    bad.write_text("train: {steps: -1}\n")
    with pytest.raises(ConfigError, match="bad.yaml: train: steps must be >= 1"):
        resolve_config(load_yaml(bad), where=str(bad))
    bad.write_text("train: {lr: fast}\n")
    with pytest.raises(ConfigError, match=r"train.lr: expected a number, got 'fast'"):
        resolve_config(load_yaml(bad), where=str(bad))
    bad.write_text("policy: {name: bc, loss: huber}\n")
    with pytest.raises(ConfigError, match=r"policy.loss: expected one of \['mse', 'l1'\]"):
        resolve_config(load_yaml(bad), where=str(bad))
    bad.write_text("optimiser: {}\n")
    with pytest.raises(ConfigError, match="unknown top-level keys"):
        resolve_config(load_yaml(bad), where=str(bad))
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_yaml_never_evaluates_code(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("train: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml(evil)


def _saved_policy(tmp_path):
    policy = make_policy("bc", {"hidden_dims": [8, 8]}, vector_spec(discrete=3))
    return policy, save_checkpoint(tmp_path / "policy.pt", policy, {"train": {"step": 7}})


def test_checkpoint_round_trip_is_self_contained(tmp_path):
    policy, path = _saved_policy(tmp_path)
    loaded = load_policy(path)
    obs = {"state": np.array([[0.1, -0.2, 0.3, 0.0]], np.float32)}
    assert loaded.spec == policy.spec
    for a, b in zip(policy.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert np.array_equal(policy.predict_action_chunk(obs), loaded.predict_action_chunk(obs))


def test_corrupt_checkpoints_give_clear_errors(tmp_path):
    _, path = _saved_policy(tmp_path)
    raw = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt: not a readable checkpoint"):
        load_policy(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_policy(garbage)
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint file not found"):
        load_policy(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt: not an il_core checkpoint"):
        load_policy(foreign)
    data = torch.load(path, weights_only=True)
    data["policy"]["config"]["hidden_dims"] = [4]  # config no longer matches the weights
    mismatched = tmp_path / "mismatched.pt"
    torch.save(data, mismatched)
    with pytest.raises(CheckpointError, match="mismatched.pt: weights do not match"):
        load_policy(mismatched)
    data["format_version"] = 99
    future = tmp_path / "future.pt"
    torch.save(data, future)
    with pytest.raises(CheckpointError, match="newer than this il_core"):
        load_policy(future)


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "il_core.checkpoint", "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_policy(path)
