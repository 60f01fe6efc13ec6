"""Causal alignment, freshness, counts and rate figures, on hand-computed synthetic streams."""

import json
import math

import numpy as np
import pytest

from il_core.alignment import (
    RateMeter,
    StreamCache,
    StreamConfig,
    TickAligner,
)


def v(x: float) -> np.ndarray:
    return np.array([x], dtype=np.float32)


def test_stream_config_validates():
    with pytest.raises(ValueError, match="non-empty"):
        StreamConfig("", 0.1)
    with pytest.raises(ValueError, match="max_age_s"):
        StreamConfig("cam", 0.0)
    with pytest.raises(ValueError, match="max_age_s"):
        StreamConfig("cam", math.nan)
    with pytest.raises(ValueError, match="expected_rate_hz"):
        StreamConfig("cam", 0.1, expected_rate_hz=-30.0)
    with pytest.raises(ValueError, match="duplicate"):
        TickAligner([StreamConfig("a", 0.1), StreamConfig("a", 0.2)])
    with pytest.raises(ValueError, match="at least one"):
        TickAligner([])


def test_latest_at_is_causal():
    c = StreamCache(StreamConfig("joints", 1.0))
    assert c.latest_at(5.0) is None
    for stamp in (1.0, 2.0, 3.0):
        c.put(v(stamp), stamp, stamp + 0.01)
    assert c.latest_at(0.5) is None
    assert c.latest_at(1.0).stamp == 1.0  # stamp == t counts as "at or before"
    assert c.latest_at(2.5).stamp == 2.0  # a lagging tick never takes the sample of 3.0
    assert c.latest_at(3.0).stamp == 3.0
    assert c.latest_at(9.0).value[0] == 3.0


def test_ring_buffer_keeps_capacity_newest():
    c = StreamCache(StreamConfig("x", 1.0), capacity=3)
    for stamp in range(5):
        c.put(v(stamp), float(stamp), float(stamp))
    assert len(c) == 3
    assert c.latest_at(1.5) is None  # samples 0 and 1 were evicted
    assert c.latest_at(2.0).stamp == 2.0
    assert c.received == 5


def test_sample_ignores_future_sample_and_reports_ages_and_delays():
    al = TickAligner([StreamConfig("cam", 0.1), StreamConfig("action", 0.05)])
    al.put("cam", v(1), 0.90, 0.93)
    al.put("cam", v(2), 1.02, 1.03)  # newer than the tick below: must not be used
    al.put("action", v(7), 0.98, 0.98)
    tick = al.sample(1.0)
    assert tick.complete
    assert tick.values["cam"][0] == 1 and tick.values["action"][0] == 7
    assert tick.stamps == {"cam": 0.90, "action": 0.98}
    assert tick.ages["cam"] == pytest.approx(0.10)
    assert tick.ages["action"] == pytest.approx(0.02)
    assert tick.receive_delays["cam"] == pytest.approx(0.03)
    assert tick.receive_delays["action"] == pytest.approx(0.0)
    assert tick.missing == () and tick.stale == () and tick.describe() == ""


def test_max_age_stale_and_missing_reasons():
    al = TickAligner(
        [StreamConfig("cam", 0.1), StreamConfig("joints", 0.02), StreamConfig("action", 0.05)]
    )
    al.put("cam", v(1), 0.95, 0.96)
    al.put("joints", v(2), 0.97, 0.97)  # 30 ms old at t=1.0 > 20 ms
    tick = al.sample(1.0)
    assert not tick.complete
    assert tick.values == {}
    assert tick.missing == ("action",)
    assert tick.stale == ("joints",)
    assert tick.ages["action"] == math.inf
    assert "action" not in tick.stamps and "action" not in tick.receive_delays
    assert tick.ages["joints"] == pytest.approx(0.03)
    assert "no sample from action" in tick.describe()
    assert "stale joints (30.0 ms old)" in tick.describe()
    # A sample only in the tick's future still counts as missing.
    al.put("action", v(3), 1.01, 1.01)
    assert al.sample(1.0).missing == ("action",)
    al.put("joints", v(4), 1.0, 1.0)
    al.put("action", v(5), 1.0, 1.0)
    assert al.sample(1.01).complete
    s = al.summary()["streams"]
    assert s["action"]["missing_ticks"] == 2
    assert s["joints"]["stale_ticks"] == 2
    assert s["cam"]["missing_ticks"] == 0 and s["cam"]["stale_ticks"] == 0


def test_exact_max_age_is_fresh():
    al = TickAligner([StreamConfig("x", 0.25)])
    al.put("x", v(0), 1.0, 1.0)
    assert al.sample(1.25).complete
    assert al.sample(1.2500001).stale == ("x",)


