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
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.task import Future
from std_msgs.msg import String
from std_srvs.srv import Trigger

from il_core.config import ConfigError
from il_core.control_loop import LoopStats, SafeStop, StopCause, percentile_ms
from il_core.execution import (
    FROM_CHECKPOINT,
    OFF,
    ExecutablePolicy,
    PolicyExecutor,
    parse_override,
)
from il_core.mapping import RobotMapping, mapping_differences, mapping_of_spec
from il_core.runtime import load_runtime_policy
from il_ros.common import (
    COMMAND_QOS,
    STATUS_QOS,
    declare,
    diagnostic_array,
    load_node_mapping,
    publish_and_flush,
    safe_command,
    spin_node,
    stamp_now,
)
from il_ros.conversions import encode_command, message_class
from il_ros.inputs import ObservationInputs, declare_input_parameters
from il_ros.lifecycle import ManagedLifecycleNode
from il_ros.wiring import Endpoint, TopicWatch


def check_policy_mapping(policy: ExecutablePolicy, mapping: RobotMapping, where: str) -> None:
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


class InferenceNode(ManagedLifecycleNode):
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
            FROM_CHECKPOINT,
            f"actions executed per chunk: an int, or '{FROM_CHECKPOINT}' for the checkpoint's",
            dynamic_typing=True,
        )
        declare(
            self,
            "temporal_ensemble_coeff",
            FROM_CHECKPOINT,
            f"ACT temporal ensembling weight decay: a number >= 0, '{OFF}', or "
            f"'{FROM_CHECKPOINT}' for the checkpoint's setting",
            dynamic_typing=True,
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
        self.policy: ExecutablePolicy | None = None
        self.policy_executor: PolicyExecutor | None = None
        self._timer: Any = None
        self._trigger_key = ""
        # Ticks come from the timer, or from trigger messages and the watchdog, and ~/reload
        # swaps the policy: all callbacks of the node's default (mutually exclusive) group,
        # so never two at once with any executor (il_ros.common.EXECUTORS), and no lock.
        self._active = False
        self._last_tick = 0.0
        self.safe = SafeStop()
        self.errors = 0
        self.loop_stats = LoopStats()
        self.status_pub = self.create_publisher(String, "~/status", STATUS_QOS)
        self._schedule_auto_activate()

    # -- lifecycle -----------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the mapping and the policy; create subscriptions, publishers, service."""
        p = self.get_parameter
        try:
            self.mapping = mapping = load_node_mapping(p("mapping_file").value)[1]
            trigger = p("trigger").value
            if trigger and trigger not in [o.key for o in mapping.observations]:
                raise ConfigError(
                    f"parameter 'trigger' {trigger!r} is not an observation key of "
                    f"{p('mapping_file').value}: choose from "
                    f"{[o.key for o in mapping.observations]}"
                )
            self.policy = self._load(p("checkpoint").value, mapping)
            n_action_steps = parse_override("n_action_steps", p("n_action_steps").value, int)
            coeff = parse_override(
                "temporal_ensemble_coeff", p("temporal_ensemble_coeff").value, float
            )
            self.policy_executor = PolicyExecutor(
                self.policy,
                n_action_steps,
                temporal_ensemble_coeff=coeff,
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
    def _asynchronous(mode: str, policy: ExecutablePolicy) -> bool:
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
        self._active = True
        self.safe.arm()
        self._timer = self.create_timer(
            1.0 / self.mapping.control_rate_hz,
            self._watchdog if self._trigger_key else self._tick,
        )
        self._status({"event": "activated"})
        return super().on_activate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything configure made: policy, worker thread, topics, service, timers."""
        result = super().on_cleanup(state)
        self._status({"event": "cleaned_up"})
        return result

    def _halt(self, reason: str, flush: bool = False) -> None:
        """Stop the control timer and command the safe stop (requested, not a fault)."""
        self._stop_timer()
        self._safe_stop(StopCause.REQUESTED, reason, flush=flush)

    def _release_owned(self) -> None:
        """Stop the inference worker thread; forget the policy."""
        if self.policy_executor is not None:
            self.policy_executor.close()
        self.policy = self.policy_executor = None

    def _on_message(self, key: str) -> None:
        """Event-driven mode: the trigger stream's message runs a control tick."""
        if key == self._trigger_key and self._active:
            self._tick()

    def _watchdog(self) -> None:
        """Event-driven mode: tick (and so stop safely) if the trigger stream went silent."""
        rate = self.mapping.control_rate_hz if self.mapping else 0.0
        if rate and time.perf_counter() - self._last_tick > 1.5 / rate:
            self._tick()

    def _stop_timer(self) -> None:
        self._active = False
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    # -- policy --------------------------------------------------------------------------

    def _load(self, path: str, mapping: RobotMapping) -> ExecutablePolicy:
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
        check_policy_mapping(policy, mapping, path)
        return policy

    async def _on_reload(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        # Loading takes from milliseconds to seconds (torch, a large checkpoint): it runs on
        # its own thread while this coroutine waits, so the control ticks go on meanwhile
        # (the coroutine resumes on the executor's thread, between two ticks).
        path = self.get_parameter("checkpoint").value
        mapping = self.mapping
        loaded: Future = Future()
        if mapping is None:  # the service exists only while configured; be sure anyway
            response.success, response.message = False, "not configured"
            return response

        def load() -> None:
            try:
                loaded.set_result(self._load(path, mapping))
            except Exception as e:  # reported to the caller below, never kills the node
                loaded.set_exception(e)

        threading.Thread(target=load, name="il_ros-reload", daemon=True).start()
        try:
            policy = await loaded
        except Exception as e:
            response.success, response.message = False, str(e)
            self.get_logger().error(f"reload refused, keeping the current policy: {e}")
            return response
        assert policy is not None  # load() gives the future a policy or an exception
        self.policy = policy  # back on the executor's thread: no tick runs meanwhile
        if self.policy_executor is not None:
            self.policy_executor.set_policy(policy)
        self._status({"event": "reloaded", "checkpoint": path})
        self.get_logger().info(f"reloaded policy from {path}")
        response.success, response.message = True, f"reloaded {path}"
        return response

    # -- control loop --------------------------------------------------------------------

    def _tick(self) -> None:
        inputs, executor, policy = self.inputs, self.policy_executor, self.policy
        mapping, cmd_pub = self.mapping, self.cmd_pub
        if inputs is None or executor is None or policy is None or mapping is None:
            return  # not configured: no timer or trigger should be left to call this
        t0 = self._last_tick = time.perf_counter()
        now = stamp_now(self)
        tick = inputs.sample(now)
        if not tick.complete:
            self._safe_stop(StopCause.OBSERVATION, "observation " + tick.describe())
            return
        try:
            action = executor.step(tick.values)
        except Exception as e:  # a robot node must not die on a model error: stop safely
            self.errors += 1
            self._safe_stop(StopCause.POLICY_ERROR, f"policy error: {type(e).__name__}: {e}")
            return
        if action is None:
            # Keep the history: the next chunk is being computed from it. Before the first
            # command this is start-up; later the model is too slow for the control rate.
            if self.safe.commanded:
                cause, reason = (
                    StopCause.STARVED,
                    "no action ready: inference is behind the control rate",
                )
            else:
                cause, reason = StopCause.STARTING, "waiting for the first action chunk"
            self._safe_stop(cause, reason, reset=False)
            return
        # Within the spec's bounds already: the policy clips its chunks (the executor's
        # contract), so the command is not clipped a second time here.
        cmd_pub.publish(encode_command(mapping.action, action, now, 1.0 / mapping.control_rate_hz))
        if self.safe.resume():
            self._status({"event": "commanding"})
        # Latency from the newest observation to its command, and the age of the oldest
        # observation acted on (both include this tick's compute).
        ages = tick.ages.values()
        self.loop_stats.record(time.perf_counter() - t0, min(ages), max(ages))

    def _safe_stop(
        self, cause: StopCause, reason: str, *, reset: bool = True, flush: bool = False
    ) -> None:
        """Publish the safe command; report a stop when it engages or its cause changes.

        Args:
            cause: Why; a fault (:attr:`StopCause.fault`) is a warning once the policy has
                commanded since activation, anything else an info line.
            reason: The cause in words, for the log, ``~/status`` and ``/diagnostics``.
            reset: Forget the observation history and the plan (a gap breaks the history).
            flush: Wait until reliable subscribers acknowledged it (the last command sent).
        """
        if reset and self.policy_executor is not None:
            self.policy_executor.reset()
        sink, cmd_pub = (self.mapping.action if self.mapping else None), self.cmd_pub
        if sink is None or cmd_pub is None:
            return  # not configured: there is no command topic to stop on
        aligner = self.inputs.aligner if self.inputs else None
        msg = encode_command(sink, safe_command(sink, aligner), stamp_now(self))
        if flush:
            publish_and_flush(cmd_pub, msg)
        else:
            cmd_pub.publish(msg)
        report = self.safe.stop(cause, reason)
        if report is not None:
            if report.warn:
                self.get_logger().warning(f"safe stop: {reason}", throttle_duration_sec=1.0)
            else:  # requested, or waiting for streams since activation: no fault
                self.get_logger().info(f"safe command: {reason}")
            self._status({"event": "safe_stop", "reason": reason, "cause": cause.value})

    # -- reporting -----------------------------------------------------------------------

    def _status(self, event: dict[str, Any]) -> None:
        if getattr(self, "status_pub", None) is not None:
            self.status_pub.publish(String(data=json.dumps(event, default=str)))

    def diagnostics(self) -> dict[str, Any]:
        """Achieved rate, jitter, inference latency, observation age, safe stops, wiring."""
        aligner = self.inputs.aligner if self.inputs else None
        rate = aligner.rate.stats().as_dict() if aligner else {}
        ex = self.policy_executor.stats if self.policy_executor else None
        lat = list(ex.latencies_s) if ex else []
        return {
            "rate": rate,
            "inference_ms_p50": percentile_ms(lat, 50),
            "inference_ms_p99": percentile_ms(lat, 99),
            **self.loop_stats.summary(),
            "safe_stops": self.safe.count,
            "safe_reason": self.safe.reason,
            "safe_cause": self.safe.cause.value,
            "in_safe_stop": self.safe.engaged,
            "policy_errors": self.errors,
            "malformed_messages": self.inputs.malformed if self.inputs else 0,
            "starved_ticks": ex.starved_ticks if ex else 0,
            "inferences": ex.inferences if ex else 0,
            "wiring": self.watch.problems if self.watch else [],
            "alignment": aligner.summary() if aligner else {},
        }

    def _publish_diagnostics(self) -> None:
        d = self.diagnostics()
        level = DiagnosticStatus.WARN if self.safe.engaged else DiagnosticStatus.OK
        msg = f"safe stop: {self.safe.reason}" if self.safe.engaged else "commanding"
        if self.watch is not None:
            level, msg = self.watch.escalate(level, msg)
        self.diag_pub.publish(diagnostic_array(self, "il_ros inference", level, msg, d))
        self._status({"event": "diagnostics", **{k: v for k, v in d.items() if k != "alignment"}})


def main(args: list[str] | None = None) -> int:
    """``ros2 run il_ros inference --ros-args --params-file config/inference.yaml``."""
    return spin_node(InferenceNode, args, on_exit=lambda n: n.shutdown(), name="inference")


if __name__ == "__main__":
    raise SystemExit(main())
