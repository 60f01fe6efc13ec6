"""DAgger and HG-DAgger (il_core.algos.dagger) and the compounding-error corridor (sim.drift).

Fast unit tests of the schedules, the collector (expert label at every step, beta mixing
with an injected generator, HG-DAgger labelling only interventions through the shared
InterventionGate), the config errors and the simulator. The seeded quality bars that train
for real are in tests/test_algos_dagger_quality.py (marker ``expensive``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim  # noqa: F401  (registers the il_ros/ envs)
from il_core.algos.dagger import (
    EXTRA_AGE,
    EXTRA_DELAY,
    EXTRA_EXECUTED,
    EXTRA_HAS_LABEL,
    EXTRA_INTERVENTION,
    BetaConfig,
    ConstantBetaSchedule,
    DAggerCollector,
    DAggerConfig,
    ExponentialBetaSchedule,
    LinearBetaSchedule,
    dagger_spec,
    make_beta_schedule,
    run_dagger,
)
from il_core.cli import main as cli_main
from il_core.config import ConfigError, from_dict
from il_core.data import DatasetWriter, EpisodeDataset
from il_core.envs import GymAdapter, make_env
from il_core.intervention import GateConfig, InterventionGate
from sim.experts import ExpertError, load_expert

CLEAN = "il_ros/DriftCorridor-v0"
WINDY = "il_ros/DriftCorridorWindy-v0"


class FeedForwardLearner:
    """What BC learns from the clean expert: ``u = r`` (feed-forward, no correction)."""

    def __init__(self) -> None:
        self.resets = 0

    def reset(self) -> None:
        """Count episode starts."""
        self.resets += 1

    def step(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``(1,)``: the corridor rate ``r``."""
        return np.array([obs["state"][1]], np.float32)


class ConstantLearner:
    """Always the same command; distinguishable from any expert label."""

    def __init__(self, value: float) -> None:
        self.value = value

    def reset(self) -> None:
        """Stateless."""

    def step(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``(1,)``: the constant."""
        return np.array([self.value], np.float32)


def _collector(tmp_path: Path, env_id: str, **kwargs) -> DAggerCollector:
    env = make_env(env_id)
    writer = DatasetWriter(tmp_path / "data", dagger_spec(GymAdapter(env).spec))
    return DAggerCollector(env, load_expert("auto", env), writer, **kwargs)


def _load(tmp_path: Path) -> tuple[EpisodeDataset, dict[str, np.ndarray]]:
    ds = EpisodeDataset(tmp_path / "data")
    ep = ds.episode(0)
    return ds, {
        "obs": ep.observations["state"],
        "action": ep.actions,
        "timestamps": ep.timestamps,
        **{k: v for k, v in ep.extras.items()},
    }


def _expert_labels(obs: np.ndarray) -> np.ndarray:
    """The drift expert's ``u = clip(r - 3 e)`` on recorded observations, ``(T, 1)``."""
    return np.clip(obs[:, 1] - 3.0 * obs[:, 0], -3.0, 3.0)[:, None]


# -- schedules ------------------------------------------------------------------------------


def test_beta_schedules() -> None:
    assert [ConstantBetaSchedule(0.3)(r) for r in (0, 5)] == [0.3, 0.3]
    assert [LinearBetaSchedule(4)(r) for r in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert [ExponentialBetaSchedule(0.5)(r) for r in range(4)] == [1.0, 0.5, 0.25, 0.125]
    assert make_beta_schedule(BetaConfig(kind="linear", rampdown_rounds=2))(1) == 0.5
    assert make_beta_schedule(BetaConfig(kind="constant", beta=0.2))(3) == 0.2


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"kind": "constant", "beta": 1.5}, "beta"),
        ({"kind": "linear", "rampdown_rounds": 0}, "rampdown_rounds"),
        ({"kind": "exponential", "decay": 1.0}, "decay"),
        ({"kind": "cosine"}, "kind"),
        ({"rate": 0.5}, "rate"),
    ],
)
def test_beta_config_errors_name_the_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        from_dict(BetaConfig, raw, "cfg: dagger.beta")


# -- the collector --------------------------------------------------------------------------


def test_extras_match_the_ros_nodes() -> None:
    # Simulated rounds and robot rounds aggregate only if their extras agree in name and size.
    episodes = pytest.importorskip("il_ros.episodes")
    from il_core.mapping import load_mapping

    mapping = load_mapping("config/point_reach_mapping.yaml")
    simulated = {k: f.shape for k, f in dagger_spec(mapping.to_spec()).extras.items()}
    ros = {k: (d,) for k, d in episodes.mapping_extras(mapping).items()}
    assert simulated == ros