def test_headerless_stream_uses_receive_time():
    al = TickAligner([StreamConfig("joy", 0.2)])
    assert al.put("joy", v(1), None, 2.0)
    tick = al.sample(2.05)
    assert tick.complete
    assert tick.stamps["joy"] == 2.0
    assert tick.receive_delays["joy"] == 0.0
    cache = al.cache("joy")
    assert cache.latest_at(2.05).has_header is False
    assert cache.unstamped == 1
    # A header-less message received after the tick is in its future.
    al.put("joy", v(2), None, 2.2)
    assert al.sample(2.1).values["joy"][0] == 1


def test_out_of_order_sample_is_stored_in_order_and_counted_late():
    c = StreamCache(StreamConfig("cam", 1.0, expected_rate_hz=10.0), capacity=4)
    for stamp in (1.0, 1.3):
        c.put(v(stamp), stamp, stamp)
    assert c.gaps == 1 and c.dropped == 2  # 0.3 s at 10 Hz: 2 messages missing
    assert c.put(v(1.1), 1.1, 1.35)  # late: arrives after 1.3
    assert c.late == 1
    assert c.latest_at(1.15).stamp == 1.1  # a tick between the two finds it
    assert c.latest_at(1.35).stamp == 1.3  # the newest stays the newest
    assert c.gaps == 1 and c.dropped == 2  # late samples never change the gap counts
    # Fill the buffer, then a sample older than everything held is dropped.
    c.put(v(1.4), 1.4, 1.4)
    c.put(v(1.5), 1.5, 1.5)
    assert len(c) == 4  # 1.1, 1.3, 1.4, 1.5
    assert not c.put(v(0.5), 0.5, 1.6)
    assert c.late == 2 and len(c) == 4
    assert c.latest_at(1.05) is None
    assert c.received == 6


