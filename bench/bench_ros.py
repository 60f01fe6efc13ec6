"""The ROS nodes over real DDS: recorder completeness and CPU, inference rate and latency.

Every measurement starts real processes (``python -m il_ros.<node>`` and the synthetic robot
``bench/_ros_synthetic_robot.py``) talking over Fast DDS in a ROS domain of their own (a
random id in 1..101 on which discovery sees no other node, localhost-only discovery), and
prints one JSON line per run, then one line with the median over ``--repeats`` runs.

1. ``recorder_raw`` / ``recorder_compressed``: the synthetic robot publishes three 640x480
   cameras at 30 Hz (``sensor_msgs/Image`` rgb8, or ``CompressedImage`` JPEG q90 encoded per
   frame with OpenCV), a 7-joint ``JointState`` at 100 Hz and a 7-value command at 30 Hz;
   the recorder (``config/bench_3cam_{raw,compressed}_mapping.yaml``: cameras resized to
   96x96) records one episode of ``--duration`` seconds at 30 Hz. Reported: the episode
   metadata's ``recording`` summary (complete fraction, gap ticks, measured rate, per-stream
   received/late/stale/dropped estimate), messages published by the robot in the same window
   (so ``lost`` = published - received, +-1 at the window edges), receive delays (receive
   time - header stamp, from the dataset's ``receive_delay`` extras; the stamp is taken before
   the robot encodes a frame, so JPEG encoding counts in it), the recorder's diagnostics and
   the CPU use of the recorder and of the robot (``/proc/<pid>/stat`` utime + stime over the
   recording's wall time, in % of one core). ``recorder_raw_reliable`` is ``recorder_raw``
   with the recorder's ``reliable_sensors: true`` (its default subscribes best-effort).
2. ``inference_<trigger>``: the inference node (``config/bench_joint_mlp_mapping.yaml``, 100
   Hz) runs a BC MLP (256x256, built with ``make_policy``, weights random except one path
   that makes the first action value echo the first joint position exactly; the forward pass
   costs the same). The robot publishes ``JointState`` at 100 Hz with a sequence number in
   that position and logs every command it receives, on one clock: observation-to-command
   latency = command receive time - publish time of the observation it echoes. Also the
   achieved command rate and the jitter of command arrivals seen by the robot, and the node's
   own ``~/status`` diagnostics (rate, tick jitter, inference and obs-to-command latency,
   tick cost). Timer-driven ticks always; event-driven ticks (``trigger``) only if the
   inference node declares that parameter.
3. ``inference_diffusion_timer`` (issue 5): the inference node at 50 Hz
   (``config/bench_joint_diffusion_mapping.yaml``) running a diffusion policy with the
   package's CPU-sized defaults, 16-action chunks, 5 executed per chunk (10 Hz inference),
   10 DDIM steps, ``inference_mode: auto`` (asynchronous, inference started ahead of the
   queue). Reported: command rate, the gaps of 1.5 periods or more between commands as the
   robot receives them, and the node's starved ticks (a tick with no planned action) and
   missed ticks over the window.
4. ``inference_onnx`` (issue 9): the echo MLP of 2., exported with ``il-core export`` to
   ONNX, run by the inference node in a Python where ``import torch`` fails (a blocking
   ``torch`` package first on ``PYTHONPATH``), beside the same policy as a torch ``.pt`` in
   the same repeat (``inference_torch``), both with event-driven ticks (``--event-trigger``,
   so that obs-to-command measures the runtime, not the phase between two 100 Hz clocks),
   and the ratios ONNX / torch per repeat. Besides the figures of 2.: the node's start-up
   time (process start to its ``configured`` and ``commanding`` status events, as the bench
   receives them) and its resident memory (``VmRSS`` after the window, ``VmHWM`` peak), and
   whether torch was imported (``/proc/<pid>/maps``).
5. ``--executors default,events,multi`` runs each measurement with the nodes' own executor
   (``default``: ``single``, rclpy's ``SingleThreadedExecutor``) and, through the nodes'
   ``executor`` parameter, with rclpy's ``EventsExecutor`` or a 3-thread
   ``MultiThreadedExecutor`` instead (same node code), one after the other in each repeat,
   so each variant has its baseline in the same run (names ``...+events_executor``).

Usage: ``python bench/bench_ros.py [--repeats 3] [--duration 60] [--quick]
[--only recorder_raw,recorder_raw_reliable,recorder_compressed,inference,inference_onnx]
[--executors default,events,multi]
[--nice -10]``
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import rclpy  # noqa: E402

CAMERA_HZ, JOINT_HZ, COMMAND_HZ = 30.0, 100.0, 30.0
RAW, JPEG = "config/bench_3cam_raw_mapping.yaml", "config/bench_3cam_compressed_mapping.yaml"
#: Recorder measurements: mapping and recorder parameters beyond the defaults.
RECORDINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "recorder_raw": (RAW, {}),
    "recorder_raw_reliable": (RAW, {"reliable_sensors": True}),
    "recorder_compressed": (JPEG, {}),
}
INFERENCE_MAPPING = "config/bench_joint_mlp_mapping.yaml"
#: Issue 5: the diffusion policy at 50 Hz control, a chunk every 5 ticks (10 Hz inference).
DIFFUSION_MAPPING = "config/bench_joint_diffusion_mapping.yaml"
#: Issue 11: image policies at 50 Hz control (one JPEG camera + joints), asynchronous chunks.
CAMERA_MAPPING = "config/bench_camera_policy_mapping.yaml"
#: name -> (policy, config, inference-node parameters). ACT at LeRobot's defaults (ResNet-18
#: with frozen batch norm, dim_model 512, chunks of 100, all executed): the next chunk is
#: requested 12 ticks (240 ms) before the plan runs out, above its p99 latency here (about
#: 175 ms with the camera decoding beside it), so one chunk every 1.76 s. Diffusion with a
#: ResNet-18 backbone (group norm, spatial softmax) and the CPU-sized U-Net, 10 DDIM steps:
#: 32-action chunks, a request every 14 ticks (n_action_steps 24 - lead 10: 280 ms, against
#: a chunk latency of about 170 ms p50, 245 ms p99), so each chunk still has 8 or more
#: actions ahead when the next one arrives. ``lead_steps`` is the node's parameter
#: (``ceil(p99 latency x rate)``, see il_core/execution.py).
CAMERA_POLICIES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "inference_act": ("act", {}, {"lead_steps": 12}),
    "inference_diffusion_resnet": (
        "diffusion",
        {
            "n_obs_steps": 2,
            "horizon": 48,
            "n_action_steps": 40,
            "num_inference_steps": 10,
            "image_encoder": {"backbone": "resnet18", "norm": "group"},
        },
        {"lead_steps": 14},
    ),
}
ROBOT_MODULE = "bench._ros_synthetic_robot"
EXECUTORS = ("default", "events", "multi")


# -- environment ----------------------------------------------------------------------------


def pick_domain(candidates: int = 20, listen_s: float = 1.5) -> int:
    """A ROS domain id in 1..101 on which discovery finds no other node (localhost only)."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    ids = list(range(1, 102))
    random.shuffle(ids)
    for domain in ids[:candidates]:
        ctx = rclpy.Context()
        rclpy.init(context=ctx, domain_id=domain)
        try:
            node = rclpy.create_node("bench_domain_probe", context=ctx)
            time.sleep(listen_s)
            others = [n for n in node.get_node_names() if n != "bench_domain_probe"]
            node.destroy_node()
        finally:
            ctx.try_shutdown()
        if not others:
            return domain
    raise RuntimeError(f"no free ROS domain among {candidates} random ids")


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine, all cores (``/proc/stat``)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    hz = os.sysconf("SC_CLK_TCK")
    total = sum(v)
    return (total - v[3] - v[4]) / hz, total / hz


