"""Inference node (lifecycle): runs a trained policy at control rate on the robot.

- ``configure`` loads the checkpoint (``il_core.load_policy``) and refuses it, with an error
  naming each difference, when the robot mapping stored in it does not match this node's
  mapping (keys, message types, joints, shapes, command; topic names may differ).
- ``activate`` starts the control timer; ``deactivate`` stops it and commands the safe stop;
  ``shutdown`` commands the safe stop too.
- Sensor callbacks only convert and cache (``il_core.alignment.TickAligner``). Each control
  tick takes the newest observation of every stream, hands it to
  ``il_core.execution.PolicyExecutor`` (the class ``il-core eval`` uses) and publishes the
  action, clamped to the spec's bounds. In asynchronous mode (default) the model runs in the
  executor's worker thread, started ahead of the chunk running out, so a tick never waits on
  the model.
- Safe stop: when any observation is missing or older than its ``max_age_s``, when the
  policy raises, or when no action is planned yet, the tick publishes the mapping's safe
  command (zero, or hold the observed joint positions) and says why (log, ``~/status``,
  ``/diagnostics``).
- ``~/reload`` (``std_srvs/Trigger``) loads the ``checkpoint`` parameter's file again (set it
  first with ``ros2 param set``) and swaps the policy without restarting: the DAgger loop's
  next round.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.task import Future
from std_msgs.msg import String
from std_srvs.srv import Trigger

from il_core.alignment import StreamConfig, TickAligner
from il_core.checkpoint import CheckpointError, load_policy
from il_core.config import ConfigError
from il_core.execution import PolicyExecutor
from il_core.mapping import RobotMapping, mapping_differences, mapping_of_spec
from il_core.policies import Policy
from il_ros.common import (
    COMMAND_QOS,
    STATUS_QOS,
    declare,
    diagnostic_array,
    load_node_mapping,
    safe_command,
    sensor_qos,
    spin_node,
    stamp_now,
    stream_callback,
)
from il_ros.conversions import encode_command, make_observation_decoder, message_class


def check_policy_mapping(policy: Policy, mapping: RobotMapping, where: str) -> None:
    """Refuse a policy trained with another robot mapping.

    Raises:
        CheckpointError: naming the checkpoint and every difference.
    """
    try:
        trained = mapping_of_spec(policy.spec)
    except ConfigError as e:
        raise CheckpointError(f"{where}: stored robot mapping is invalid: {e}") from None
    if trained is not None:
        problems = mapping_differences(trained, mapping)
    else:  # trained on data not recorded through ROS: the spec must still match
        problems = policy.spec.compatible_with(mapping.to_spec())
    if problems:
        raise CheckpointError(
            f"{where}: checkpoint does not match this robot's mapping: " + "; ".join(problems)
        )


class InferenceNode(LifecycleNode):
    """Runs a policy at control rate; see the module docstring."""

    def __init__(self, node_name: str = "inference", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare(self, "checkpoint", "", "policy.pt to load on configure and on ~/reload")
        declare(self, "mapping_file", "", "robot mapping YAML (topics <-> keys)", read_only=True)
        declare(
            self,
            "command_topic",
            "",
            "publish commands here instead of the mapping's "
            "command topic (the DAgger mux listens to the policy on its own topic)",
            read_only=True,
        )
        declare(
            self,
            "inference_mode",
            "auto",
            "async: the model runs in a worker thread ahead of need, a tick never waits; "
            "sync: inline in the tick (lowest latency for fast one-step policies); "
            "auto: async for chunked policies (horizon > 1), sync otherwise",
            read_only=True,
        )
        declare(
            self,
            "lead_steps",
            1,
            "start the next inference this many ticks before the "
            "chunk runs out (about p99 latency x control rate)",
            valid_range=(0, 1000),
        )
        declare(
            self,
            "n_action_steps",
            0,
            "actions executed per chunk; 0 keeps the policy's",
            valid_range=(0, 1000),
        )
        declare(
            self,
            "temporal_ensemble_coeff",
            -1.0,
            "ACT temporal ensembling weight decay: -1 keeps the checkpoint's setting, "
            "another negative value disables, >= 0 overrides",
            valid_range=(-10.0, 10.0),
        )
        declare(self, "device", "cpu", "torch device for the policy", read_only=True)
        declare(
            self,
            "num_threads",
            1,
            "torch intra-op threads (keep cores free for the robot's other processes)",
            valid_range=(1, 64),
            read_only=True,
        )
        declare(self, "reliable_sensors", False, "subscribe observations RELIABLE")
        declare(
            self,
            "diagnostics_period_s",
            1.0,
            "diagnostics publish period",
            valid_range=(0.05, 60.0),
        )
        declare(
            self,
            "auto_activate",
            False,
            "configure and activate at start-up (no lifecycle manager needed)",
            read_only=True,
        )
        declare(
            self,
            "trigger",
            "",
            "observation key whose arrival runs a control tick (event-driven, lowest "
            "observation-to-command latency, e.g. joint states from ros2_control); empty: a "
            "timer at the mapping's control rate. A watchdog timer still commands the safe stop "
            "when the trigger stream goes silent",
            read_only=True,
        )
        self.mapping: RobotMapping | None = None
        self.policy: Policy | None = None
        self._tick_lock = threading.Lock()
        self._active = False
        self._last_tick = 0.0
        self.runner: PolicyExecutor | None = None
        self.aligner: TickAligner | None = None
        self._timer = None
        self._diag_timer = None
        self._subs: list[Any] = []
        self._lock = threading.Lock()
        self.safe_stops = 0
        self.safe_reason = "inactive"
        self._in_safe = True
        self.errors = 0
        self.malformed = 0
        self._tick_costs: list[float] = []
        self._obs_to_cmd: list[float] = []
        self._oldest_obs: list[float] = []
        self.cmd_pub = None
        self.status_pub = self.create_publisher(String, "~/status", STATUS_QOS)
        if self.get_parameter("auto_activate").value:
            # After construction, from the executor, so that spinning has begun.
            self._auto = self.create_timer(0.0, self._auto_activate)

    def _auto_activate(self) -> None:
        self.destroy_timer(self._auto)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # -- lifecycle -----------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the mapping and checkpoint; create subscriptions and publishers."""
        p = self.get_parameter
        try:
            self.mapping = load_node_mapping(p("mapping_file").value)[1]
            torch.set_num_threads(int(p("num_threads").value))
            self.policy = self._load(p("checkpoint").value)
            coeff = float(p("temporal_ensemble_coeff").value)
            self.runner = PolicyExecutor(
                self.policy,
                int(p("n_action_steps").value) or None,
                temporal_ensemble_coeff=(
                    coeff if coeff >= 0 else "policy" if coeff == -1.0 else None
                ),
                asynchronous=self._asynchronous(p("inference_mode").value, self.policy),
                lead_steps=int(p("lead_steps").value),
            )
        except (CheckpointError, ConfigError, OSError, ValueError) as e:
            self.get_logger().error(f"configure failed: {e}")
            self._status({"event": "configure_failed", "error": str(e)})
            return TransitionCallbackReturn.FAILURE
        streams = [StreamConfig(o.key, o.max_age_s) for o in self.mapping.observations]
        self.aligner = TickAligner(streams, rate_hz=self.mapping.control_rate_hz)
        group = ReentrantCallbackGroup()
        qos = sensor_qos(bool(p("reliable_sensors").value))
        trigger = p("trigger").value
        if trigger and trigger not in [o.key for o in self.mapping.observations]:
            self.get_logger().error(
                f"configure failed: parameter 'trigger' {trigger!r} is not "
                f"an observation key of {p('mapping_file').value}"
            )
            return TransitionCallbackReturn.FAILURE
        for src in self.mapping.observations:
            cache_cb = stream_callback(
                self, self.aligner, src.key, make_observation_decoder(src), self._count_malformed
            )
            self._subs.append(
                self.create_subscription(
                    message_class(src.type),
                    src.topic,
                    self._triggering(cache_cb) if src.key == trigger else cache_cb,
                    qos,
                    callback_group=group,
                )
            )
        sink = self.mapping.action
        topic = p("command_topic").value or sink.topic
        self.cmd_pub = self.create_publisher(message_class(sink.type), topic, COMMAND_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(Trigger, "~/reload", self._on_reload)
        self._diag_timer = self.create_timer(
            float(p("diagnostics_period_s").value), self._publish_diagnostics
        )
        self.get_logger().info(
            f"configured: policy {self.policy.name} from {p('checkpoint').value}, "
            f"commands on {topic} at {self.mapping.control_rate_hz:g} Hz"
        )
        self._status({"event": "configured", "policy": self.policy.name})
        return TransitionCallbackReturn.SUCCESS

    @staticmethod
    def _asynchronous(mode: str, policy: Policy) -> bool:
        if mode not in ("auto", "sync", "async"):
            raise ConfigError(
                f"parameter 'inference_mode' must be auto, sync or async, got {mode!r}"
            )
        return mode == "async" or (mode == "auto" and policy.horizon > 1)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start commanding at the control rate."""
        assert self.runner is not None and self.mapping is not None
        self.runner.reset()
        self.aligner.reset_counters()
        event_driven = bool(self.get_parameter("trigger").value)
        self._active = True
        self._timer = self.create_timer(
            1.0 / self.mapping.control_rate_hz,
            self._watchdog if event_driven else self._tick,
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        self._status({"event": "activated"})
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the timer and command the safe stop."""
        self._stop_timer()
        self._safe_stop("deactivated")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the policy and the worker thread."""
        self._stop_timer()
        if self.runner is not None:
            self.runner.close()
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs.clear()
        self.policy = self.runner = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Command the safe stop on the way out."""
        self.shutdown()
        return TransitionCallbackReturn.SUCCESS

    def shutdown(self) -> None:
        """Safe stop and worker shutdown (also called on Ctrl-C)."""
        self._stop_timer()
        if self.cmd_pub is not None:
            self._safe_stop("shutdown")
        if self.runner is not None:
            self.runner.close()

    def _triggering(self, cache_cb: Any) -> Any:
        """Wrap a stream callback so that each message also runs a control tick."""

        def callback(msg: Any) -> None:
            cache_cb(msg)
            if self._active:
                self._tick()

        return callback

    def _watchdog(self) -> None:
        """Event-driven mode: tick (and so stop safely) if the trigger stream went silent."""
        if time.perf_counter() - self._last_tick > 1.5 / self.mapping.control_rate_hz:
            self._tick()

    def _stop_timer(self) -> None:
        self._active = False
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    # -- policy --------------------------------------------------------------------------

    def _load(self, path: str) -> Policy:
        if not path:
            raise CheckpointError("parameter 'checkpoint' is empty: give a policy.pt")
        policy = load_policy(path, device=self.get_parameter("device").value)
        check_policy_mapping(policy, self.mapping, path)
        return policy

    async def _on_reload(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        # Loading takes from milliseconds to seconds (torch, a large checkpoint): it runs on
        # its own thread while this coroutine waits, so the control ticks go on meanwhile
        # (the node spins in a single-threaded executor, see il_ros.common.spin_node).
        path = self.get_parameter("checkpoint").value
        loaded: Future = Future()

        def load() -> None:
            try:
                loaded.set_result(self._load(path))
            except Exception as e:  # reported to the caller below, never kills the node
                loaded.set_exception(e)

        threading.Thread(target=load, name="il_ros-reload", daemon=True).start()
        try:
            policy = await loaded
        except Exception as e:
            response.success, response.message = False, str(e)
            self.get_logger().error(f"reload refused, keeping the current policy: {e}")
            return response
        with self._lock:
            self.policy = policy
            if self.runner is not None:
                self.runner.set_policy(policy)
        self._status({"event": "reloaded", "checkpoint": path})
        self.get_logger().info(f"reloaded policy from {path}")
        response.success, response.message = True, f"reloaded {path}"
        return response

    # -- control loop --------------------------------------------------------------------

    def _count_malformed(self) -> None:
        self.malformed += 1

    def _tick(self) -> None:
        # Ticks come from the timer, or from trigger messages and the watchdog; never two at
        # once (a tick that finds another running is skipped, not queued).
        if not self._tick_lock.acquire(blocking=False):
            return
        try:
            self._tick_locked()
        finally:
            self._tick_lock.release()

    def _tick_locked(self) -> None:
        t0 = self._last_tick = time.perf_counter()
        now = stamp_now(self)
        tick = self.aligner.sample(now)
        if not tick.complete:
            self._safe_stop("observation " + tick.describe())
            return
        try:
            with self._lock:
                action = self.runner.step(tick.values)
        except Exception as e:  # a robot node must not die on a model error: stop safely
            self.errors += 1
            self._safe_stop(f"policy error: {type(e).__name__}: {e}")
            return
        if action is None:
            self._safe_stop("waiting for the first action chunk")
            return
        action = self.policy.spec.action.clip(np.asarray(action, np.float32))
        self.cmd_pub.publish(
            encode_command(self.mapping.action, action, now, 1.0 / self.mapping.control_rate_hz)
        )
        if self._in_safe:
            self._in_safe = False
            self._status({"event": "commanding"})
        cost = time.perf_counter() - t0
        self._tick_costs.append(cost)
        # Latency from the newest observation to its command, and the age of the oldest
        # observation acted on (both include this tick's compute).
        self._obs_to_cmd.append(min(tick.ages.values()) + cost)
        self._oldest_obs.append(max(tick.ages.values()) + cost)
        if len(self._tick_costs) > 2000:
            del self._tick_costs[:1000], self._obs_to_cmd[:1000], self._oldest_obs[:1000]

    def _safe_stop(self, reason: str) -> None:
        """Publish the safe command; count and report a new safe stop once per episode."""
        if self.runner is not None and reason != "waiting for the first action chunk":
            self.runner.reset()  # a gap breaks the observation history
        self.cmd_pub.publish(
            encode_command(
                self.mapping.action,
                safe_command(self.mapping.action, self.aligner),
                stamp_now(self),
            )
        )
        if not self._in_safe or reason != self.safe_reason:
            if not self._in_safe:
                self.safe_stops += 1
            self._in_safe = True
            self.safe_reason = reason
            self.get_logger().warning(f"safe stop: {reason}", throttle_duration_sec=1.0)
            self._status({"event": "safe_stop", "reason": reason})

    # -- reporting -----------------------------------------------------------------------

    def _status(self, event: dict[str, Any]) -> None:
        if getattr(self, "status_pub", None) is not None:
            self.status_pub.publish(String(data=json.dumps(event, default=str)))

    def diagnostics(self) -> dict[str, Any]:
        """Achieved rate, jitter, inference latency, observation age, safe stops."""
        rate = self.aligner.rate.stats().as_dict() if self.aligner else {}
        lat = np.asarray(self.runner.stats.latencies_s) if self.runner else np.zeros(0)
        o2c = np.asarray(self._obs_to_cmd)

        def pct(a: np.ndarray, q: float) -> float | None:
            return round(float(np.percentile(a, q)) * 1e3, 3) if a.size else None

        ex = self.runner.stats if self.runner else None
        return {
            "rate": rate,
            "inference_ms_p50": pct(lat, 50),
            "inference_ms_p99": pct(lat, 99),
            "obs_to_command_ms_p50": pct(o2c, 50),
            "obs_to_command_ms_p99": pct(o2c, 99),
            "oldest_obs_ms_p99": pct(np.asarray(self._oldest_obs), 99),
            "tick_cost_ms_p99": pct(np.asarray(self._tick_costs), 99),
            "safe_stops": self.safe_stops,
            "safe_reason": self.safe_reason,
            "in_safe_stop": self._in_safe,
            "policy_errors": self.errors,
            "malformed_messages": self.malformed,
            "starved_ticks": ex.starved_ticks if ex else 0,
            "inferences": ex.inferences if ex else 0,
            "alignment": self.aligner.summary() if self.aligner else {},
        }

    def _publish_diagnostics(self) -> None:
        d = self.diagnostics()
        level = DiagnosticStatus.WARN if self._in_safe else DiagnosticStatus.OK
        msg = f"safe stop: {self.safe_reason}" if self._in_safe else "commanding"
        self.diag_pub.publish(diagnostic_array(self, "il_ros inference", level, msg, d))
        self._status({"event": "diagnostics", **{k: v for k, v in d.items() if k != "alignment"}})


def main(args: list[str] | None = None) -> int:
    """``ros2 run il_ros inference --ros-args --params-file config/inference.yaml``."""
    return spin_node(InferenceNode, args, on_exit=lambda n: n.shutdown())


if __name__ == "__main__":
    raise SystemExit(main())
