"""The control loop's safe-stop state and statistics (il_core/control_loop.py), without ROS."""

import pytest

from il_core.control_loop import LoopStats, SafeStop, StopCause


def test_a_stop_is_reported_when_it_engages_or_its_cause_changes_not_when_its_text_does():
    s = SafeStop()
    s.arm()
    first = s.stop(StopCause.OBSERVATION, "observation missing: camera")
    assert first is not None and not first.warn  # start-up: streams not there yet
    assert s.count == 0  # still the stop of activation, not a new one
    assert s.stop(StopCause.OBSERVATION, "observation stale: joints") is None
    assert s.reason == "observation stale: joints"  # the latest detail, for diagnostics
    report = s.stop(StopCause.STARTING, "waiting for the first action chunk")
    assert report is not None and not report.warn
    assert s.resume() and not s.resume()  # the first command ends the stop, once
    report = s.stop(StopCause.STARVED, "no action ready")
    assert report is not None and report.warn and s.count == 1
    assert s.stop(StopCause.STARVED, "no action ready") is None
    assert s.resume()
    report = s.stop(StopCause.REQUESTED, "deactivated")
    assert report is not None and not report.warn and s.count == 2


@pytest.mark.parametrize(
    ("cause", "fault"),
    [
        (StopCause.OBSERVATION, True),
        (StopCause.POLICY_ERROR, True),
        (StopCause.STARVED, True),
        (StopCause.STARTING, False),
        (StopCause.REQUESTED, False),
        (StopCause.INACTIVE, False),
    ],
)
def test_only_faults_warn_and_only_after_the_policy_commanded(cause, fault):
    s = SafeStop()
    s.arm()
    s.resume()
    report = s.stop(cause, "x")
    assert report is not None and report.warn is fault
    s.arm()  # a new activation: the policy has not commanded yet
    s.stop(StopCause.STARTING, "waiting")
    report = s.stop(cause, "y")
    assert report is None or not report.warn


def test_loop_stats_percentiles_in_ms_over_a_bounded_window():
    stats = LoopStats(window=100)
    assert set(stats.summary().values()) == {None}
    for i in range(250):
        stats.record(cost_s=0.001, newest_age_s=0.010 if i >= 150 else 1.0, oldest_age_s=0.02)
    summary = stats.summary()
    assert len(stats.tick_cost) == 100  # old ticks leave the window
    assert summary["obs_to_command_ms_p50"] == pytest.approx(11.0)
    assert summary["oldest_obs_ms_p99"] == pytest.approx(21.0)
    assert summary["tick_cost_ms_p99"] == pytest.approx(1.0)
