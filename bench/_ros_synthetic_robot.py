"""Synthetic robot for ``bench/bench_ros.py``: publishes a mapping's streams at fixed rates.

Started as a node process (``python -m bench._ros_synthetic_robot --ros-args ...``) with
parameters:

- ``mapping_file``: the robot mapping; every observation source is published on its topic.
  Cameras (``Image`` rgb8 or ``CompressedImage`` JPEG at the mapping's quality, encoded here
  with OpenCV for every frame, as a camera driver would) at ``camera_rate_hz`` and
  ``width`` x ``height``; ``JointState`` at ``joint_rate_hz``. Messages are built by
  ``il_ros.conversions.encode_observation`` (large payloads assigned from ``bytes``).
- ``command_rate_hz``: > 0 also publishes the mapping's command (``Float64MultiArray``) at
  that rate, standing in for a teleoperator.
- ``listen_commands``: subscribe to the mapping's command topic and log every command's
  receive time and first value.
- ``stats_file``: at exit (SIGINT/SIGTERM) write an ``.npz`` with, per stream, the publish
  time of every message (``t_<stream>``, seconds, system clock = ROS time), the time each
  publish took (``cost_<stream>``: encoding + ``publish()``), payload sizes (``size_<stream>``)
  and ticks skipped because the loop was late (``skipped_<stream>``); and the received
  commands (``cmd_t``, ``cmd_v0``).

The joint state carries a sequence number (1, 2, ...) as the position of its first joint and
is stamped with its publish time, so a policy that echoes that value lets the bench match every
command to the observation it was computed from.

Header stamps are the time the message is built (before encoding): the capture time a camera
driver would stamp. One thread publishes every stream on an absolute schedule (no drift); a
stream that falls more than a period behind skips ticks (counted) instead of bursting.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from typing import Any

import cv2
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Float64MultiArray

from il_core.mapping import ObservationSource, load_mapping
from il_ros.common import declare, publisher_sensor_qos
from il_ros.conversions import encode_observation, message_class

FRAMES_PER_CAMERA = 16


def synthetic_frames(width: int, height: int, n: int, seed: int) -> list[np.ndarray]:
    """``n`` RGB frames of a textured scene that pans, with sensor noise.

    Smooth texture plus a little noise compresses like a camera image (JPEG q90 about a tenth
    of the raw size), unlike pure noise (incompressible) or flat colour (trivially small).
    """
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 16, width // 16 + 8, 3), dtype=np.uint8)
    scene = cv2.resize(coarse, (width + 128, height), interpolation=cv2.INTER_CUBIC)
    edges = rng.integers(0, 256, (height // 4, (width + 128) // 4, 3), dtype=np.uint8)
    scene = cv2.addWeighted(
        scene, 0.8, cv2.resize(edges, (width + 128, height), cv2.INTER_NEAREST), 0.2, 0
    )
    frames = []
    for i in range(n):
        x = (i * 8) % 128
        noise = rng.normal(0.0, 2.0, (height, width, 3))
        frame = np.clip(scene[:, x : x + width].astype(np.float32) + noise, 0, 255)
        frames.append(np.ascontiguousarray(frame.astype(np.uint8)))
    return frames


class _Stream:
    """One periodically published stream and its log."""

    def __init__(self, name: str, period: float, publish: Any) -> None:
        self.name, self.period, self.publish = name, period, publish
        self.times: list[float] = []
        self.costs: list[float] = []
        self.sizes: list[int] = []
        self.skipped = 0
        self.next_due = 0.0


class SyntheticRobot(Node):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__("synthetic_robot")
        mapping_file = declare(self, "mapping_file", "", "robot mapping YAML", read_only=True)
        self.camera_rate = declare(self, "camera_rate_hz", 30.0, "camera publish rate")
        self.joint_rate = declare(self, "joint_rate_hz", 100.0, "JointState publish rate")
        self.command_rate = declare(
            self, "command_rate_hz", 0.0, "publish the mapping's command at this rate (0: no)"
        )
        self.width = declare(self, "width", 640, "camera width")
        self.height = declare(self, "height", 480, "camera height")
        listen = declare(self, "listen_commands", False, "log received commands")
        self.stats_file = declare(self, "stats_file", "", "npz written at exit")
        self.mapping = load_mapping(mapping_file)
        self.streams: list[_Stream] = []
        self.seq = 0
        cameras = [s for s in self.mapping.observations if s.is_image]
        for k, src in enumerate(cameras):
            self._add_camera(src, k, len(cameras))
        for src in self.mapping.observations:
            if src.type == "sensor_msgs/msg/JointState":
                self._add_joints(src)
            elif not src.is_image:
                raise ValueError(f"synthetic robot: unsupported observation type {src.type}")
        sink = self.mapping.action
        if self.command_rate > 0:
            if sink.type != "std_msgs/msg/Float64MultiArray":
                raise ValueError("synthetic robot: commands must be Float64MultiArray")
            pub = self.create_publisher(Float64MultiArray, sink.topic, 10)

            def command(t: float) -> int:
                pub.publish(Float64MultiArray(data=[0.1 * math.sin(t + j) for j in range(7)]))
                return 0

            self.streams.append(_Stream("command", 1.0 / self.command_rate, command))
        self.cmd_t: list[float] = []
        self.cmd_v0: list[float] = []
        if listen:
            qos = QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE
            )
            self.create_subscription(message_class(sink.type), sink.topic, self._on_command, qos)

    def _add_camera(self, src: ObservationSource, k: int, n: int) -> None:
        frames = synthetic_frames(self.width, self.height, FRAMES_PER_CAMERA, seed=k)
        pub = self.create_publisher(message_class(src.type), src.topic, publisher_sensor_qos())
        count = [0]

        def camera(t: float) -> int:
            msg = encode_observation(src, frames[count[0] % len(frames)], t)
            msg.header.frame_id = src.key
            count[0] += 1
            pub.publish(msg)
            return len(msg.data)

        stream = _Stream(src.key, 1.0 / self.camera_rate, camera)
        stream.next_due = k / (n * self.camera_rate)  # free-running cameras, spread phases
        self.streams.append(stream)

    def _add_joints(self, src: ObservationSource) -> None:
        pub = self.create_publisher(message_class(src.type), src.topic, publisher_sensor_qos())
        n = len(src.joints)

        def joints(t: float) -> int:
            self.seq += 1
            value = np.empty(src.dim, np.float64)
            value[:n] = 0.3 * np.sin(t + np.arange(n))
            value[0] = self.seq  # the sequence number, echoed by the bench policy
            value[n:] = 0.3 * np.cos(t + np.arange(src.dim - n))
            pub.publish(encode_observation(src, value, t))
            return 0

        self.streams.append(_Stream(src.key, 1.0 / self.joint_rate, joints))

    def _on_command(self, msg: Any) -> None:
        self.cmd_t.append(time.time())
        self.cmd_v0.append(float(msg.data[0]) if len(msg.data) else math.nan)

    def run(self, stop: threading.Event) -> None:
        """Publish every stream on its absolute schedule until ``stop`` is set."""
        start = time.time() + 0.05
        for s in self.streams:
            s.next_due += start
        while not stop.is_set():
            s = min(self.streams, key=lambda x: x.next_due)
            wait = s.next_due - time.time()
            if wait > 0:
                time.sleep(wait)
            t = time.time()
            size = s.publish(t)
            s.times.append(t)
            s.costs.append(time.time() - t)
            s.sizes.append(size)
            s.next_due += s.period
            now = time.time()
            if s.next_due < now - s.period:
                behind = int((now - s.next_due) / s.period)
                s.skipped += behind
                s.next_due += behind * s.period

    def save(self) -> None:
        """Write the stats file (if one was asked for)."""
        if not self.stats_file:
            return
        arrays: dict[str, np.ndarray] = {
            "cmd_t": np.asarray(self.cmd_t, np.float64),
            "cmd_v0": np.asarray(self.cmd_v0, np.float64),
        }
        for s in self.streams:
            arrays[f"t_{s.name}"] = np.asarray(s.times, np.float64)
            arrays[f"cost_{s.name}"] = np.asarray(s.costs, np.float64)
            arrays[f"size_{s.name}"] = np.asarray(s.sizes, np.int64)
            arrays[f"skipped_{s.name}"] = np.asarray(s.skipped)
        np.savez(self.stats_file, **arrays)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    """Publish until SIGINT/SIGTERM, then write the stats file."""
    rclpy.init(args=sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    # Both set explicitly: a process started in the background of a non-interactive shell
    # inherits SIGINT ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    robot = SyntheticRobot()
    executor = SingleThreadedExecutor()
    executor.add_node(robot)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    stop = threading.Event()
    try:
        robot.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        robot.save()
        executor.shutdown(timeout_sec=1.0)
        robot.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