def test_dagger_spec_extras() -> None:
    spec = dagger_spec(GymAdapter(make_env(WINDY)).spec)
    shapes = {k: f.shape for k, f in spec.extras.items()}
    assert shapes == {
        EXTRA_AGE: (2,),
        EXTRA_DELAY: (2,),
        EXTRA_INTERVENTION: (1,),
        EXTRA_HAS_LABEL: (1,),
        EXTRA_EXECUTED: (1,),
    }


def test_collector_records_expert_label_at_every_step(tmp_path: Path) -> None:
    learner = ConstantLearner(0.7)
    col = _collector(tmp_path, WINDY, rng=np.random.default_rng(0))
    ep = col.run_episode(learner, seed=3, beta=0.0)
    col.writer.close()
    _, d = _load(tmp_path)
    assert ep.saved and ep.labels == ep.length == len(d["action"]) and ep.expert_steps == 0
    # The label is the expert's action on the recorded observation, never the executed one.
    np.testing.assert_allclose(d["action"], _expert_labels(d["obs"]), atol=1e-6)
    assert np.all(d[EXTRA_EXECUTED] == np.float32(0.7))
    assert np.all(d[EXTRA_HAS_LABEL] == 1) and np.all(d[EXTRA_INTERVENTION] == 0)
    assert np.all(d[EXTRA_AGE] == 0) and np.all(d[EXTRA_DELAY] == 0)
    assert np.all(np.diff(d["timestamps"]) > 0)


def test_collector_beta_mixing_uses_the_injected_rng(tmp_path: Path) -> None:
    beta = 0.3
    col = _collector(tmp_path, WINDY, rng=np.random.default_rng(42))
    ep = col.run_episode(FeedForwardLearner(), seed=5, beta=beta)
    col.writer.close()
    _, d = _load(tmp_path)
    # One draw per step, in order, from the injected generator.
    expected = np.random.default_rng(42).random(ep.length) < beta
    flags = d[EXTRA_INTERVENTION][:, 0].astype(bool)
    np.testing.assert_array_equal(flags, expected)
    assert ep.expert_steps == int(expected.sum()) > 0
    # Executed: the expert's label where it drove, the learner's u = r elsewhere.
    np.testing.assert_allclose(d[EXTRA_EXECUTED][flags], d["action"][flags], atol=1e-6)
    np.testing.assert_allclose(d[EXTRA_EXECUTED][~flags, 0], d["obs"][~flags, 1], atol=1e-6)
    np.testing.assert_allclose(d["action"], _expert_labels(d["obs"]), atol=1e-6)


def test_collector_expert_only_and_argument_errors(tmp_path: Path) -> None:
    col = _collector(tmp_path, CLEAN, rng=np.random.default_rng(0))
    ep = col.run_episode(None, seed=0, beta=1.0)
    assert ep.expert_steps == ep.labels == ep.length == 150 and ep.success
    with pytest.raises(ValueError, match="learner"):
        col.run_episode(None, seed=0, beta=0.5)
    with pytest.raises(ValueError, match="beta"):
        col.run_episode(ConstantLearner(0.0), seed=0, beta=1.5)
    with pytest.raises(TypeError, match="rng"):
        DAggerCollector(col.env, col.expert, col.writer, rng=np.random.RandomState(0))  # type: ignore[arg-type]
    col.writer.close()
    # A dataset without the DAgger extras (plain demonstrations) is refused, naming them.
    plain = DatasetWriter(tmp_path / "plain", GymAdapter(col.env).spec)
    with pytest.raises(ValueError, match="is_intervention"):
        DAggerCollector(col.env, col.expert, plain, rng=np.random.default_rng(0))
    plain.close()


def test_hg_dagger_labels_only_interventions(tmp_path: Path) -> None:
    gate = InterventionGate(GateConfig(mode="deviation", deviation_threshold=0.8, release_ticks=3))
    col = _collector(tmp_path, WINDY, rng=np.random.default_rng(0), gate=gate)
    with pytest.raises(ValueError, match="beta must be 0"):
        col.run_episode(FeedForwardLearner(), seed=1, beta=0.5)
    ep = col.run_episode(FeedForwardLearner(), seed=1)
    col.writer.close()
    _, d = _load(tmp_path)
    n = len(d["action"])
    # The feed-forward learner drifts in the wind, the gate hands over, the expert recovers,
    # hands back: some steps, not all, are labelled, and exactly the gate's intervention ticks.
    assert 0 < n < ep.length
    assert n == ep.labels == ep.expert_steps == gate.intervention_ticks
    assert ep.takeovers == gate.takeovers >= 2
    assert np.all(d[EXTRA_INTERVENTION] == 1) and np.all(d[EXTRA_HAS_LABEL] == 1)
    np.testing.assert_allclose(d["action"], _expert_labels(d["obs"]), atol=1e-6)
    np.testing.assert_allclose(d[EXTRA_EXECUTED], d["action"], atol=1e-6)
    # Timestamps keep the simulated time of each step: the gaps between interventions show.
    assert np.max(np.diff(d["timestamps"])) > 1.5 / 10
    # Without any intervention nothing is recorded (the expert was never needed).
    quiet = InterventionGate(GateConfig(mode="deviation", deviation_threshold=100.0))
    col2 = _collector(tmp_path / "quiet", CLEAN, rng=np.random.default_rng(0), gate=quiet)
    ep2 = col2.run_episode(FeedForwardLearner(), seed=0)
    col2.writer.close()
    assert not ep2.saved and ep2.labels == 0 and ep2.success


