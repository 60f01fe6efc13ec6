"""BCO (issue 6): state-only datasets, inverse dynamics, labelling, and the quality bars.

The bars train for real (``expensive``): CartPole-v1 mean return >= 475 and MountainCar-v0
success >= 90%, from state-only demonstrations.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from il_core.algos.bco import (
    BCOConfig,
    RandomActor,
    bco,
    label_demonstrations,
    resolve_bco_config,
    rollout_transitions,
    strip_actions,
)
from il_core.algos.bco_idm import (
    IDMConfig,
    Transitions,
    fit_inverse_dynamics,
    flatten_obs,
    state_dim,
)
from il_core.cli import main as cli_main
from il_core.collect import collect
from il_core.config import ConfigError, load_yaml
from il_core.constants import ACTION_MASK
from il_core.data import DatasetError, DatasetWriter, EpisodeDataset
from il_core.envs import GymAdapter, make_env
from il_core.evaluate import evaluate
from il_core.spec import STATE_ONLY, ActionSpec, DatasetSpec, FeatureSpec, SpecError
from il_core.train import train
from tests.helpers import image_spec, vector_spec


def _state_only(spec: DatasetSpec) -> DatasetSpec:
    return DatasetSpec(
        spec.observations, spec.action, spec.control_rate_hz, metadata={STATE_ONLY: True}
    )


def _write(root: Path, spec: DatasetSpec, lengths: list[int], rng, actions: bool = True):
    with DatasetWriter(root, spec, fsync=False) as w:
        for n in lengths:
            w.start_episode()
            for t in range(n):
                a = rng.integers(spec.action.num_classes) if actions else None
                w.add_step({"state": rng.normal(size=4).astype(np.float32)}, a, t * 0.02)
            w.end_episode(success=True)


# --------------------------------------------------------------------------- state-only data


def test_state_only_dataset_round_trip_and_refused_for_training(tmp_path, rng):
    spec = _state_only(vector_spec(discrete=2))
    assert spec.state_only and not vector_spec(discrete=2).state_only
    _write(tmp_path / "so", spec, [5, 3], rng, actions=False)
    # Default readers (and so il-core train) refuse it, naming the flag and meta.json.
    with pytest.raises(DatasetError, match="state_only.*meta.json|meta.json.*state_only"):
        EpisodeDataset(tmp_path / "so")
    with pytest.raises(DatasetError, match="without actions"):
        train([tmp_path / "so"], tmp_path / "bc", {"train": {"steps": 1}}, progress=False)
    ds = EpisodeDataset(tmp_path / "so", allow_state_only=True)
    assert ds.state_only and ds.num_steps == 8
    # No placeholder action is ever presented as a real one.
    assert not ds.window(ds.step_indices(), 1, 2)[ACTION_MASK].any()


def test_state_only_writer_errors_name_the_action(tmp_path, rng):
    spec = _state_only(vector_spec(discrete=2))
    obs = {"state": np.zeros(4, np.float32)}
    with DatasetWriter(tmp_path / "so", spec, fsync=False) as w:
        w.start_episode()
        with pytest.raises(DatasetError, match="pass action=None"):
            w.add_step(obs, 1, 0.0)
        w.add_step(obs, None, 0.0)  # the rejected step left the episode unchanged
        assert w.num_steps_in_episode == 1
    with DatasetWriter(tmp_path / "lab", vector_spec(discrete=2), fsync=False) as w:
        w.start_episode()
        with pytest.raises(DatasetError, match="action is required"):
            w.add_step(obs, None, 0.0)
    # Opening a labelled dataset as state-only (or back) is a spec mismatch.
    with pytest.raises(DatasetError, match="state_only"):
        DatasetWriter(tmp_path / "lab", spec)


def test_state_only_and_labelled_datasets_are_not_aggregated(tmp_path, rng):
    _write(tmp_path / "so", _state_only(vector_spec(discrete=2)), [3], rng, actions=False)
    _write(tmp_path / "lab", vector_spec(discrete=2), [3], rng)
    with pytest.raises(DatasetError, match="cannot aggregate"):
        EpisodeDataset([tmp_path / "lab", tmp_path / "so"], allow_state_only=True)


def test_strip_actions_keeps_observations_and_labels(tmp_path, rng):
    _write(tmp_path / "lab", vector_spec(discrete=2), [6, 4], rng)
    summary = strip_actions(tmp_path / "lab", tmp_path / "so")
    assert summary["episodes"] == 2 and summary["steps"] == 10
    src = EpisodeDataset(tmp_path / "lab")
    so = EpisodeDataset(tmp_path / "so", allow_state_only=True)
    assert so.state_only
    for e in range(2):
        a, b = src.episode(e), so.episode(e)
        np.testing.assert_array_equal(a.observations["state"], b.observations["state"])
        np.testing.assert_array_equal(a.timestamps, b.timestamps)
        assert b.info.success is True
    with pytest.raises(DatasetError, match="already holds a dataset"):
        strip_actions(tmp_path / "lab", tmp_path / "so")
    # il-core info describes a state-only dataset (it only reads) instead of refusing it.
    from il_core.cli import dataset_summary

    info = dataset_summary(tmp_path / "so")
    assert info["state_only"] is True and info["steps"] == 10
    assert dataset_summary(tmp_path / "lab")["state_only"] is False


# --------------------------------------------------------------------------- inverse dynamics


def _linear_transitions(rng, n: int, discrete: bool) -> Transitions:
    """Transitions ``s' = s + B a`` (+ small noise): the action is recoverable from s' - s."""
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    if discrete:
        acts = rng.integers(3, size=n)
        effect = np.array([[-1.0, 0, 0], [0, 0, 0], [1.0, 0, 0]])[acts]
    else:
        acts = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
        effect = np.stack([acts[:, 0], acts[:, 1], acts.sum(1)], 1)
    nxt = obs + 0.1 * effect + 0.001 * rng.normal(size=(n, 3))
    return Transitions(obs, acts, nxt.astype(np.float32))


@pytest.mark.parametrize("discrete", [True, False])
def test_inverse_dynamics_learns_and_labels_with_the_right_shapes(rng, discrete):
    torch.set_num_threads(1)
    data = _linear_transitions(rng, 2000, discrete)
    action = (
        ActionSpec("discrete", num_classes=3)
        if discrete
        else ActionSpec("continuous", dim=2, low=(-1.0, -1.0), high=(1.0, 1.0))
    )
    model, logs = fit_inverse_dynamics(data, action, IDMConfig(steps=600), seed=0)
    test = _linear_transitions(np.random.default_rng(1), 500, discrete)
    pred = model.predict(test.obs, test.next_obs)
    if discrete:
        assert pred.shape == (500,) and pred.dtype == np.int64
        assert (pred == test.actions).mean() > 0.97
        assert logs["val_error"] < 0.05
    else:
        assert pred.shape == (500, 2) and pred.dtype == np.float32
        assert np.abs(pred - test.actions).mean() < 0.1
        assert np.all(np.abs(pred) <= 1.0)


def test_transitions_and_state_checks(rng):
    with pytest.raises(ValueError, match="actions for"):
        Transitions(np.zeros((3, 2), np.float32), np.zeros(2), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="next_obs"):
        Transitions(np.zeros((3, 2), np.float32), np.zeros(3), np.zeros((3, 1), np.float32))
    with pytest.raises(SpecError, match="'cam0'.*vector observations"):
        state_dim(image_spec())
    spec = DatasetSpec(
        {"a": FeatureSpec("vector", (2,)), "b": FeatureSpec("vector", (1,))},
        ActionSpec("discrete", num_classes=2),
        10.0,
    )
    flat = flatten_obs(spec, {"b": np.ones((5, 1)), "a": np.zeros((5, 2))})
    assert flat.shape == (5, 3) and np.all(flat[:, 2] == 1)


def test_label_demonstrations_drops_the_last_step_and_reports_agreement(tmp_path, rng):
    """Labels come from (s_t, s_t+1); episodes of T observations give T - 1 labelled steps."""
    spec = vector_spec(discrete=3)
    lengths = [7, 1, 4]
    with DatasetWriter(tmp_path / "true", spec, fsync=False) as w:
        for n in lengths:
            w.start_episode()
            s = rng.normal(size=4).astype(np.float32)
            for t in range(n):
                a = int(rng.integers(3))
                w.add_step({"state": s}, a, t * 0.02)
                s = s + np.float32(0.1) * np.array([a - 1, 0, 0, 0], np.float32)
            w.end_episode()
    strip_actions(tmp_path / "true", tmp_path / "so")
    data = _linear_transitions(rng, 3000, discrete=True)
    # The synthetic dynamics act on the first coordinate only; pad the states to 4-d.
    pad = Transitions(
        np.pad(data.obs, ((0, 0), (0, 1))), data.actions, np.pad(data.next_obs, ((0, 0), (0, 1)))
    )
    model, _ = fit_inverse_dynamics(pad, spec.action, IDMConfig(steps=600), seed=0)
    so = EpisodeDataset(tmp_path / "so", allow_state_only=True)
    ref = EpisodeDataset(tmp_path / "true")
    summary = label_demonstrations(so, model, tmp_path / "lab", {"note": 1}, reference=ref)
    assert summary["episodes"] == 2 and summary["steps"] == 6 + 3  # the 1-step one skipped
    lab = EpisodeDataset(tmp_path / "lab")  # an ordinary, trainable dataset
    assert not lab.state_only and lab.spec.metadata["note"] == 1
    assert lab.episode_lengths.tolist() == [6, 3]
    assert summary["label_agreement"] > 0.85
    true0 = ref.episode(0)
    np.testing.assert_array_equal(
        lab.episode(0).observations["state"], true0.observations["state"][:-1]
    )
    with pytest.raises(DatasetError, match="same episodes"):
        label_demonstrations(so, model, tmp_path / "lab2", reference=lab)


def test_random_rollouts_record_every_transition():
    env = make_env("CartPole-v1")
    adapter = GymAdapter(env)
    actor = RandomActor(adapter.spec.action, np.random.default_rng(0), hold=3)
    data, info = rollout_transitions(env, adapter, actor, 100, seed=5)
    env.close()
    assert len(data) == 100 and data.obs.shape == (100, 4) and data.actions.shape == (100,)
    # Within an episode s' of one step is s of the next; held actions repeat in threes.
    same = np.all(data.next_obs[:-1] == data.obs[1:], axis=1)
    assert same.sum() >= 100 - info["episodes"]
    assert info["episodes"] >= 2
    assert np.all(data.actions[0:3] == data.actions[0])


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="bco.*alpha"):
        resolve_bco_config({"bco": {"alpha": -1}}, "cfg.yaml")
    with pytest.raises(ConfigError, match="unknown top-level keys \\['bcoo'\\]"):
        resolve_bco_config({"bcoo": {}}, "cfg.yaml")
    with pytest.raises(ConfigError, match="idm.*hidden_dims|unknown keys \\['hidden'\\]"):
        resolve_bco_config({"bco": {"idm": {"hidden": [3]}}}, "cfg.yaml")
    with pytest.raises(ConfigError, match="alpha \\* pre_demo_steps"):
        BCOConfig(iterations=2, alpha=0.0)
    assert BCOConfig(pre_demo_steps=1000, alpha=0.5, iterations=2).budget == 2000
    for name in ("cartpole", "mountaincar"):
        resolve_bco_config(load_yaml(f"config/bco_{name}.yaml"), name)


def test_cli_strip_and_run_errors(tmp_path, rng, capsys):
    _write(tmp_path / "lab", vector_spec(discrete=2), [4], rng)
    assert (
        cli_main(["bco", "strip", "--data", str(tmp_path / "lab"), "--out", str(tmp_path / "so")])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["steps"] == 4
    # The data names no env: the error says which flag to pass.
    code = cli_main(["bco", "run", "--demos", str(tmp_path / "so"), "--out", str(tmp_path / "o")])
    assert code == 2 and "--env" in capsys.readouterr().err
    code = cli_main(
        [
            "bco",
            "run",
            "--demos",
            str(tmp_path / "so"),
            "--out",
            str(tmp_path / "o"),
            "--set",
            "bco.explore_hold=0",
        ]
    )
    assert code == 2 and "explore_hold" in capsys.readouterr().err
    # Demonstrations of another env's shape are refused before any training.
    code = cli_main(
        [
            "bco",
            "run",
            "--demos",
            str(tmp_path / "so"),
            "--env",
            "MountainCar-v0",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "do not match env MountainCar-v0" in capsys.readouterr().err


# --------------------------------------------------------------------------- quality bars


def _bco_loop(tmp_path: Path, env_id: str, name: str, eval_episodes: int):
    torch.set_num_threads(1)
    collect(env_id, "auto", 10, 0, tmp_path / "expert")
    strip_actions(tmp_path / "expert", tmp_path / "demos")
    summary = bco(
        [tmp_path / "demos"],
        tmp_path / "bco",
        load_yaml(f"config/bco_{name}.yaml"),
        env_id=env_id,
        seed=0,
        reference=[tmp_path / "expert"],
    )
    return summary, evaluate(summary["checkpoint"], env_id, eval_episodes, seed=1000)


@pytest.mark.expensive
def test_bco_cartpole_mean_return_at_least_475(tmp_path):
    summary, result = _bco_loop(tmp_path, "CartPole-v1", "cartpole", 50)
    assert summary["env_steps"] == summary["budget"]
    assert result["episodes"] == 50
    assert result["mean_return"] >= 475, (result, summary["iterations"])


@pytest.mark.expensive
def test_bco_mountaincar_success_at_least_90_percent(tmp_path):
    summary, result = _bco_loop(tmp_path, "MountainCar-v0", "mountaincar", 100)
    assert summary["env_steps"] == summary["budget"]
    assert (
        len(summary["iterations"])
        == load_yaml("config/bco_mountaincar.yaml")["bco"]["iterations"] + 1
    )
    assert result["episodes"] == 100
    assert result["success_rate"] >= 0.9, (result, summary["iterations"])
