"""Run an il_ros node with another rclpy executor than the one it ships with (bench only).

``bench/bench_ros.py --executors ...`` starts ``python -m bench._executor_swap_node`` with
``IL_ROS_BENCH_NODE`` (the node's module, e.g. ``il_ros.recorder_node``) and
``IL_ROS_BENCH_EXECUTOR`` in the environment:

- ``events``: ``rclpy.experimental.EventsExecutor`` (C++ event queue, one thread; Jazzy and
  later);
- ``multi``: ``rclpy.executors.MultiThreadedExecutor`` with 3 threads (what the nodes used
  before they moved to the single-threaded executor, see ``il_ros.common.spin_node``).

Only the executor that ``il_ros.common.spin_node`` creates changes; the node's code, its
callback groups and parameters stay the same, so the difference measured is the executor's.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import il_ros.common


def _executor(kind: str) -> Any:
    if kind == "events":
        from rclpy.experimental import EventsExecutor

        return lambda: EventsExecutor()
    if kind == "multi":
        from rclpy.executors import MultiThreadedExecutor

        return lambda: MultiThreadedExecutor(num_threads=3)
    raise ValueError(f"IL_ROS_BENCH_EXECUTOR must be events or multi, got {kind!r}")


def main() -> int:
    """Patch ``il_ros.common``'s executor class, then run the node's ``main``."""
    il_ros.common.SingleThreadedExecutor = _executor(os.environ["IL_ROS_BENCH_EXECUTOR"])
    node = importlib.import_module(os.environ["IL_ROS_BENCH_NODE"])
    return node.main()


if __name__ == "__main__":
    raise SystemExit(main())
