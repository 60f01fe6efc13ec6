"""The teleop's input mapping (axes, scales, deadzone, deadman, button edges), without ROS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from il_core.config import ConfigError
from il_ros.teleop_node import (
    AxesMapper,
    JoyButtons,
    LeaderMapper,
    MalformedInput,
    TwistMapper,
    per_dim,
    twist_values,
)


def test_axes_select_scale_and_offset() -> None:
    m = AxesMapper(axes=[1, 0, -1], scales=[2.0, -1.0, 1.0], offsets=[0.0, 0.0, 0.5])
    out = m([0.25, -0.5, 0.9])
    np.testing.assert_allclose(out, [-1.0, -0.25, 0.5])
    assert out.dtype == np.float32 and out.shape == (3,)


def test_one_scale_applies_to_every_dimension() -> None:
    np.testing.assert_allclose(AxesMapper([0, 1], scales=[0.5])([1.0, -1.0]), [0.5, -0.5])
    np.testing.assert_allclose(per_dim([3.0], 4, "s"), [3.0] * 4)
    with pytest.raises(ConfigError, match="scales: 3 values for a command of 2"):
        AxesMapper([0, 1], scales=[1.0, 2.0, 3.0])


def test_deadzone_zeroes_small_deflections_and_stays_continuous() -> None:
    m = AxesMapper([0], deadzone=0.1)
    assert m([0.09])[0] == 0.0
    assert m([-0.1])[0] == pytest.approx(0.0)
    assert m([0.55])[0] == pytest.approx(0.5)
    assert m([1.0])[0] == pytest.approx(1.0)
    assert m([-1.0])[0] == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("axes", "error"),
    [([0.1], "Joy has 1 axes, need 2"), ([0.1, math.nan], "NaN"), ([], "Joy has 0 axes")],
)
def test_malformed_axes_raise(axes: list[float], error: str) -> None:
    with pytest.raises(MalformedInput, match=error):
        AxesMapper([1, 0])(axes)


def test_bad_axes_config_is_refused() -> None:
    with pytest.raises(ConfigError):
        AxesMapper([])
    with pytest.raises(ConfigError):
        AxesMapper([-2])
    with pytest.raises(ConfigError, match="deadzone"):
        AxesMapper([0], deadzone=1.0)


def test_deadman_and_edge_triggered_buttons() -> None:
    b = JoyButtons(deadman_button=4, command_buttons={"start": 7, "success": 0, "stop": -1})
    assert b.required_buttons == 8
    # The first message is the reference: a button held at start-up does not fire.
    assert b.update([1, 0, 0, 0, 0, 0, 0, 1]) == (False, ())
    assert b.update([1, 0, 0, 0, 1, 0, 0, 1]) == (True, ())
    assert b.update([0, 0, 0, 0, 1, 0, 0, 0]) == (True, ())
    # Press start and success together: both fire once, in EPISODE_COMMANDS order.
    assert b.update([1, 0, 0, 0, 0, 0, 0, 1]) == (False, ("start", "success"))
    assert b.update([1, 0, 0, 0, 0, 0, 0, 1]) == (False, ())
    assert b.update([0, 0, 0, 0, 0, 0, 0, 0]) == (False, ())
    assert b.update([1, 0, 0, 0, 0, 0, 0, 0]) == (False, ("success",))


def test_malformed_buttons_raise_and_keep_the_edge_state() -> None:
    b = JoyButtons(deadman_button=2, command_buttons={"discard": 1})
    assert b.update([0, 0, 0]) == (False, ())
    with pytest.raises(MalformedInput, match="Joy has 2 buttons, need 3"):
        b.update([0, 1])
    assert b.update([0, 1, 1]) == (True, ("discard",))


def test_no_deadman_means_always_enabled() -> None:
    b = JoyButtons(-1, {})
    assert not b.has_deadman and b.required_buttons == 0
    assert b.update([]) == (True, ())


def test_button_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown episode commands"):
        JoyButtons(0, {"launch": 1})
    with pytest.raises(ConfigError, match="two roles"):
        JoyButtons(0, {"start": 0})
    with pytest.raises(ConfigError, match=">= 0"):
        JoyButtons(-3, {})


def test_twist_mapping() -> None:
    from geometry_msgs.msg import Twist

    t = Twist()
    t.linear.x, t.angular.z = 0.2, -0.4
    m = TwistMapper(["angular.z", "linear.x"], scales=[2.0, 1.0])
    np.testing.assert_allclose(m(twist_values(t)), [-0.8, 0.2], rtol=1e-6)
    t.linear.x = math.inf
    with pytest.raises(MalformedInput):
        m(twist_values(t))
    with pytest.raises(ConfigError, match="twist_fields"):
        TwistMapper(["linear.w"])


def test_leader_mapping_by_joint_name() -> None:
    m = LeaderMapper(["elbow", "shoulder"], scales=[-1.0, 1.0], offsets=[0.0, 0.1])
    out = m(["shoulder", "wrist", "elbow"], [0.5, 9.0, 0.25])
    np.testing.assert_allclose(out, [-0.25, 0.6], rtol=1e-6)
    with pytest.raises(MalformedInput, match="lacks joints"):
        m(["shoulder"], [0.5])
    with pytest.raises(MalformedInput, match="names"):
        m(["shoulder", "elbow"], [0.5])
    with pytest.raises(ConfigError):
        LeaderMapper([""])
