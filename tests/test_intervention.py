"""The HG-DAgger intervention gate: each mode, hysteresis, missing inputs, counters."""

import math

import numpy as np
import pytest

from il_core.config import ConfigError, from_dict
from il_core.intervention import GateConfig, InterventionGate

P = np.array([0.0, 0.0])  # the policy's action in every test


def a(x: float, y: float = 0.0) -> np.ndarray:
    return np.array([x, y])


def run(gate, steps):
    """Feed ``(expert, deadman)`` pairs with the policy action P; return the decisions."""
    return [gate.update(P, e, d) for e, d in steps]


def test_config_validation_and_defaults():
    cfg = GateConfig(mode="deviation", deviation_threshold=0.4)
    assert cfg.effective_release_threshold == pytest.approx(0.2)
    cfg = GateConfig(deviation_threshold=0.4, release_threshold=0.1)
    assert cfg.effective_release_threshold == 0.1
    bad = [
        dict(mode="joystick"),
        dict(deviation_threshold=0.0),
        dict(deviation_threshold=math.nan),
        dict(deviation_scale=()),
        dict(deviation_scale=(1.0, 0.0)),
        dict(engage_ticks=0),
        dict(release_ticks=-1),
        dict(release_threshold=0.0),
        dict(deviation_threshold=0.3, release_threshold=0.31),
    ]
    for kwargs in bad:
        with pytest.raises(ConfigError):
            GateConfig(**kwargs)
    # Filled from YAML-like dicts: lists become tuples, unknown keys are refused.
    cfg = from_dict(GateConfig, {"mode": "either", "deviation_scale": [1, 2]})
    assert cfg.deviation_scale == (1.0, 2.0)
    with pytest.raises(ConfigError, match="unknown keys"):
        from_dict(GateConfig, {"threshold": 1.0})
    for f in GateConfig.__dataclass_fields__.values():
        assert f.metadata["help"]


def test_deadman_mode_drives_exactly_while_held():
    gate = InterventionGate(GateConfig(mode="deadman"))
    e = a(1.0)
    d = run(gate, [(e, False), (e, True), (e, True), (e, False), (e, False)])
    assert [x.is_intervention for x in d] == [False, True, True, False, False]
    assert [x.reason for x in d] == ["policy", "deadman", "deadman", "released", "policy"]
    assert d[0].action is P and d[1].action is e and d[3].action is P
    assert d[1].takeover and not d[2].takeover
    assert d[1].engaged_at_tick == 1 and d[2].engaged_at_tick == 1 and d[3].engaged_at_tick is None
    assert d[3].released and not d[4].released
    assert [x.tick for x in d] == [0, 1, 2, 3, 4]
    # Deviation is never computed in deadman mode, however large.
    assert all(x.deviation is None for x in d)
    assert gate.summary() == {
        "ticks": 5,
        "intervention_ticks": 2,
        "takeovers": 1,
        "intervention_fraction": 0.4,
    }


def test_deadman_release_hysteresis():
    gate = InterventionGate(GateConfig(mode="deadman", release_ticks=2))
    e = a(1.0)
    d = run(gate, [(e, True), (e, False), (e, False), (e, False), (e, True), (e, False)])
    assert [x.is_intervention for x in d] == [True, True, True, False, True, True]
    assert [x.reason for x in d[:4]] == ["deadman", "releasing 1/2", "releasing 2/2", "released"]
    # Pressing again within or after the hysteresis: a new takeover only after a hand-back.
    assert d[4].takeover and gate.takeovers == 2
    assert d[5].reason == "releasing 1/2" and d[5].engaged_at_tick == 4


def test_deviation_mode_engage_and_release_hysteresis():
    cfg = GateConfig(
        mode="deviation",
        deviation_threshold=0.3,
        engage_ticks=2,
        release_ticks=1,
    )  # release threshold 0.15
    gate = InterventionGate(cfg)
    steps = [
        (a(0.4), True),  # 0: above, 1/2 (the deadman is ignored in deviation mode)
        (a(0.1), False),  # 1: below: the engage count restarts
        (a(0.4), False),  # 2: above, 1/2
        (a(0.42), False),  # 3: above, 2/2: take over
        (a(0.2), False),  # 4: below 0.3 but >= 0.15: the expert keeps driving
        (a(0.1), False),  # 5: below 0.15: releasing 1/1
        (a(0.2), False),  # 6: back above the release threshold: release count restarts
        (a(0.1), False),  # 7: releasing 1/1
        (a(0.1), False),  # 8: hand back
        (a(0.2), False),  # 9: between the thresholds, not intervening: policy
    ]
    d = run(gate, steps)
    assert [x.is_intervention for x in d] == [
        False, False, False, True, True, True, True, True, False, False,
    ]  # fmt: skip
    assert d[0].reason == "policy, deviation 0.4 > 0.3 (1/2)"
    assert d[1].reason == "policy"
    assert d[3].reason == "deviation 0.42 > 0.3" and d[3].takeover
    assert d[4].reason == "deviation 0.2 >= 0.15"
    assert d[5].reason == "releasing 1/1"
    assert d[8].reason == "released" and d[8].released and d[8].action is P
    assert d[9].reason == "policy"
    assert d[3].action is steps[3][0] and d[0].action is P
    assert d[3].deviation == pytest.approx(0.42)
    assert gate.ticks == 10 and gate.intervention_ticks == 5 and gate.takeovers == 1


