"""Inference node (lifecycle): runs a trained policy at control rate on the robot.

- ``configure`` loads the policy file (``il_core.runtime.load_runtime_policy``: a ``.pt``
  training checkpoint on torch, or an ``il-core export`` file; an ``.onnx`` one runs on ONNX
  Runtime and this node then never imports torch) and refuses it, with an error naming each
  difference, when the robot mapping stored in it does not match this node's mapping (keys,
  message types, joints, shapes, command; topic names may differ).
- ``activate`` starts the control timer; ``deactivate`` stops it and commands the safe stop;
  ``shutdown`` commands the safe stop too; ``cleanup`` releases everything ``configure``
  made (subscriptions, publishers, service, timers, the policy), so configure -> cleanup ->
  configure leaves one of each.
- Sensor callbacks only convert and cache (:class:`il_ros.inputs.ObservationInputs`), and
  every topic's wiring is checked (:class:`il_ros.wiring.TopicWatch`). Each control
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
from typing import TYPE_CHECKING, Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.task import Future
from std_msgs.msg import String
from std_srvs.srv import Trigger

from il_core.config import ConfigError
from il_core.execution import PolicyExecutor
from il_core.mapping import RobotMapping, mapping_differences, mapping_of_spec
from il_core.runtime import load_runtime_policy
from il_ros.common import (
    COMMAND_QOS,
    STATUS_QOS,
    declare,
    destroy_entities,
    diagnostic_array,
    load_node_mapping,
    publish_and_flush,
    safe_command,
    spin_node,
    stamp_now,
)
from il_ros.conversions import encode_command, message_class
from il_ros.inputs import ObservationInputs, declare_input_parameters
from il_ros.wiring import Endpoint, TopicWatch

if TYPE_CHECKING:  # a Policy or an il_core.runtime.ExportedPolicy; torch only for the former
    from il_core.policies import Policy


def check_policy_mapping(policy: Policy, mapping: RobotMapping, where: str) -> None:
    """Refuse a policy trained with another robot mapping.

    Raises:
        ConfigError: naming the policy file and every difference.
    """
    try:
        trained = mapping_of_spec(policy.spec)
    except ConfigError as e:
        raise ConfigError(f"{where}: stored robot mapping is invalid: {e}") from None
    if trained is not None:
        problems = mapping_differences(trained, mapping)
    else:  # trained on data not recorded through ROS: the spec must still match
        problems = policy.spec.compatible_with(mapping.to_spec())
    if problems:
        raise ConfigError(
            f"{where}: checkpoint does not match this robot's mapping: " + "; ".join(problems)
        )


class InferenceNode(LifecycleNode):
    """Runs a policy at control rate; see the module docstring."""

    def __init__(self, node_name: str = "inference", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare(
            self,
            "checkpoint",
            "",
            "policy file to load on configure and on ~/reload: policy.pt from il-core train "
            "(needs torch), or an il-core export (.onnx runs on ONNX Runtime without torch)",
        )
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
        declare(
            self,
            "device",
            "cpu",
            "torch device for a .pt policy (cpu, cuda, cuda:1); exports run on the CPU",
            read_only=True,
        )
        declare(
            self,
            "num_threads",
            1,
            "intra-op threads of torch or ONNX Runtime (keep cores free for the robot's other "
            "processes)",
            valid_range=(1, 64),
            read_only=True,
        )
        declare_input_parameters(self, lifecycle=True)
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
        self.policy_executor: PolicyExecutor | None = None
        self.inputs: ObservationInputs | None = None
        self.watch: TopicWatch | None = None
        self.cmd_pub: Any = None
        self._configured: list[Any] = []  # publishers, services, timers made by configure
        self._timer: Any = None
        self._trigger_key = ""
        # Ticks come from the timer, or from trigger messages and the watchdog; never two at
        # once (a tick that finds another running is skipped, not queued).
        self._tick_lock = threading.Lock()
        # Guards the policy swap of ~/reload against a tick using the executor.
        self._policy_lock = threading.Lock()
        self._active = False
        self._commanded = False  # a policy command was sent since activation
        self._last_tick = 0.0
        self.safe_stops = 0
        self.safe_reason = "inactive"
        self._in_safe = True
        self.errors = 0
        self._tick_costs: list[float] = []
        self._obs_to_cmd: list[float] = []
        self._oldest_obs: list[float] = []
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
        """Load the mapping and the policy; create subscriptions, publishers, service."""
        p = self.get_parameter
        try:
            self.mapping = load_node_mapping(p("mapping_file").value)[1]
            trigger = p("trigger").value
            if trigger and trigger not in [o.key for o in self.mapping.observations]:
                raise ConfigError(
                    f"parameter 'trigger' {trigger!r} is not an observation key of "
                    f"{p('mapping_file').value}: choose from "
                    f"{[o.key for o in self.mapping.observations]}"
                )
            self.policy = self._load(p("checkpoint").value)
            coeff = float(p("temporal_ensemble_coeff").value)
            self.policy_executor = PolicyExecutor(
                self.policy,
                int(p("n_action_steps").value) or None,
                temporal_ensemble_coeff=(
                    coeff if coeff >= 0 else "policy" if coeff == -1.0 else None
                ),
                asynchronous=self._asynchronous(p("inference_mode").value, self.policy),
                lead_steps=int(p("lead_steps").value),
            )
        except (ConfigError, OSError, ValueError) as e:  # CheckpointError, ExportError too
            self.get_logger().error(f"configure failed: {e}")
            self._status({"event": "configure_failed", "error": str(e)})
            self.policy = self.policy_executor = None
            return TransitionCallbackReturn.FAILURE
        self._trigger_key = trigger
        self.watch = TopicWatch(self)
        self.inputs = ObservationInputs(
            self,
            self.mapping,
            self.watch,
            reliable=bool(p("reliable_sensors").value),
            on_message=self._on_message if trigger else None,
        )
        sink = self.mapping.action
        topic = p("command_topic").value or sink.topic
        self.cmd_pub = self.create_publisher(message_class(sink.type), topic, COMMAND_QOS)
        self.watch.add(Endpoint(self.cmd_pub.topic_name, sink.type, "publish", "command"))
        self._configured = [
            self.cmd_pub,
            self.create_publisher(DiagnosticArray, "/diagnostics", 10),
            self.create_service(Trigger, "~/reload", self._on_reload),
            self.create_timer(float(p("diagnostics_period_s").value), self._publish_diagnostics),
        ]
        self.diag_pub = self._configured[1]
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
        assert (
            self.policy_executor is not None
            and self.mapping is not None
            and self.inputs is not None
        )
        self.policy_executor.reset()
        self.inputs.aligner.reset_counters()
        self._active = self._in_safe = True
        self._commanded = False
        self._timer = self.create_timer(
            1.0 / self.mapping.control_rate_hz,
            self._watchdog if self._trigger_key else self._tick,
        )
        self._status({"event": "activated"})
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the timer and command the safe stop."""
        self._stop_timer()
        self._safe_stop("deactivated", fault=False)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything configure made: policy, worker thread, topics, service, timers."""
        self._release()
        self._status({"event": "cleaned_up"})
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Command the safe stop on the way out, then release what configure made."""
        self.shutdown()
        return TransitionCallbackReturn.SUCCESS

    def shutdown(self) -> None:
        """Safe stop, then release the worker and what configure made (also Ctrl-C).

        The safe command is delivered before this returns.
        """
        self._stop_timer()
        if self.cmd_pub is not None:
            self._safe_stop("shutdown", fault=False, flush=True)
        self._release()

    def _release(self) -> None:
        self._stop_timer()
        if self.policy_executor is not None:
            self.policy_executor.close()
        if self.inputs is not None:
            self.inputs.destroy()
        if self.watch is not None:
            self.watch.destroy()
        destroy_entities(self, self._configured)
        self.policy = self.policy_executor = self.inputs = self.watch = self.cmd_pub = None

    def _on_message(self, key: str) -> None:
        """Event-driven mode: the trigger stream's message runs a control tick."""
        if key == self._trigger_key and self._active:
            self._tick()

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
            raise ConfigError(
                "parameter 'checkpoint' is empty: give a policy file (policy.pt from il-core "
                "train, or an .onnx from il-core export)"
            )
        policy = load_runtime_policy(
            path,
            device=self.get_parameter("device").value,
            num_threads=int(self.get_parameter("num_threads").value),
        )
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
        with self._policy_lock:
            self.policy = policy
            if self.policy_executor is not None:
                self.policy_executor.set_policy(policy)
        self._status({"event": "reloaded", "checkpoint": path})
        self.get_logger().info(f"reloaded policy from {path}")
        response.success, response.message = True, f"reloaded {path}"
        return response

    # -- control loop --------------------------------------------------------------------

    def _tick(self) -> None:
        if not self._tick_lock.acquire(blocking=False):
            return
        try:
            self._tick_locked()
        finally:
            self._tick_lock.release()

    def _tick_locked(self) -> None:
        t0 = self._last_tick = time.perf_counter()
        now = stamp_now(self)
        tick = self.inputs.sample(now)
        if not tick.complete:
            self._safe_stop("observation " + tick.describe())
            return
        try:
            with self._policy_lock:
                action = self.policy_executor.step(tick.values)
        except Exception as e:  # a robot node must not die on a model error: stop safely
            self.errors += 1
            self._safe_stop(f"policy error: {type(e).__name__}: {e}")
            return
        if action is None:
            # Keep the history: the next chunk is being computed from it. Before the first
            # command this is start-up; later the model is too slow for the control rate.
            if self._commanded:
                self._safe_stop("no action ready: inference behind the control rate", reset=False)
            else:
                self._safe_stop("waiting for the first action chunk", fault=False, reset=False)
            return
        action = self.policy.spec.action.clip(np.asarray(action, np.float32))
        self.cmd_pub.publish(
            encode_command(self.mapping.action, action, now, 1.0 / self.mapping.control_rate_hz)
        )
        if self._in_safe:
            self._in_safe = False
            self._commanded = True
            self._status({"event": "commanding"})
        cost = time.perf_counter() - t0
        self._tick_costs.append(cost)
        # Latency from the newest observation to its command, and the age of the oldest
        # observation acted on (both include this tick's compute).
        self._obs_to_cmd.append(min(tick.ages.values()) + cost)
        self._oldest_obs.append(max(tick.ages.values()) + cost)
        if len(self._tick_costs) > 2000:
            del self._tick_costs[:1000], self._obs_to_cmd[:1000], self._oldest_obs[:1000]

    def _safe_stop(
        self, reason: str, *, fault: bool = True, reset: bool = True, flush: bool = False
    ) -> None:
        """Publish the safe command; count and report a new safe stop once per episode.

        Args:
            reason: Why, for the log, ``~/status`` and ``/diagnostics``.
            fault: Something went wrong (a stale stream, a model error): a warning once the
                policy has commanded. False for requested stops (deactivate, shutdown).
            reset: Forget the observation history and the plan (a gap breaks the history).
            flush: Wait until reliable subscribers acknowledged it (the last command sent).
        """
        if reset and self.policy_executor is not None:
            self.policy_executor.reset()
        msg = encode_command(
            self.mapping.action,
            safe_command(self.mapping.action, self.inputs.aligner if self.inputs else None),
            stamp_now(self),
        )
        if flush:
            publish_and_flush(self.cmd_pub, msg)
        else:
            self.cmd_pub.publish(msg)
        if not self._in_safe or reason != self.safe_reason:
            if not self._in_safe:
                self.safe_stops += 1
            self._in_safe = True
            self.safe_reason = reason
            if fault and self._commanded:
                self.get_logger().warning(f"safe stop: {reason}", throttle_duration_sec=1.0)
            else:  # requested, or waiting for streams since activation: no fault
                self.get_logger().info(f"safe command: {reason}")
            self._status({"event": "safe_stop", "reason": reason})

    # -- reporting -----------------------------------------------------------------------

    def _status(self, event: dict[str, Any]) -> None:
        if getattr(self, "status_pub", None) is not None:
            self.status_pub.publish(String(data=json.dumps(event, default=str)))

    def diagnostics(self) -> dict[str, Any]:
        """Achieved rate, jitter, inference latency, observation age, safe stops, wiring."""
        aligner = self.inputs.aligner if self.inputs else None
        rate = aligner.rate.stats().as_dict() if aligner else {}
        ex = self.policy_executor.stats if self.policy_executor else None
        lat = np.asarray(ex.latencies_s) if ex else np.zeros(0)
        o2c = np.asarray(self._obs_to_cmd)

        def pct(a: np.ndarray, q: float) -> float | None:
            return round(float(np.percentile(a, q)) * 1e3, 3) if a.size else None

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
            "malformed_messages": self.inputs.malformed if self.inputs else 0,
            "starved_ticks": ex.starved_ticks if ex else 0,
            "inferences": ex.inferences if ex else 0,
            "wiring": self.watch.problems if self.watch else [],
            "alignment": aligner.summary() if aligner else {},
        }

    def _publish_diagnostics(self) -> None:
        d = self.diagnostics()
        level = DiagnosticStatus.WARN if self._in_safe else DiagnosticStatus.OK
        msg = f"safe stop: {self.safe_reason}" if self._in_safe else "commanding"
        if self.watch is not None:
            level, msg = self.watch.escalate(level, msg)
        self.diag_pub.publish(diagnostic_array(self, "il_ros inference", level, msg, d))
        self._status({"event": "diagnostics", **{k: v for k, v in d.items() if k != "alignment"}})


def main(args: list[str] | None = None) -> int:
    """``ros2 run il_ros inference --ros-args --params-file config/inference.yaml``."""
    return spin_node(InferenceNode, args, on_exit=lambda n: n.shutdown(), name="inference")


if __name__ == "__main__":
    raise SystemExit(main())
