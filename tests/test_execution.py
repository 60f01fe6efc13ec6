"""PolicyExecutor: receding horizon, asynchronous inference-ahead, temporal ensembling."""

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from il_core.execution import FROM_CHECKPOINT, PolicyExecutor, parse_override


class FakePolicy:
    """Predicts chunk[i] = [t_obs + i, 0] where t_obs is read from the observation."""

    def __init__(self, horizon=4, n_action_steps=2, n_obs_steps=1, delay_s=0.0):
        self.spec = SimpleNamespace(
            action=SimpleNamespace(kind="continuous", clip=lambda a: np.clip(a, -100, 100))
        )
        self.horizon, self.n_action_steps, self.n_obs_steps = horizon, n_action_steps, n_obs_steps
        self.delay_s = delay_s
        self.calls = []
        self.release = threading.Event()
        self.release.set()

    def predict_action_chunk(self, obs):
        """Chunk ``(h, 2)`` planned from the tick number stored in the observation."""
        self.release.wait(5)
        time.sleep(self.delay_s)
        t_obs = float(obs["t"][-1, 0])
        self.calls.append(t_obs)
        return np.stack([[t_obs + i, 0.0] for i in range(self.horizon)]).astype(np.float32)


def obs(t):
    return {"t": np.array([t], np.float32)}


def test_sync_receding_horizon_executes_n_action_steps_per_chunk():
    p = FakePolicy(horizon=4, n_action_steps=3)
    ex = PolicyExecutor(p)
    actions = [ex.step(obs(t))[0] for t in range(7)]
    assert actions == [0, 1, 2, 3, 4, 5, 6]  # each action is the one planned for its tick
    assert p.calls == [0, 3, 6]
    assert ex.stats.starved_ticks == 0


def test_async_tick_never_waits_and_late_chunk_drops_past_actions():
    p = FakePolicy(horizon=8, n_action_steps=4)
    ex = PolicyExecutor(p, asynchronous=True, lead_steps=1)
    try:
        p.release.clear()  # the model is "slow": blocked until released
        t0 = time.perf_counter()
        assert ex.step(obs(0)) is None  # nothing planned yet: caller sends its safe action
        assert time.perf_counter() - t0 < 0.5
        assert ex.step(obs(1)) is None
        p.release.set()
        deadline = time.time() + 5
        while ex._pending is not None and not ex._pending.done() and time.time() < deadline:
            time.sleep(0.001)
        a = ex.step(obs(2))  # chunk from t_obs=0 arrives at tick 2: ticks 0, 1 are dropped
        assert a[0] == 2
        assert ex.stats.starved_ticks == 2
        # Next request at tick 0 + 4 - 1 = 3, from the observation of tick 3.
        got = []
        for t in range(3, 12):
            deadline = time.time() + 5
            action = ex.step(obs(t))
            if ex._pending is not None:
                while not ex._pending.done() and time.time() < deadline:
                    time.sleep(0.001)
            got.append(None if action is None else action[0])
        assert got == list(range(3, 12))  # no starved tick once running ahead
        assert p.calls[:3] == [0, 3, 6]
    finally:
        ex.close()


def test_async_reset_discards_in_flight_chunk():
    p = FakePolicy(horizon=4, n_action_steps=2)
    ex = PolicyExecutor(p, asynchronous=True, lead_steps=1)
    try:
        p.release.clear()
        ex.step(obs(0))
        ex.reset()
        p.release.set()
        time.sleep(0.05)
        assert ex.step(obs(100)) is None  # the old chunk (t_obs=0) was dropped
        assert ex.stats.discarded_chunks == 1
    finally:
        ex.close()


def test_temporal_ensembling_weights_oldest_first():
    p = FakePolicy(horizon=3, n_action_steps=1)
    ex = PolicyExecutor(p, temporal_ensemble_coeff=0.5)
    ex.step(obs(0))  # predictions for ticks 0,1,2 from t_obs=0 equal the tick
    a1 = ex.step(obs(10))  # tick 1: prediction 1 (from t_obs 0) and 10 (from t_obs 10)
    w = np.exp(-0.5 * np.arange(2))
    assert a1[0] == pytest.approx((w[0] * 1 + w[1] * 10) / w.sum())
    a2 = ex.step(obs(20))  # tick 2: 2 (chunk 1), 11 (chunk 2), 20 (chunk 3)
    w = np.exp(-0.5 * np.arange(3))
    assert a2[0] == pytest.approx((w * np.array([2, 11, 20])).sum() / w.sum())


def test_seam_jumps_are_measured():
    p = FakePolicy(horizon=4, n_action_steps=2)
    ex = PolicyExecutor(p)
    for t in range(6):
        ex.step(obs(t * 10 if t % 2 == 0 else 0))
    # Chunks at ticks 0, 2, 4 from observations 0, 20, 40: seams at ticks 2 and 4.
    assert list(ex.stats.seam_jumps) == [pytest.approx(19.0), pytest.approx(19.0)]


def test_async_one_step_policy_executes_the_late_prediction():
    """A horizon-1 chunk always arrives after its tick; its action is executed late, once."""
    p = FakePolicy(horizon=1, n_action_steps=1)
    ex = PolicyExecutor(p, asynchronous=True)
    try:
        got = []
        for t in range(6):
            got.append(ex.step(obs(t)))
            deadline = time.time() + 5
            while ex._pending is not None and not ex._pending.done() and time.time() < deadline:
                time.sleep(0.001)
        assert got[0] is None  # nothing predicted yet on the very first tick
        assert [a[0] for a in got[1:]] == [0, 1, 2, 3, 4]  # one tick of latency
    finally:
        ex.close()


def test_checkpoint_is_the_one_spelling_of_the_policys_own_setting():
    p = FakePolicy(horizon=4, n_action_steps=3)
    p.config = SimpleNamespace(temporal_ensemble_coeff=0.25)
    ex = PolicyExecutor(p, FROM_CHECKPOINT, temporal_ensemble_coeff=FROM_CHECKPOINT)
    assert (ex.temporal_ensemble_coeff, ex.n_action_steps) == (0.25, 1)  # ensembling: 1/chunk
    ex = PolicyExecutor(p, temporal_ensemble_coeff=None)
    assert (ex.temporal_ensemble_coeff, ex.n_action_steps) == (None, 3)
    assert PolicyExecutor(p, 2, temporal_ensemble_coeff=None).n_action_steps == 2
    with pytest.raises(ValueError, match="n_action_steps must be a number or 'checkpoint'"):
        PolicyExecutor(p, "policy")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("checkpoint", int, "checkpoint"),
        (" Checkpoint ", float, "checkpoint"),
        ("off", float, None),
        (False, float, None),  # an unquoted `off` in a YAML parameter file
        (4, int, 4),
        ("4", int, 4),
        (4.0, int, 4),
        (0.01, float, 0.01),
        ("0.5", float, 0.5),
        (0, float, 0.0),
    ],
)
def test_parse_override_reads_words_and_numbers(value, kind, expected):
    assert parse_override("x", value, kind) == expected


@pytest.mark.parametrize(
    ("value", "kind"), [("off", int), ("policy", float), (2.5, int), (True, float), (None, int)]
)
def test_parse_override_names_the_setting(value, kind):
    with pytest.raises(ValueError, match="^n_action_steps must be 'checkpoint'"):
        parse_override("n_action_steps", value, kind)