def test_deviation_scale_normalises_dims_before_the_norm():
    cfg = GateConfig(mode="deviation", deviation_threshold=1.0, deviation_scale=(0.5, 2.0))
    gate = InterventionGate(cfg)
    d = gate.update(P, a(0.3, 1.6), False)  # (0.6, 0.8) -> norm 1.0, not > 1.0
    assert d.deviation == pytest.approx(1.0) and not d.is_intervention
    d = gate.update(P, a(0.3, 2.4), False)  # (0.6, 1.2) -> 1.342
    assert d.deviation == pytest.approx(math.hypot(0.6, 1.2)) and d.is_intervention
    with pytest.raises(ValueError, match="deviation_scale has 2 entries"):
        gate.update(np.zeros(3), np.ones(3), False)
    with pytest.raises(ValueError, match="shape"):
        gate.update(np.zeros(2), np.ones(3), False)


def test_either_mode():
    gate = InterventionGate(GateConfig(mode="either", deviation_threshold=0.3))
    d = run(
        gate,
        [
            (a(0.0), True),  # deadman alone
            (a(0.2), False),  # deadman up, but 0.2 >= 0.15 keeps the expert driving
            (a(0.0), False),  # both triggers released
            (a(0.5), False),  # deviation alone
            (a(0.5), True),  # both
            (a(0.0), False),
        ],
    )
    assert [x.is_intervention for x in d] == [True, True, False, True, True, False]
    assert [x.reason for x in d] == [
        "deadman",
        "deviation 0.2 >= 0.15",
        "released",
        "deviation 0.5 > 0.3",
        "deadman",
        "released",
    ]
    assert gate.takeovers == 2
    assert d[0].deviation == 0.0  # computed whenever both actions exist


def test_missing_expert_never_intervenes_unless_deadman_held():
    gate = InterventionGate(GateConfig(mode="either", deviation_threshold=0.3, release_ticks=3))
    d = gate.update(P, None, False)
    assert not d.is_intervention and d.action is P and d.reason == "no expert"
    gate.update(P, a(1.0), False)  # take over on deviation
    assert gate.intervening
    d = gate.update(P, None, False)  # teleop silent: hand back at once, despite release_ticks
    assert not d.is_intervention and d.released and d.reason == "no expert" and d.action is P
    # Deadman held with no expert command: an intervention with nothing to execute.
    d = gate.update(P, None, True)
    assert d.is_intervention and d.action is None and d.reason == "deadman, no expert action"
    assert d.takeover
    # Nothing at all.
    gate.reset()
    d = gate.update(None, None, False)
    assert not d.is_intervention and d.action is None and d.reason == "no action"


def test_missing_policy_lets_the_expert_drive():
    gate = InterventionGate(GateConfig(mode="deadman"))
    e = a(0.3)
    d = gate.update(None, e, False)
    assert d.is_intervention and d.action is e and d.reason == "no policy" and d.takeover
    d = gate.update(None, e, True)
    assert d.is_intervention and d.reason == "deadman" and not d.takeover
    d = gate.update(P, e, False)  # policy ready, deadman up: hand back
    assert not d.is_intervention and d.reason == "released" and d.action is P
    assert gate.takeovers == 1 and gate.intervention_ticks == 2


def test_non_finite_actions_read_as_missing():
    gate = InterventionGate(GateConfig(mode="deviation", deviation_threshold=0.3))
    d = gate.update(P, a(math.nan), False)
    assert not d.is_intervention and d.reason == "no expert" and d.action is P
    e = a(0.1)
    d = gate.update(a(math.inf), e, False)
    assert d.is_intervention and d.reason == "no policy" and d.action is e
    # Discrete (integer) actions are always finite.
    gate = InterventionGate(GateConfig(mode="deadman"))
    d = gate.update(np.array(1), np.array(2), True)
    assert d.is_intervention and int(d.action) == 2


def test_reset_and_determinism():
    cfg = GateConfig(mode="either", deviation_threshold=0.3, engage_ticks=2, release_ticks=2)
    rng = np.random.default_rng(1)
    steps = [
        (a(*rng.normal(scale=0.3, size=2)) if rng.random() > 0.1 else None, rng.random() < 0.2)
        for _ in range(200)
    ]
    gate = InterventionGate(cfg)
    first = [(x.is_intervention, x.reason) for x in run(gate, steps)]
    counts = gate.summary()
    assert counts["takeovers"] > 0 and 0 < counts["intervention_ticks"] < 200
    gate.reset()
    assert gate.summary()["ticks"] == 0 and not gate.intervening
    assert [(x.is_intervention, x.reason) for x in run(gate, steps)] == first
    assert gate.summary() == counts
    assert sum(x[0] for x in first) == counts["intervention_ticks"]
