"""Goal-conditioned BC with hindsight relabelling (issue 6).

Unit tests of the relabelling (future states of the same trajectory), the play data and the
errors; the quality bar (trained for real, ``expensive``): from noisy play data on
PointReach, relabelled goals reach >= 80% of random goals, while the same network trained
with goal = final state, or with the recorded (ignored) goals, reaches <= 30%.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from il_core.algos.gcbc import (
    GCBCConfig,
    anchor_indices,
    relabel_goal_indices,
    resolve_gcbc_config,
    train_gcbc,
)
from il_core.algos.gcbc_play import PlayActor, PlayConfig, collect_play
from il_core.checkpoint import load_policy
from il_core.cli import main as cli_main
from il_core.config import ConfigError, from_dict, load_yaml, merge
from il_core.data import EpisodeDataset
from il_core.evaluate import evaluate

ENV = "il_ros/PointReach-v0"


def test_anchors_leave_out_each_episodes_last_step():
    starts, lengths = np.array([0, 5, 6]), np.array([5, 1, 3])
    anchors, last = anchor_indices(starts, lengths, "future")
    assert anchors.tolist() == [0, 1, 2, 3, 6, 7]  # not 4, 5 (one-step episode) or 8
    assert last.tolist() == [4, 4, 4, 4, 8, 8]
    anchors, last = anchor_indices(starts, lengths, "none")
    assert anchors.tolist() == list(range(9))
    with pytest.raises(ValueError, match="too short"):
        anchor_indices(np.array([0, 1]), np.array([1, 1]), "final")


def test_future_goals_are_later_states_of_the_same_episode(rng):
    starts = np.array([0, 50, 60, 200])
    lengths = np.array([50, 10, 140, 3])
    anchors, last = anchor_indices(starts, lengths, "future")
    episode_of = np.searchsorted(starts, anchors, side="right") - 1
    for horizon in (0, 5):
        goals = relabel_goal_indices(anchors, last, "future", horizon, rng)
        assert goals.dtype == np.int64 and goals.shape == anchors.shape
        assert np.all(goals > anchors) and np.all(goals <= last)
        assert np.all(np.searchsorted(starts, goals, side="right") - 1 == episode_of)
        if horizon:
            assert np.all(goals - anchors <= horizon)
    # Uniform over the whole future: from the first step of a 140-step episode, offsets
    # spread over 1..139 (mean about 70), not only the next step.
    a = np.full(20000, 60)
    g = relabel_goal_indices(a, np.full(20000, 199), "future", 0, rng) - 60
    assert g.min() == 1 and g.max() == 139 and abs(g.mean() - 70) < 2
    final = relabel_goal_indices(anchors, last, "final", 0, rng)
    assert np.array_equal(final, last)


def test_relabel_errors(rng):
    with pytest.raises(ValueError, match="nothing to relabel"):
        relabel_goal_indices(np.array([0]), np.array([3]), "none", 0, rng)
    with pytest.raises(ValueError, match="no future state"):
        relabel_goal_indices(np.array([3]), np.array([3]), "future", 0, rng)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="gcbc.relabel"):
        resolve_gcbc_config({"gcbc": {"relabel": "past"}}, "g.yaml")
    with pytest.raises(ConfigError, match="horizon"):
        GCBCConfig(horizon=-1)
    with pytest.raises(ConfigError, match="unknown top-level keys \\['gcbcc'\\]"):
        resolve_gcbc_config({"gcbcc": {}}, "g.yaml")
    with pytest.raises(ConfigError, match="speed_min"):
        PlayConfig(speed_min=0.0)
    raw = load_yaml("config/gcbc_point_reach.yaml")
    from_dict(PlayConfig, raw.pop("play"))
    resolve_gcbc_config(raw, "config/gcbc_point_reach.yaml")


def test_play_actor_wanders_with_noise_and_ignores_the_goal():
    actor = PlayActor(PlayConfig(noise_std=0.3), np.random.default_rng(0), max_speed=1.0)
    pos = np.zeros(2, np.float32)
    acts = []
    for goal in (np.array([0.5, 0.5]), np.array([-0.5, 0.0])):
        actor.reset()
        a = [actor({"position": pos, "goal": goal.astype(np.float32)}) for _ in range(200)]
        acts.append(np.array(a))
    assert acts[0].shape == (200, 2) and acts[0].dtype == np.float32
    assert np.all(np.abs(acts[0]) <= 1.0)
    # Same position every step, yet the commands vary (waypoints change, noise).
    assert acts[0].std(axis=0).min() > 0.2


def test_play_data_and_short_training_give_an_evaluable_goal_policy(tmp_path):
    torch.set_num_threads(1)
    summary = collect_play(ENV, 3, 0, tmp_path / "play")
    assert summary["episodes"] == 3 and summary["steps"] > 3
    ds = EpisodeDataset(tmp_path / "play")
    assert list(ds.spec.observations) == ["goal", "position"]
    raw = merge(
        load_yaml("config/gcbc_point_reach.yaml"), {"train": {"steps": 20, "batch_size": 32}}
    )
    raw.pop("play")
    out = train_gcbc(tmp_path / "play", tmp_path / "gc", raw, seed=0)
    assert out["relabel"] == "future" and np.isfinite(out["train_loss"])
    policy = load_policy(out["checkpoint"])
    act = policy.select_action(
        {"position": np.zeros(2, np.float32), "goal": np.ones(2, np.float32)}
    )
    assert act.shape == (2,)
    result = evaluate(out["checkpoint"], ENV, 2, seed=1000, max_steps=5)
    assert result["episodes"] == 2


def test_bad_keys_and_cli_errors(tmp_path, capsys):
    collect_play(ENV, 1, 0, tmp_path / "play")
    with pytest.raises(ConfigError, match="gcbc.achieved_key='pos'"):
        train_gcbc(tmp_path / "play", tmp_path / "o", {"gcbc": {"achieved_key": "pos"}})
    with pytest.raises(ConfigError, match="position_key"):
        collect_play("CartPole-v1", 1, 0, tmp_path / "cp")
    code = cli_main(["gcbc", "play", "--episodes", "0", "--out", str(tmp_path / "p2")])
    assert code == 2 and "episodes" in capsys.readouterr().err
    code = cli_main(
        ["gcbc", "train", "--data", str(tmp_path / "play"), "--out", str(tmp_path / "o"),
         "--set", "gcbc.relabel=later"]
    )  # fmt: skip
    assert code == 2 and "gcbc.relabel" in capsys.readouterr().err
    code = cli_main(
        ["gcbc", "train", "--data", str(tmp_path / "play"), "--out", str(tmp_path / "o"),
         "--set", "train.steps=2", "--set", "train.batch_size=8"]
    )  # fmt: skip
    assert code == 0 and json.loads(capsys.readouterr().out)["steps"] == 2


@pytest.mark.expensive
def test_gcbc_relabelled_play_reaches_80_percent_and_baselines_at_most_30(tmp_path):
    torch.set_num_threads(1)
    raw = load_yaml("config/gcbc_point_reach.yaml")
    play = from_dict(PlayConfig, raw.pop("play"))
    collect_play(ENV, 200, 0, tmp_path / "play", play)
    success = {}
    for relabel in ("future", "final", "none"):
        cfg = merge(raw, {"gcbc": {"relabel": relabel}})
        out = train_gcbc(tmp_path / "play", tmp_path / relabel, cfg, seed=0)
        success[relabel] = evaluate(out["checkpoint"], ENV, 100, seed=1000)["success_rate"]
    assert success["future"] >= 0.8, success
    assert success["final"] <= 0.3, success
    assert success["none"] <= 0.3, success