class CpuWindow:
    """CPU use over a measurement window: each of ``pids``, and everything else on the host.

    ``others_cores`` (cores kept busy by processes other than the measured ones and this
    bench) shows how contended the machine was while the figures were taken.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, "bench": os.getpid()}
        self.t0 = time.time()
        self.c0 = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self.m0 = machine_cpu()
        self.load0 = loadavg()

    def stop(self) -> dict[str, Any]:
        """Per-process % of one core, machine busy cores, others' cores, load averages."""
        wall = time.time() - self.t0
        c1 = {k: cpu_seconds(p) for k, p in self.pids.items()}
        busy1, total1 = machine_cpu()
        ncpu = os.cpu_count() or 1
        ours = sum(c1[k] - self.c0[k] for k in self.pids)
        busy = busy1 - self.m0[0]
        out: dict[str, Any] = {
            f"{k}_cpu_pct": round(100 * (c1[k] - self.c0[k]) / wall, 1) for k in self.pids
        }
        out["machine_busy_cores"] = round(ncpu * busy / (total1 - self.m0[1]), 2)
        out["others_busy_cores"] = max(0.0, round(ncpu * (busy - ours) / (total1 - self.m0[1]), 2))
        out["loadavg_before"] = self.load0
        out["loadavg_after"] = loadavg()
        return out


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def pct(a: Any, q: float, scale: float = 1e3, nd: int = 3) -> float | None:
    """Percentile ``q`` of ``a`` times ``scale`` (ms by default), or None when empty."""
    a = np.asarray(a, np.float64)
    return round(float(np.percentile(a, q)) * scale, nd) if a.size else None


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-key median over runs for numbers (recursively).

    Other values: the first run's if every run agrees, else the list of every run's (load
    averages, for example).
    """
    out: dict[str, Any] = {}
    for k, v in runs[0].items():
        vals = [r.get(k) for r in runs]
        if isinstance(v, dict):
            out[k] = median_of([x for x in vals if isinstance(x, dict)])
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            out[k] = v if all(x == v for x in vals) else vals
        else:
            nums = [x for x in vals if isinstance(x, (int, float)) and x is not None]
            out[k] = round(float(np.median(nums)), 4) if nums else None
    return out


class Session:
    """A probe node plus the node processes of one measurement, stopped on exit."""

    def __init__(self, name: str, executor: str = "default") -> None:
        from tests.ros_utils import RosProbe

        self.probe = RosProbe(name)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench_ros_{name}_"))
        self.executor = executor

    def start(
        self, module: str, name: str, params: dict[str, Any], env: dict[str, str] | None = None
    ) -> Any:
        """Start a node process (logs under the session's temporary directory).

        An il_ros node runs with the session's executor: ``default`` is the node's own
        (``single``), others are set by the node's ``executor`` parameter
        (``il_ros.common.make_executor``). ``env`` adds environment variables for this
        process only.
        """
        env = dict(env or {})
        if self.executor != "default" and not module.startswith("bench."):
            params = {**params, "executor": self.executor}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # start_node passes os.environ to the child
        try:
            return self.probe.start_node(
                module, params=params, node_name=name, log_path=self.tmp / f"{name}.log"
            )
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def stop(self, proc: Any) -> int:
        """SIGINT a process and wait for it."""
        from tests.ros_utils import stop_node

        return stop_node(proc, signal.SIGINT, timeout=20.0)

    def close(self, keep: bool = False) -> None:
        """Stop everything; remove the temporary directory unless ``keep``."""
        self.probe.close()
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def robot_stats(path: Path, proc: Any, rc: int | None = None) -> dict[str, np.ndarray]:
    """The synthetic robot's stats file (after it has exited with ``rc``)."""
    if not path.exists():
        from tests.ros_utils import node_log

        raise RuntimeError(
            f"synthetic robot (exit code {rc}) wrote no stats; its log:\n{node_log(proc, 8000)}"
        )
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


# -- recorder -------------------------------------------------------------------------------


def _name(base: str, executor: str) -> str:
    return base if executor == "default" else f"{base}+{executor}_executor"


def run_recorder(kind: str, duration: float, executor: str = "default") -> dict[str, Any]:
    """One recording episode of ``duration`` s; see the module docstring."""
    from diagnostic_msgs.msg import DiagnosticArray
    from std_msgs.msg import String

    from il_core.data import EpisodeDataset
    from il_core.mapping import load_mapping
    from il_core.recording import EXTRA_DELAY
    from il_ros.common import STATUS_QOS

    mapping_file, extra_params = RECORDINGS[kind]
    mapping = load_mapping(REPO_ROOT / mapping_file)
    s = Session(f"bench_{kind}", executor)
    try:
        probe = s.probe
        status = probe.subscribe("/bench_recorder/status", String, STATUS_QOS)
        diags = probe.subscribe("/diagnostics", DiagnosticArray, 10)
        stats_file = s.tmp / "robot.npz"
        robot = s.start(
            ROBOT_MODULE,
            "bench_robot",
            {
                "mapping_file": mapping_file,
                "camera_rate_hz": CAMERA_HZ,
                "joint_rate_hz": JOINT_HZ,
                "command_rate_hz": COMMAND_HZ,
                "stats_file": str(stats_file),
            },
        )
        out = s.tmp / "data"
        recorder = s.start(
            "recorder_node",
            "bench_recorder",
            {"mapping_file": mapping_file, "output_dir": str(out), **extra_params},
        )
        for src in mapping.observations:
            probe.wait_for_subscribers(src.topic, 1, 60)
            probe.wait_for_publishers(src.topic, 1, 60)
        probe.wait_for_publishers("/bench_recorder/status", 1, 60)
        time.sleep(3.0)  # let every stream flow before the episode starts
        probe.assert_alive(robot)
        probe.assert_alive(recorder)
        cpu = CpuWindow({"recorder": recorder.pid, "robot": robot.pid})
        ok, msg = probe.call_trigger("/bench_recorder/start", 10)
        if not ok:
            raise RuntimeError(f"recorder did not start: {msg}")
        t0 = time.time()
        time.sleep(duration)
        n_diag = len(diags)
        t1 = time.time()
        ok, msg = probe.call_trigger("/bench_recorder/stop", 30)
        wall = time.time() - t0
        cpu_use = cpu.stop()
        if not ok:
            raise RuntimeError(f"recorder did not save the episode: {msg}")
        probe.wait_for(
            lambda: any(json.loads(m.data)["event"] == "saved" for m, _ in status), 30, "saved"
        )
        diag = _last_recorder_diagnostics(diags[:n_diag])
        s.stop(recorder)
        robot_rc = s.stop(robot)
        rs = robot_stats(stats_file, robot, robot_rc)
        ds = EpisodeDataset(out, cache_images=False)
        ep = ds.episode(0)
        rec = ep.info.metadata["recording"]
        names = [o.key for o in mapping.observations] + ["action"]
        delays = ep.extras[EXTRA_DELAY]
        cams = [i for i, o in enumerate(mapping.observations) if o.is_image]
        joints = [i for i, o in enumerate(mapping.observations) if not o.is_image]
        streams = {}
        robot_name = {n: n for n in names}
        robot_name["action"] = "command"
        for n in names:
            st = rec["streams"][n]
            published = rs[f"t_{robot_name[n]}"]
            in_window = int(np.count_nonzero((published >= t0) & (published <= t1)))
            streams[n] = {
                "received": st["received"],
                "published_in_window": in_window,
                "lost": in_window - st["received"],
                "late": st["late"],
                "dropped_estimate": st["dropped_estimate"],
                "stale_ticks": st["stale_ticks"],
                "missing_ticks": st["missing_ticks"],
                "malformed": st["malformed"],
                "measured_rate_hz": st["measured_rate_hz"],
            }
        cam_names = [mapping.observations[i].key for i in cams]
        cam_received = sum(streams[n]["received"] for n in cam_names)
        cost = np.concatenate([rs[f"cost_{n}"] for n in cam_names])
        size = np.concatenate([rs[f"size_{n}"] for n in cam_names])
        return {
            "measurement": _name(kind, executor),
            "executor": executor,
            "recorder_params": extra_params,
            "duration_s": round(wall, 2),
            "complete_fraction": round(rec["complete_fraction"], 5),
            "ticks": rec["ticks"],
            "complete_ticks": rec["complete_ticks"],
            "gap_ticks": rec["gap_ticks"],
            "steps": ep.info.length,
            "measured_rate_hz": round(ep.info.measured_rate_hz or 0.0, 3),
            "tick_rate_mean_hz": rec["rate"]["rate_mean_hz"],
            "tick_jitter_p99_ms": round(rec["rate"]["jitter_p99_s"] * 1e3, 3),
            "missed_ticks": rec["rate"]["missed_ticks"],
            "step_dt_max_ms": round((ep.info.dt_max_s or 0.0) * 1e3, 2),
            "camera_receive_delay_ms_p50": pct(delays[:, cams], 50),
            "camera_receive_delay_ms_p99": pct(delays[:, cams], 99),
            "joint_receive_delay_ms_p50": pct(delays[:, joints], 50),
            "joint_receive_delay_ms_p99": pct(delays[:, joints], 99),
            **{k: v for k, v in cpu_use.items() if k.endswith("_cpu_pct")},
            # All of the recorder's CPU time (joint states, commands, ticks, writing
            # included) per camera frame it received: an upper bound on the cost of a frame.
            "recorder_cpu_ms_per_camera_frame": round(
                10 * cpu_use["recorder_cpu_pct"] * wall / max(1, cam_received), 3
            ),
            "robot_camera_publish_ms_p50": pct(cost, 50),
            "robot_camera_publish_ms_p99": pct(cost, 99),
            "camera_message_kb": round(float(np.median(size)) / 1e3, 1),
            "robot_skipped_camera_ticks": int(sum(int(rs[f"skipped_{n}"]) for n in cam_names)),
            "diagnostics": diag,
            "streams": streams,
            **{k: v for k, v in cpu_use.items() if not k.endswith("_cpu_pct")},
        }
    finally:
        s.close()


def _last_recorder_diagnostics(msgs: list[Any]) -> dict[str, Any]:
    """Key figures of the last recorder ``/diagnostics`` message received while recording."""
    for msg, _ in reversed(msgs):
        for st in msg.status:
            if st.name == "il_ros recorder":
                v = {kv.key: kv.value for kv in st.values}
                align = json.loads(v["alignment"])
                return {
                    "level": int.from_bytes(st.level, "little")
                    if isinstance(st.level, bytes)
                    else int(st.level),
                    "message": st.message,
                    "malformed_messages": int(v["malformed_messages"]),
                    "rejected_steps": int(v["rejected_steps"]),
                    "complete_fraction": align["complete_fraction"],
                    "gap_ticks": align["gap_ticks"],
                }
    return {}


# -- inference ------------------------------------------------------------------------------


def trigger_supported() -> bool:
    """Whether the inference node declares a ``trigger`` parameter (event-driven ticks)."""
    src = (REPO_ROOT / "il_ros" / "inference_node.py").read_text()
    return re.search(r"declare\(\s*self,\s*[\"']trigger[\"']", src) is not None


def echo_checkpoint(path: Path, hidden: tuple[int, ...] = (256, 256)) -> Path:
    """A BC MLP checkpoint for the bench mapping whose first action echoes joint 0's position.

    Weights are random (seeded) except one path through unit 0 of every layer: with identity
    normalisation (no statistics), ``action[0] = relu(relu(obs[0])) = obs[0]`` exactly for the
    non-negative sequence numbers the synthetic robot sends. The network does the same work as
    any MLP of its size.
    """
    import torch

    from il_core.checkpoint import save_checkpoint
    from il_core.mapping import load_mapping
    from il_core.policies import make_policy

    torch.manual_seed(0)
    spec = load_mapping(REPO_ROOT / INFERENCE_MAPPING).to_spec()
    policy = make_policy("bc", {"hidden_dims": list(hidden)}, spec)
    linears = [m for m in policy.head if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for lin in linears:
            lin.weight[0].zero_()
            lin.weight[0, 0] = 1.0
            lin.bias[0] = 0.0
    obs = {"joints": np.arange(14, dtype=np.float32)[None] + 41.0}
    echoed = float(policy.predict_action_chunk(obs)[0, 0])
    if echoed != 41.0:
        raise RuntimeError(f"echo policy returned {echoed}, expected 41.0")
    return save_checkpoint(path, policy)


def diffusion_checkpoint(path: Path) -> Path:
    """A diffusion checkpoint for the 50 Hz bench mapping (random, seeded weights).

    The package's CPU-sized defaults with 16-action chunks, 5 executed per chunk (a chunk
    every 0.1 s: 10 Hz inference at 50 Hz control), 2 observation steps and 10 DDIM steps.
    The cost of a chunk does not depend on what the network has learned.
    """
    import torch

    from il_core.checkpoint import save_checkpoint
    from il_core.mapping import load_mapping
    from il_core.policies import make_policy

    torch.manual_seed(0)
    spec = load_mapping(REPO_ROOT / DIFFUSION_MAPPING).to_spec()
    cfg = {"n_obs_steps": 2, "horizon": 16, "n_action_steps": 5, "num_inference_steps": 10}
    return save_checkpoint(path, make_policy("diffusion", cfg, spec))


def camera_policy_checkpoint(path: Path, name: str) -> Path:
    """A checkpoint of the image policy ``name`` of :data:`CAMERA_POLICIES` (random, seeded).

    The cost of a chunk does not depend on what the network has learned.
    """
    import torch

    from il_core.checkpoint import save_checkpoint
    from il_core.mapping import load_mapping
    from il_core.policies import make_policy

    torch.manual_seed(0)
    spec = load_mapping(REPO_ROOT / CAMERA_MAPPING).to_spec()
    policy, cfg, _ = CAMERA_POLICIES[name]
    return save_checkpoint(path, make_policy(policy, cfg, spec))


def run_inference(
    trigger: str,
    checkpoint: Path,
    duration: float,
    executor: str = "default",
    *,
    mapping: str = INFERENCE_MAPPING,
    rate_hz: float = 100.0,
    label: str = "inference",
    echo: bool = True,
    block_torch: bool = False,
    node_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One inference run of ``duration`` s; see the module docstring.

    ``block_torch``: the node runs in a Python where ``import torch`` fails (for ONNX files).

    ``echo``: the checkpoint echoes the observation's sequence number (``echo_checkpoint``),
    so observation-to-command latencies can be measured; otherwise only the command stream's
    timing and the node's own diagnostics are reported.
    """
    from std_msgs.msg import String

    from il_ros.common import STATUS_QOS

    s = Session(f"bench_{label}_{trigger}", executor)
    period = 1.0 / rate_hz
    try:
        probe = s.probe
        status = probe.subscribe("/bench_inference/status", String, STATUS_QOS)
        stats_file = s.tmp / "robot.npz"
        robot = s.start(
            ROBOT_MODULE,
            "bench_robot",
            {
                "mapping_file": mapping,
                "joint_rate_hz": JOINT_HZ,
                "listen_commands": True,
                "stats_file": str(stats_file),
            },
        )
        params: dict[str, Any] = {
            "mapping_file": mapping,
            "checkpoint": str(checkpoint),
            "auto_activate": True,
            "inference_mode": "auto",
            "num_threads": 1,
        }
        params.update(node_params or {})
        if trigger != "timer":
            params["trigger"] = trigger
        env = {}
        if block_torch:
            blocker = s.tmp / "no_torch"
            for pkg in ("torch", "torchvision"):
                (blocker / pkg).mkdir(parents=True)
                (blocker / pkg / "__init__.py").write_text(
                    f"raise ImportError('{pkg} is blocked: this node must run without it')\n"
                )
            env["PYTHONPATH"] = f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
        started = time.time()  # the node's log stamps and the robot's clock are wall time
        node = s.start("inference_node", "bench_inference", params, env)

        def events(name: str) -> list[dict[str, Any]]:
            return [e for e in (json.loads(m.data) for m, _ in status) if e["event"] == name]

        probe.wait_for(lambda: events("commanding"), 90, "the inference node commanding")
        time.sleep(3.0)  # steady state
        probe.assert_alive(robot)
        cpu = CpuWindow({"node": node.pid, "robot": robot.pid})
        before = (events("diagnostics") or [{}])[-1]  # cumulative counters at the start
        t0 = time.time()
        time.sleep(duration)
        t1 = time.time()
        cpu_use = cpu.stop()
        wall = t1 - t0
        memory = process_memory(node.pid)
        time.sleep(1.5)  # one more diagnostics period, covering the window's end
        diag = [e for e in events("diagnostics")]
        safe_events = [e for e in events("safe_stop")]
        s.stop(node)
        robot_rc = s.stop(robot)
        rs = robot_stats(stats_file, robot, robot_rc)
        startup = startup_times(s.tmp / "bench_inference.log", started, rs["cmd_t"])
    finally:
        s.close()
    seq_t = rs["t_joints"]  # publish time of sequence number i + 1
    cmd_t, cmd_v = rs["cmd_t"], rs["cmd_v0"]
    win = (cmd_t >= t0) & (cmd_t <= t1)
    ct, cv = cmd_t[win], cmd_v[win]
    intervals = np.diff(ct)
    echo_figures: dict[str, Any] = {}
    if echo:
        safe = cv <= 0  # the safe command is zero; sequence numbers start at 1
        seq = cv[~safe].astype(np.int64)
        latency = ct[~safe] - seq_t[seq - 1]
        first, last = seq.min(), seq.max()
        acted = np.unique(seq)
        # Next-command latency: for each observation published in the window, the time
        # until the robot receives the next command (whichever observation that command
        # used).
        pub = seq_t[(seq_t >= t0) & (seq_t <= t1 - 0.05)]
        nxt = np.searchsorted(ct, pub)
        ok = nxt < ct.size
        reaction = ct[nxt[ok]] - pub[ok]
        echo_figures = {
            "obs_to_command_ms_p50": pct(latency, 50),
            "obs_to_command_ms_p99": pct(latency, 99),
            "obs_to_command_ms_max": pct(latency, 100),
            "next_command_after_obs_ms_p50": pct(reaction, 50),
            "next_command_after_obs_ms_p99": pct(reaction, 99),
            "commands_reusing_an_observation": int(seq.size - acted.size),
            "observations_never_acted_on": int(last - first + 1 - acted.size),
            "safe_commands": int(np.count_nonzero(safe)),
        }
    d = diag[-1] if diag else {}
    rate = d.get("rate", {})
    return {
        "measurement": _name(f"{label}_{trigger}", executor),
        "trigger": trigger,
        "executor": executor,
        "control_rate_hz": rate_hz,
        "node_params": node_params or {},
        "duration_s": round(wall, 2),
        "commands": int(ct.size),
        "command_rate_hz": round(ct.size / wall, 3),
        "command_rate_error_pct": round(100 * (ct.size / wall / rate_hz - 1), 3),
        "command_interval_jitter_ms_p99": pct(np.abs(intervals - period), 99),
        "command_interval_max_ms": pct(intervals, 100),
        # A control tick missed as the robot sees it: a gap of 1.5 periods or more between
        # two commands.
        "command_gaps_over_1.5_periods": int(np.count_nonzero(intervals > 1.5 * period)),
        **echo_figures,
        "safe_stop_events": len(safe_events),
        "safe_stop_reasons": sorted({str(e.get("reason")) for e in safe_events}),
        **startup,
        **memory,
        **{k: v for k, v in cpu_use.items() if k.endswith("_cpu_pct")},
        "node_cpu_ms_per_command": round(
            10 * cpu_use["node_cpu_pct"] * wall / max(1, int(ct.size)), 3
        ),
        "node_diagnostics": {
            "rate_mean_hz": rate.get("rate_mean_hz"),
            "rate_median_hz": rate.get("rate_median_hz"),
            "jitter_p99_ms": None
            if rate.get("jitter_p99_s") is None
            else round(rate["jitter_p99_s"] * 1e3, 3),
            "missed_ticks": rate.get("missed_ticks"),
            "inference_ms_p50": d.get("inference_ms_p50"),
            "inference_ms_p99": d.get("inference_ms_p99"),
            "obs_to_command_ms_p50": d.get("obs_to_command_ms_p50"),
            "obs_to_command_ms_p99": d.get("obs_to_command_ms_p99"),
            "tick_cost_ms_p99": d.get("tick_cost_ms_p99"),
            "safe_stops": d.get("safe_stops"),
            "starved_ticks": d.get("starved_ticks"),
            # The node's counters over the measured window (diagnostics come once a second,
            # so the window is widened by at most a second at each end).
            "starved_ticks_in_window": _delta(d, before, "starved_ticks"),
            "inferences_in_window": _delta(d, before, "inferences"),
            "missed_ticks_in_window": _delta(rate, before.get("rate", {}), "missed_ticks"),
        },
        **{k: v for k, v in cpu_use.items() if not k.endswith("_cpu_pct")},
    }


def startup_times(log: Path, started: float, command_times: np.ndarray) -> dict[str, Any]:
    """Seconds from process start to ``configured`` (its log line's stamp) and first command.

    Both on the wall clock: rclpy stamps log lines with it, the robot stamps the commands it
    receives with it. Not the bench's receive time of the node's status topic, which would
    include the DDS discovery between the new node and the bench.
    """
    m = re.search(r"\[INFO\] \[(\d+\.\d+)\] \[bench_inference\]: configured:", log.read_text())
    return {
        "startup_to_configured_s": round(float(m.group(1)) - started, 3) if m else None,
        "startup_to_first_command_s": round(float(command_times[0]) - started, 3)
        if command_times.size
        else None,
    }


def process_memory(pid: int) -> dict[str, Any]:
    """Resident memory of a process now and at its peak (MB), and whether torch is loaded."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(rest.split()[0]) / 1024  # kB -> MB
    with open(f"/proc/{pid}/maps") as f:
        torch_loaded = any("libtorch" in line for line in f)
    return {
        "node_rss_mb": round(fields["VmRSS"], 1),
        "node_peak_rss_mb": round(fields["VmHWM"], 1),
        "node_loaded_libtorch": torch_loaded,
    }


def onnx_export(checkpoint: Path, out: Path) -> Path:
    """What ``il-core export`` does to a checkpoint: ONNX, checked against torch."""
    from il_core.export import export_checkpoint

    export_checkpoint(checkpoint, out, "onnx", check=True)
    return out


def _get(run: dict[str, Any], key: str) -> Any:
    """``run[key]``, or ``run["node_diagnostics"][key]`` for ``node:key``."""
    if key.startswith("node:"):
        return (run.get("node_diagnostics") or {}).get(key[5:])
    return run.get(key)


def onnx_vs_torch(results: dict[str, list[dict[str, Any]]], trigger: str) -> dict[str, Any]:
    """Per-repeat ratios ONNX / torch (same repeat, so same machine load), then medians."""
    keys = (
        "node_peak_rss_mb",
        "node_rss_mb",
        "startup_to_configured_s",
        "startup_to_first_command_s",
        "obs_to_command_ms_p50",
        "obs_to_command_ms_p99",
        "node_cpu_ms_per_command",
        "node:inference_ms_p50",
        "node:inference_ms_p99",
    )
    pairs = list(
        zip(
            results[f"inference_torch_{trigger}"],
            results[f"inference_onnx_{trigger}"],
            strict=True,
        )
    )
    out: dict[str, Any] = {
        "measurement": "inference_onnx_vs_torch",
        "trigger": trigger,
        "repeats": len(pairs),
    }
    for k in keys:
        ratios = [
            _get(o, k) / _get(t, k) for t, o in pairs if _get(t, k) and _get(o, k) is not None
        ]
        out[f"{k.removeprefix('node:')}_ratio_median"] = (
            round(float(np.median(ratios)), 3) if ratios else None
        )
    return out


def _delta(after: dict[str, Any], before: dict[str, Any], key: str) -> int | None:
    if after.get(key) is None:
        return None
    return int(after[key]) - int(before.get(key) or 0)


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    """Run the measurements and print JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per run")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 repeat of 8 s")
    ap.add_argument(
        "--only",
        default=",".join([*RECORDINGS, "inference", "inference_diffusion", "inference_onnx"]),
        help="comma-separated subset of "
        + ", ".join(
            [*RECORDINGS, "inference", "inference_diffusion", "inference_onnx", *CAMERA_POLICIES]
        )
        + " (the image policies of issue 11 run only when named)",
    )
    ap.add_argument(
        "--event-trigger",
        default="joints",
        help="value of the inference node's trigger parameter for event-driven ticks",
    )
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the bench and every process it starts at this nice value (e.g. -10; needs "
        "root): a diagnostic of how much a contended machine costs, not the headline figures",
    )
    ap.add_argument(
        "--executors",
        default="default",
        help="comma-separated rclpy executors to run the nodes with, each measured in turn: "
        "default (the nodes' own SingleThreadedExecutor), events (rclpy.experimental."
        "EventsExecutor), multi (MultiThreadedExecutor, 3 threads)",
    )
    args = ap.parse_args()
    executors = [x.strip() for x in args.executors.split(",") if x.strip()]
    bad = sorted(set(executors) - set(EXECUTORS))
    if bad:
        ap.error(f"unknown executors {bad}; choose from {list(EXECUTORS)}")
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by the node processes
    if args.quick:
        args.repeats, args.duration = 1, 8.0
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    domain = pick_domain()
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
    header = {
        "measurement": "environment",
        "ros_domain_id": domain,
        "cpus": os.cpu_count(),
        "loadavg": loadavg(),
        "repeats": args.repeats,
        "duration_s": args.duration,
        "trigger_supported": trigger_supported(),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "executors": executors,
    }
    print(json.dumps(header), flush=True)
    plan: list[tuple[str, Any]] = []
    for kind in RECORDINGS:
        if kind in only:
            for ex in executors:
                fn = functools.partial(run_recorder, kind, args.duration, ex)
                plan.append((_name(kind, ex), fn))
    tmp = Path(tempfile.mkdtemp(prefix="bench_ros_ckpt_"))
    try:
        if "inference" in only:
            ckpt = echo_checkpoint(tmp / "policy.pt")
            triggers = ["timer"] + ([args.event_trigger] if trigger_supported() else [])
            for trig in triggers:
                for ex in executors:
                    fn = functools.partial(run_inference, trig, ckpt, args.duration, ex)
                    plan.append((_name(f"inference_{trig}", ex), fn))
            if not trigger_supported():
                print(
                    json.dumps(
                        {
                            "measurement": "inference_event",
                            "skipped": "il_ros/inference_node.py declares no 'trigger' "
                            "parameter: timer-driven ticks only",
                        }
                    ),
                    flush=True,
                )
        if "inference_diffusion" in only:
            dckpt = diffusion_checkpoint(tmp / "diffusion.pt")
            for ex in executors:
                fn = functools.partial(
                    run_inference,
                    "timer",
                    dckpt,
                    args.duration,
                    ex,
                    mapping=DIFFUSION_MAPPING,
                    rate_hz=50.0,
                    label="inference_diffusion",
                    echo=False,
                )
                plan.append((_name("inference_diffusion_timer", ex), fn))
        for cam_label in CAMERA_POLICIES:
            if cam_label not in only:
                continue
            cckpt = camera_policy_checkpoint(tmp / f"{cam_label}.pt", cam_label)
            for ex in executors:
                fn = functools.partial(
                    run_inference,
                    "timer",
                    cckpt,
                    args.duration,
                    ex,
                    mapping=CAMERA_MAPPING,
                    rate_hz=50.0,
                    label=cam_label,
                    echo=False,
                    node_params=CAMERA_POLICIES[cam_label][2],
                )
                plan.append((_name(f"{cam_label}_timer", ex), fn))
        if "inference_onnx" in only:
            # The same policy as a torch checkpoint and as ONNX with torch blocked, one after
            # the other in every repeat: each figure has its baseline in the same run.
            # Event-driven ticks where the node has them: with a timer, obs-to-command is set
            # by the phase between the robot's and the node's 100 Hz clocks (uniform over
            # one period, a different offset in every run), not by the runtime.
            trig = args.event_trigger if trigger_supported() else "timer"
            pt = echo_checkpoint(tmp / "echo.pt")
            onnx = onnx_export(pt, tmp / "echo.onnx")
            for label, path, block in (
                ("inference_torch", pt, False),
                ("inference_onnx", onnx, True),
            ):
                fn = functools.partial(
                    run_inference, trig, path, args.duration, label=label, block_torch=block
                )
                plan.append((f"{label}_{trig}", fn))
        results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in plan}
        # Interleave repeats (raw, compressed, inference, raw, ...) so that a burst of load
        # from other jobs does not fall on every run of one measurement.
        for rep in range(args.repeats):
            for name, fn in plan:
                r = fn()
                r["repeat"], r["nice"] = rep, args.nice
                results[name].append(r)
                print(json.dumps(r), flush=True)
        for runs in results.values():
            summary = median_of(runs)
            summary["repeat"] = f"median of {len(runs)}"
            print(json.dumps(summary), flush=True)
        if "inference_onnx" in only:
            print(json.dumps(onnx_vs_torch(results, trig)), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
