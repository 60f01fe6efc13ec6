"""``spin_node`` reports a node that does not act on a stop signal, and only such a node.

A node whose control loop is stuck (here a timer callback that blocks for 6 s) cannot begin
its shutdown when Ctrl-C arrives; ``ros2 launch`` would say only "failed to terminate" and
kill it. ``spin_node`` then prints the stack of every thread after ``STOP_STALL_S``, naming
the node and showing where it is stuck. A node that stops normally prints nothing of the
kind.
"""

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from il_ros.common import STOP_STALL_S

pytestmark = pytest.mark.ros

NODE = textwrap.dedent(
    """
    import sys, time
    from rclpy.node import Node
    from il_ros.common import spin_node

    STUCK = sys.argv[1] == "stuck"

    def stuck_callback():
        print("ticking", flush=True)
        if STUCK:
            time.sleep(6.0)  # a control loop that blocks: the stop signal must wait

    def make():
        node = Node("spin_probe")
        node.create_timer(0.05, stuck_callback)
        return node

    sys.exit(spin_node(make, on_exit=lambda n: print("on_exit ran", flush=True)))
    """
)


def _run(mode: str) -> tuple[int, str, float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", NODE, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the first tick: the node spins
    assert line.strip() == "ticking", line
    time.sleep(0.2)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # as under ros2 launch: the terminal's and launch's
    out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out and "Exception ignored" not in out, out
    return proc.returncode, out, time.monotonic() - sent


def test_a_stuck_node_says_where_it_is_stuck_then_still_stops_cleanly():
    rc, out, took = _run("stuck")
    assert "il_ros: spin_probe has not begun its shutdown" in out, out
    # faulthandler's stack of the main thread, inside the blocking callback.
    assert "in stuck_callback" in out, out
    assert took > STOP_STALL_S, took
    assert rc == 0 and "on_exit ran" in out, (rc, out)


def test_a_node_that_stops_at_once_prints_no_report():
    rc, out, took = _run("normal")
    assert rc == 0 and "on_exit ran" in out, (rc, out)
    assert "has not begun its shutdown" not in out and "Thread 0x" not in out, out
    assert took < STOP_STALL_S, took


REFUSED = textwrap.dedent(
    """
    import sys
    from rclpy.node import Node
    from std_msgs.msg import String
    from il_core.config import ConfigError
    from il_ros.common import spin_node

    destroy = Node.destroy_node

    def spy(self):
        print("destroyed", self.get_name(), flush=True)
        return destroy(self)

    Node.destroy_node = spy

    class Refusing(Node):
        def __init__(self):
            super().__init__("refusing")
            self.create_publisher(String, "~/out", 1)
            raise ConfigError("parameter 'mapping_file' is required")

    sys.exit(spin_node(Refusing))
    """
)


def test_a_node_that_refuses_its_config_is_destroyed_before_exit_2():
    # Left to the garbage collector, the half-built node once crashed rclpy (SIGSEGV).
    proc = subprocess.run(
        [sys.executable, "-c", REFUSED], capture_output=True, text=True, timeout=60
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "destroyed refusing" in out and "parameter 'mapping_file' is required" in out, out
    assert "Traceback" not in out, out