# -- config and command line ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"rounds": -1}, "rounds"),
        ({"episodes_per_round": 0}, "episodes_per_round"),
        ({"algorithm": "dagger2"}, "algorithm"),
        ({"algorithm": "hg_dagger", "gate": {"mode": "deadman"}}, "gate.mode"),
        ({"gate": {"deviation_threshold": -1.0}}, "deviation_threshold"),
        ({"roundz": 3}, "roundz"),
    ],
)
def test_dagger_config_errors_name_the_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        from_dict(DAggerConfig, raw, "cfg: dagger")


def test_run_dagger_rejects_bad_sections_before_collecting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown top-level keys"):
        run_dagger({"daggr": {}}, tmp_path / "a")
    with pytest.raises(ConfigError, match="train"):
        run_dagger({"train": {"stepz": 3}}, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_bad_flag_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = cli_main(["dagger", "--out", str(tmp_path / "o"), "--set", "dagger.rounds=-2"])
    assert code == 2
    assert "rounds must be >= 0" in capsys.readouterr().err
    assert cli_main(["dagger", "--out", str(tmp_path / "o"), "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_cli_smoke_two_rounds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A tiny real run end to end: demos, one HG-DAgger round, training, evaluation."""
    args = ["dagger", "--out", str(tmp_path / "run"), "--algorithm", "hg_dagger", "--seed", "0"]
    for s in (
        "dagger.rounds=1",
        "dagger.demo_episodes=2",
        "dagger.episodes_per_round=2",
        "dagger.eval_episodes=3",
        "dagger.max_steps=40",
        "train.steps=20",
        "train.val_fraction=0.0",
        "policy.hidden_dims=[8]",
    ):
        args += ["--set", s]
    assert cli_main(args) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["algorithm"] == "hg_dagger" and len(line["success_per_round"]) == 2
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    r0, r1 = summary["rounds"]
    assert r0["labels"] == r0["expert_steps"] == r0["steps"] == 80
    assert r1["labels"] == r1["expert_steps"] <= r1["steps"]
    assert summary["labels_total"] == r0["labels"] + r1["labels"]
    assert (tmp_path / "run" / "round_001" / "train" / "policy.pt").is_file()


# -- the simulator --------------------------------------------------------------------------


# Its only complaint is advice (a [-1, 1] action range); the command is in m/s on purpose.
@pytest.mark.filterwarnings("ignore:.*symmetric and normalized")
@pytest.mark.parametrize("env_id", [CLEAN, WINDY])
def test_drift_env_passes_gymnasium_checker(env_id: str) -> None:
    check_env(make_env(env_id).unwrapped, skip_render_check=False)


def _success_rate(env_id: str, policy, seeds: range) -> tuple[float, float]:
    env = make_env(env_id)
    wins, worst = [], 0.0
    for s in seeds:
        obs, _ = env.reset(seed=s)
        while True:
            obs, _, term, trunc, info = env.step(policy(obs))
            worst = max(worst, abs(float(obs[0])))
            if term or trunc:
                break
        wins.append(info["is_success"])
    return float(np.mean(wins)), worst


def test_drift_sim_compounds_errors() -> None:
    """The sim needs corrections that clean demonstrations never show.

    The clean expert never leaves the centreline; in the wind it corrects and succeeds; its
    feed-forward alone (all that clean demonstrations show) leaves the corridor.
    """
    env = make_env(WINDY)
    expert = load_expert("auto", env)
    clean_rate, clean_worst = _success_rate(CLEAN, expert, range(20))
    assert clean_rate == 1.0 and clean_worst < 1e-5
    windy_rate, windy_worst = _success_rate(WINDY, expert, range(50))
    assert windy_rate == 1.0 and windy_worst < 0.6

    def feed_forward(obs):
        return np.array([obs[1]], np.float32)

    ff_rate, _ = _success_rate(WINDY, feed_forward, range(50))
    assert ff_rate <= 0.1


def test_drift_expert_refuses_other_envs() -> None:
    with pytest.raises(ExpertError, match="DriftCorridorEnv"):
        load_expert("drift_corridor", make_env("CartPole-v1"))
