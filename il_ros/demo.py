"""The full imitation loop in simulation over ROS 2: ``python -m il_ros.demo``.

1. The simulated robot (``sim_robot``), the scripted teleop standing in for the human
   (``scripted_teleop``) and the ``recorder`` run as separate processes talking over DDS;
   the recorder writes N demonstrations.
2. ``il_core.train`` trains behaviour cloning on them (``config/bc_point_reach.yaml``).
3. The simulated robot and the ``inference`` node run the policy on new seeds; this
   process listens to the robot's status topic and prints the success rate.

All traffic stays on this machine in a ROS domain of its own (``ROS_DOMAIN_ID`` is picked at
random unless set). What a robot user runs instead is ``ros2 launch il_ros
sim_record.launch.py`` / ``sim_policy.launch.py``; this script does the same without the
``launch`` package, which is not on PyPI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: The simulated PointReach robot's mapping (sim_robot and the scripted teleop default to it).
MAPPING = "config/point_reach_mapping.yaml"


def _start(module: str, params_file: str, log_dir: Path, **params: Any) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-u",
        "-m",
        f"il_ros.{module}",
        "--ros-args",
        "--params-file",
        str(REPO / params_file),
    ]
    for k, v in params.items():
        value = str(v).lower() if isinstance(v, bool) else str(v)
        cmd += ["-p", f"{k}:={value}"]
    log = open(log_dir / f"{module}.log", "wb")  # the child keeps it; closed at its exit
    return subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, stdin=subprocess.DEVNULL
    )


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in reversed(procs):
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


def _count_episodes(dataset: Path) -> int:
    ep_dir = dataset / "episodes"
    return len(list(ep_dir.glob("episode_*"))) if ep_dir.is_dir() else 0


def _check_alive(procs: list[subprocess.Popen], log_dir: Path) -> None:
    for p in procs:
        if p.poll() is not None:
            module = p.args[3] if isinstance(p.args, list) else p.args  # [python, -m, module..]
            raise RuntimeError(f"{module!s} exited with code {p.returncode}; see {log_dir}")


def record(out: Path, episodes: int, timeout: float) -> Path:
    """Record ``episodes`` scripted demonstrations through the recorder node."""
    data = out / "demos"
    log_dir = out / "logs_record"
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = [
        _start(
            "recorder_node",
            "config/recorder.yaml",
            log_dir,
            mapping_file=MAPPING,
            output_dir=str(data),
        ),
        _start("sim_robot_node", "config/sim_robot.yaml", log_dir, seed=0, reset_delay_s=0.3),
        _start("scripted_teleop_node", "config/scripted_teleop.yaml", log_dir),
    ]
    try:
        deadline = time.monotonic() + timeout
        last = -1
        while _count_episodes(data) < episodes:
            _check_alive(procs, log_dir)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {_count_episodes(data)} of {episodes} episodes in "
                    f"{timeout:.0f} s; see {log_dir}"
                )
            n = _count_episodes(data)
            if n != last:
                print(f"  recorded {n}/{episodes} episodes", file=sys.stderr)
                last = n
            time.sleep(0.5)
    finally:
        _stop(procs)
    return data


def drive(out: Path, checkpoint: Path, episodes: int, timeout: float) -> list[dict[str, Any]]:
    """Let the inference node drive the simulated robot; return the episodes' outcomes."""
    import rclpy
    import rclpy.executors
    from std_msgs.msg import String

    from il_ros.common import STATUS_QOS

    log_dir = out / "logs_policy"
    log_dir.mkdir(parents=True, exist_ok=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("il_ros_demo", context=ctx)
    done: list[dict[str, Any]] = []

    def on_status(msg: String) -> None:
        event = json.loads(msg.data)
        if event.get("event") == "done":
            done.append(event)

    node.create_subscription(String, "/sim_robot/status", on_status, STATUS_QOS)
    executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    procs = [
        _start("sim_robot_node", "config/sim_robot.yaml", log_dir, seed=5000, reset_delay_s=0.2),
        _start(
            "inference_node",
            "config/inference.yaml",
            log_dir,
            mapping_file=MAPPING,
            checkpoint=str(checkpoint),
            auto_activate=True,
        ),
    ]
    try:
        deadline = time.monotonic() + timeout
        while len(done) < episodes:
            executor.spin_once(timeout_sec=0.2)
            _check_alive(procs, log_dir)
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(done)} of {episodes} episodes in {timeout:.0f} s")
    finally:
        _stop(procs)
        executor.shutdown()
        node.destroy_node()
        ctx.try_shutdown()
    return done[:episodes]


def main(argv: list[str] | None = None) -> int:
    """Record, train, drive; print one JSON summary line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/ros_demo", help="output directory (replaced)")
    ap.add_argument("--episodes", type=int, default=25, help="demonstrations to record")
    ap.add_argument("--eval-episodes", type=int, default=20, help="episodes driven by the policy")
    ap.add_argument("--config", default="config/bc_point_reach.yaml", help="training config")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(102, 200) % 101 + 1))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
    out = Path(args.out)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)

    from il_core.config import load_yaml
    from il_core.train import train

    print(
        f"== 1/3 recording {args.episodes} episodes: sim_robot + scripted_teleop + recorder "
        f"(ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']})",
        file=sys.stderr,
    )
    data = record(out, args.episodes, timeout=30 + 6 * args.episodes)
    print("== 2/3 training behaviour cloning", file=sys.stderr)
    summary = train(
        [data], out / "bc", load_yaml(REPO / args.config), seed=args.seed, config_where=args.config
    )
    print(
        f"== 3/3 inference node driving the sim robot for {args.eval_episodes} episodes",
        file=sys.stderr,
    )
    outcomes = drive(
        out, Path(summary["checkpoint"]), args.eval_episodes, timeout=30 + 15 * args.eval_episodes
    )
    success = sum(bool(e.get("success")) for e in outcomes) / max(1, len(outcomes))
    result = {
        "recorded_episodes": _count_episodes(data),
        "checkpoint": summary["checkpoint"],
        "eval_episodes": len(outcomes),
        "success_rate": success,
        "mean_length": sum(e.get("length", 0) for e in outcomes) / max(1, len(outcomes)),
    }
    print(json.dumps(result))
    print(
        f"\nROS loop: {result['recorded_episodes']} demonstrations recorded over DDS, "
        f"BC policy driving the simulated robot: success {100 * success:.0f}% over "
        f"{len(outcomes)} episodes",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