def test_non_finite_times_are_malformed():
    al = TickAligner([StreamConfig("x", 0.1)])
    assert not al.put("x", v(0), math.nan, 1.0)
    assert not al.put("x", v(0), None, math.inf)
    al.count_malformed("x")
    c = al.cache("x")
    assert c.malformed == 3 and c.received == 0 and len(c) == 0
    with pytest.raises(KeyError, match="unknown stream 'y'"):
        al.put("y", v(0), 1.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        al.sample(math.nan)


def test_gap_and_drop_estimates():
    c = StreamCache(StreamConfig("joints", 1.0, expected_rate_hz=100.0))
    # 10 ms steps, then 14 ms (not a gap: not > 1.5 periods), then 17 ms (a gap of
    # round(1.7) - 1 = 1 dropped), then 50 ms (round(5) - 1 = 4 dropped).
    stamps = [0.0, 0.01, 0.02, 0.034, 0.051, 0.101, 0.111]
    for s in stamps:
        c.put(v(s), s, s)
    assert c.gaps == 2
    assert c.dropped == 5
    assert c.measured_rate_hz() == pytest.approx(6 / 0.111)
    # Without an expected rate nothing is counted.
    c2 = StreamCache(StreamConfig("joints", 1.0))
    for s in stamps:
        c2.put(v(s), s, s)
    assert c2.gaps == 0 and c2.dropped == 0


def test_used_counts_distinct_samples_in_complete_ticks():
    al = TickAligner([StreamConfig("cam", 0.1), StreamConfig("joints", 0.1)])
    al.put("cam", v(0), 0.0, 0.0)
    al.put("joints", v(0), 0.0, 0.0)
    al.sample(0.01)
    al.sample(0.02)  # the same two samples again
    al.put("joints", v(1), 0.02, 0.02)
    al.sample(0.03)
    al.sample(0.5)  # incomplete (both stale): nothing used
    assert al.cache("cam").used == 1
    assert al.cache("joints").used == 2
    assert al.ticks == 4 and al.complete_ticks == 3 and al.gap_ticks == 1


def test_summary_content_and_reset():
    al = TickAligner(
        [
            StreamConfig("cam", 0.06, expected_rate_hz=30.0),
            StreamConfig("action", 0.05),
        ],
        rate_hz=10.0,
    )
    # Camera at 30 Hz with one lost frame between 0.1 and 0.1667; receive 5 ms after stamp.
    for k in (0, 1, 2, 3, 5, 6, 7, 8, 9):
        stamp = k / 30
        al.put("cam", np.zeros((2, 2, 3), np.uint8), stamp, stamp + 0.005)
    al.put("cam", np.zeros((2, 2, 3), np.uint8), 0.2, 0.21)  # 0.2 < newest 0.3: late
    for t in (0.0, 0.1, 0.2, 0.3):
        al.put("action", v(t), None, t)
    al.count_malformed("action")
    for t in (0.0, 0.1, 0.2, 0.3, 0.44):  # 0.44: both 0.14 s old -> stale
        al.sample(t)

    s = al.summary()
    json.dumps(s, allow_nan=False)  # JSON-compatible, no NaN or infinity
    assert s["ticks"] == 5 and s["complete_ticks"] == 4 and s["gap_ticks"] == 1
    assert s["complete_fraction"] == pytest.approx(0.8)
    assert s["rate"]["ticks"] == 5
    assert s["rate"]["nominal_rate_hz"] == 10.0
    assert s["rate"]["long_intervals"] == 0  # 0.14 s is not > 1.5 x 0.1 s
    cam, act = s["streams"]["cam"], s["streams"]["action"]
    assert cam["received"] == 10 and cam["late"] == 1 and cam["gaps"] == 1
    assert cam["dropped_estimate"] == 1
    assert cam["malformed"] == 0 and cam["unstamped"] == 0
    assert cam["measured_rate_hz"] == pytest.approx(8 / 0.3)  # 9 in-order stamps over 0.3 s
    assert cam["receive_delay_median_s"] == pytest.approx(0.005)
    assert cam["expected_rate_hz"] == 30.0 and cam["max_age_s"] == 0.06
    assert act["malformed"] == 1 and act["unstamped"] == 4 and act["stale_ticks"] == 1
    assert act["age_median_s"] == pytest.approx(0.0)
    assert act["age_max_s"] == pytest.approx(0.14)
    assert cam["stale_ticks"] == 1 and cam["missing_ticks"] == 0
    # cam samples at 0.0, 0.1, 0.2 and 0.3 went into complete ticks
    assert cam["used"] == 4 and act["used"] == 4

    al.reset_counters()
    s = al.summary()
    assert s["ticks"] == 0 and s["complete_fraction"] is None
    assert s["rate"]["rate_mean_hz"] is None
    assert all(
        st[k] in (0, None)
        for st in s["streams"].values()
        for k in ("received", "late", "malformed", "gaps", "dropped_estimate", "used")
    )
    assert s["streams"]["cam"]["age_median_s"] is None
    # Held samples survive the reset: the next episode's first tick can be complete.
    al.put("action", v(1), 0.45, 0.45)
    al.put("cam", np.zeros((2, 2, 3), np.uint8), 0.45, 0.45)
    assert al.sample(0.46).complete
    assert al.summary()["streams"]["cam"]["used"] == 1


def test_rate_meter_on_synthetic_jittered_ticks(rng):
    nominal = 100.0
    n = 2001
    jitter = rng.uniform(-0.001, 0.001, size=n)
    times = np.arange(n) / nominal + jitter
    times[1500:] += 0.02  # one interval of ~30 ms: 2 missed ticks
    m = RateMeter(nominal, window=1000)
    for t in times:
        m.tick(float(t))
    s = m.stats()
    dts = np.diff(times)
    assert s.ticks == n
    assert s.window == 1000
    last = dts[-1000:]
    assert s.period_median_s == pytest.approx(np.median(last))
    assert s.rate_median_hz == pytest.approx(1 / np.median(last))
    assert s.rate_mean_hz == pytest.approx((n - 1) / (times[-1] - times[0]))
    assert s.jitter_std_s == pytest.approx(last.std())
    assert s.jitter_p99_s == pytest.approx(np.percentile(np.abs(last - 0.01), 99))
    assert s.max_interval_s == pytest.approx(last.max())
    assert s.long_intervals == 1 and s.missed_ticks == 2
    assert s.max_interval_s > 0.028
    json.dumps(s.as_dict(), allow_nan=False)


def test_rate_meter_hand_computed_and_edge_cases():
    m = RateMeter(10.0)
    for t in (0.0, 0.1, 0.2, 0.48, 0.58, 0.58, 0.68):
        m.tick(t)
    s = m.stats()
    # Intervals 0.1, 0.1, 0.28, 0.1, (0 skipped), 0.1.
    assert s.ticks == 7 and s.nonpositive_intervals == 1 and s.window == 5
    assert s.period_median_s == pytest.approx(0.1)
    assert s.rate_median_hz == pytest.approx(10.0)
    assert s.rate_mean_hz == pytest.approx(5 / 0.68)
    assert s.long_intervals == 1 and s.missed_ticks == 2  # round(2.8) - 1
    assert s.max_interval_s == pytest.approx(0.28)

    # Without a nominal rate: jitter against the median, no missed-tick counts.
    m = RateMeter()
    for t in (0.0, 0.1, 0.2, 0.4):
        m.tick(t)
    s = m.stats()
    assert s.missed_ticks is None and s.long_intervals is None
    assert s.jitter_p99_s == pytest.approx(np.percentile([0, 0, 0.1], 99))

    m.reset()
    s = m.stats()
    assert s.ticks == 0 and s.rate_mean_hz is None and s.jitter_std_s is None
    m.tick(1.0)
    assert m.stats().window == 0
    with pytest.raises(ValueError, match="nominal_rate_hz"):
        RateMeter(0.0)
