"""DAgger node (lifecycle): a mux between the policy's command and the expert's (HG-DAgger).

The inference node publishes the policy's command on ``policy_topic`` (its
``command_topic`` parameter) and the teleop publishes the expert's on ``expert_topic``; this
node forwards one of them to the robot's command topic each control tick. The choice is
``il_core.intervention.InterventionGate`` (the same class the simulated DAgger loop uses):
the expert takes over while the deadman is held, or when its command departs from the
policy's by more than a threshold, and hands back on release, with hysteresis.

Every tick with fresh observations can be recorded through the crash-safe writer. The
dataset's action is an expert label only where the expert really commanded
(:func:`il_core.recording.has_expert_label`): its command is fresh and its deadman, if it
has one, is held (a scripted expert or a leader arm without a pedal always says what it
would do; a joystick teleop whose deadman is released publishes its idle zeros, which are
no label). Other steps keep the executed command as their action with ``has_expert_label``
0, and training masks them. Extras flag ``is_intervention`` and ``has_expert_label`` and
keep the ``executed_action``. ``record`` chooses ``all`` steps or only ``interventions``.
Several rounds' datasets aggregate into one training set (``il-core train --data A --data
B``); the inference node's ``~/reload`` then loads the next round's checkpoint.

Missing commands are safe: with neither the policy's nor the expert's command fresh, the
robot gets the mapping's safe command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from std_msgs.msg import Bool

from il_core.alignment import StreamCache, StreamConfig
from il_core.config import ConfigError
from il_core.data import DatasetError, DatasetWriter
from il_core.intervention import GateConfig, InterventionGate
from il_core.recording import (
    EXTRA_AGE,
    EXTRA_DELAY,
    EXTRA_EXECUTED,
    EXTRA_HAS_LABEL,
    EXTRA_INTERVENTION,
    has_expert_label,
)
from il_ros.common import (
    COMMAND_QOS,
    LATCHED_QOS,
    declare,
    diagnostic_array,
    load_node_mapping,
    publish_and_flush,
    safe_command,
    spin_node,
    stamp_now,
)
from il_ros.conversions import decode_command, encode_command, message_class
from il_ros.episodes import EpisodeSession, mapping_extras
from il_ros.inputs import ObservationInputs, declare_input_parameters
from il_ros.lifecycle import ManagedLifecycleNode
from il_ros.wiring import Endpoint, TopicWatch


class DaggerNode(ManagedLifecycleNode):
    """Expert-gated command mux and DAgger recorder; see the module docstring."""

    def __init__(self, node_name: str = "dagger", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare(
            self,
            "policy_topic",
            "/policy/cmd",
            "the policy's command (inference node command_topic)",
            read_only=True,
        )
        declare(
            self, "expert_topic", "/expert/cmd", "the expert's command (teleop)", read_only=True
        )
        declare(
            self,
            "deadman_topic",
            "/il_ros/deadman",
            "std_msgs/Bool: expert deadman held",
            read_only=True,
        )
        declare(
            self,
            "engaged_topic",
            "/il_ros/expert_engaged",
            "std_msgs/Bool published (latched) when the expert takes over or hands back",
            read_only=True,
        )
        declare(self, "gate_mode", "either", "deadman | deviation | either", read_only=True)
        declare(
            self,
            "deviation_threshold",
            0.5,
            "expert takes over when |expert - policy| exceeds this (action units)",
            valid_range=(0.0, 1e6),
            read_only=True,
        )
        declare(
            self,
            "release_threshold",
            -1.0,
            "hand back below this deviation; negative: half the threshold",
            valid_range=(-1.0, 1e6),
            read_only=True,
        )
        declare(
            self,
            "engage_ticks",
            2,
            "consecutive ticks above threshold before taking over",
            valid_range=(1, 10000),
            read_only=True,
        )
        declare(
            self,
            "release_ticks",
            5,
            "ticks the expert keeps driving after the trigger releases (hysteresis)",
            valid_range=(0, 10000),
            read_only=True,
        )
        declare(
            self,
            "command_max_age_s",
            0.25,
            "a command older than this counts as missing",
            valid_range=(0.001, 60.0),
            read_only=True,
        )
        declare(
            self, "output_dir", "il_ros_dagger", "dataset directory of this round", read_only=True
        )
        declare(
            self,
            "record",
            "all",
            "record all steps (flagged) or only interventions",
            read_only=True,
        )
        declare(
            self,
            "flush_every",
            30,
            "steps between flushes",
            valid_range=(1, 100000),
            read_only=True,
        )
        declare_input_parameters(self, lifecycle=True)
        self._timer: Any = None
        self.session: EpisodeSession | None = None
        self._engaged = False
        self._schedule_auto_activate()

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the mapping, open the round's dataset, create the gate and topics."""
        try:
            self.mapping = load_node_mapping(self._param("mapping_file"))[1]
            release = float(self._param("release_threshold"))
            self.gate = InterventionGate(
                GateConfig(
                    mode=self._param("gate_mode"),
                    deviation_threshold=float(self._param("deviation_threshold")),
                    engage_ticks=int(self._param("engage_ticks")),
                    release_ticks=int(self._param("release_ticks")),
                    release_threshold=release if release >= 0 else None,
                )
            )
            if self._param("record") not in ("all", "interventions"):
                raise ConfigError(
                    f"parameter 'record' must be all or interventions, got "
                    f"{self._param('record')!r}"
                )
            spec = self.mapping.to_spec(extras=mapping_extras(self.mapping))
            writer = DatasetWriter(
                Path(self._param("output_dir")), spec, flush_every=int(self._param("flush_every"))
            )
        except (ConfigError, DatasetError, OSError, ValueError) as e:
            self.get_logger().error(f"configure failed: {e}")
            return TransitionCallbackReturn.FAILURE
        sink = self.mapping.action
        self.action_spec = spec.action
        self.watch = TopicWatch(self)
        self.inputs = ObservationInputs(
            self, self.mapping, self.watch, reliable=bool(self._param("reliable_sensors"))
        )
        age = float(self._param("command_max_age_s"))
        self.policy_cmd = StreamCache(StreamConfig("policy", age))
        self.expert_cmd = StreamCache(StreamConfig("expert", age))
        # None until a deadman message arrives: no deadman in use (scripted expert, leader).
        self._deadman: bool | None = None
        self.session = EpisodeSession(
            self,
            writer,
            self._summary,
            on_start=self._on_episode_start,
            start_metadata={"mapping": self.mapping.to_dict(), "dagger": True},
        )
        cmd_cls = message_class(sink.type)
        subs = [
            (self._param("policy_topic"), cmd_cls, self._command_callback(self.policy_cmd)),
            (self._param("expert_topic"), cmd_cls, self._command_callback(self.expert_cmd)),
            (self._param("deadman_topic"), Bool, self._on_deadman),
        ]
        for (topic, cls, callback), what in zip(
            subs, ("policy command", "expert command", "deadman"), strict=True
        ):
            qos = LATCHED_QOS if cls is Bool else COMMAND_QOS
            sub = self.create_subscription(cls, topic, callback, qos)
            self._configured.append(sub)
            msg_type = "std_msgs/msg/Bool" if cls is Bool else sink.type
            # Only a human teleop publishes a deadman: its absence is no fault.
            self.watch.add(Endpoint(sub.topic_name, msg_type, "subscribe", what, cls is not Bool))
        self.cmd_pub = self.create_publisher(cmd_cls, sink.topic, COMMAND_QOS)
        self.watch.add(Endpoint(self.cmd_pub.topic_name, sink.type, "publish", "command"))
        self.engaged_pub = self.create_publisher(Bool, self._param("engaged_topic"), LATCHED_QOS)
        self.engaged_pub.publish(Bool(data=False))
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._configured += [
            self.cmd_pub,
            self.engaged_pub,
            self.diag_pub,
            self.create_timer(float(self._param("diagnostics_period_s")), self._diagnostics),
        ]
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start muxing at the control rate."""
        self.gate.reset()
        self._timer = self.create_timer(1.0 / self.mapping.control_rate_hz, self._tick)
        return super().on_activate(state)

    def _release_owned(self) -> None:
        """Commit an open episode and close the session (its services, topic, writer)."""
        if self.session is not None:
            self.session.close()
            self.session = None

    def _halt(self, reason: str, flush: bool = False) -> None:
        """Stop muxing and command the safe stop."""
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self.cmd_pub is not None:
            msg = encode_command(self.mapping.action, self._safe(), stamp_now(self))
            if flush:
                publish_and_flush(self.cmd_pub, msg)
            else:
                self.cmd_pub.publish(msg)

    # -- inputs --------------------------------------------------------------------------

    def _command_callback(self, cache: StreamCache) -> Any:
        sink = self.mapping.action

        def callback(msg: Any) -> None:
            now = stamp_now(self)
            try:
                value, _ = decode_command(sink, msg)
            except (ValueError, TypeError, IndexError, AttributeError) as e:
                cache.count_malformed()
                if self.inputs is not None:
                    self.inputs.malformed += 1
                self.get_logger().warning(
                    f"malformed {cache.config.name} command: {e}", throttle_duration_sec=2.0
                )
                return
            # Stamped by arrival: a command's freshness is how recently it was sent.
            cache.put(value, None, now)

        return callback

    def _on_deadman(self, msg: Bool) -> None:
        self._deadman = bool(msg.data)

    def _on_episode_start(self) -> None:
        if self.inputs is not None:
            self.inputs.aligner.reset_counters()
        self.gate.reset()

    # -- control loop --------------------------------------------------------------------

    def _fresh(self, cache: StreamCache, now: float) -> np.ndarray | None:
        sample = cache.latest_at(now)
        if sample is None or now - sample.stamp > cache.config.max_age_s:
            return None
        return sample.value

    def _safe(self) -> np.ndarray:
        return safe_command(self.mapping.action, self.inputs.aligner if self.inputs else None)

    def _tick(self) -> None:
        inputs = self.inputs
        if inputs is None:
            return  # not configured: the timer that calls this is gone
        now = stamp_now(self)
        policy = self._fresh(self.policy_cmd, now)
        expert = self._fresh(self.expert_cmd, now)
        decision = self.gate.update(policy, expert, bool(self._deadman))
        if decision.action is not None:
            executed = decision.action
            source = self.expert_cmd if decision.is_intervention else self.policy_cmd
            sample = source.latest_at(now)
            cmd_age = now - sample.stamp if sample is not None else 0.0
        else:  # nothing to execute: this node's own safe stop, made now
            executed, cmd_age = self._safe(), 0.0
        executed = self.action_spec.clip(np.asarray(executed, np.float32))
        self.cmd_pub.publish(
            encode_command(self.mapping.action, executed, now, 1.0 / self.mapping.control_rate_hz)
        )
        if decision.is_intervention != self._engaged:
            self._engaged = decision.is_intervention
            self.engaged_pub.publish(Bool(data=self._engaged))
            self.get_logger().info(
                f"expert {'takes over' if self._engaged else 'hands back'}: {decision.reason}"
            )
        tick = inputs.sample(now)
        session = self.session
        if session is None or not tick.complete:
            return
        if self._param("record") == "interventions" and not decision.is_intervention:
            return
        labelled = has_expert_label(expert is not None, self._deadman)
        label = expert if labelled and expert is not None else executed
        # Ages and receive delays: observation streams, then the command that was executed.
        keys = inputs.names
        ages = np.array([tick.ages[k] for k in keys] + [cmd_age], np.float32)
        delays = np.array([tick.receive_delays[k] for k in keys] + [0.0], np.float32)
        extras = {
            EXTRA_AGE: ages,
            EXTRA_DELAY: delays,
            EXTRA_INTERVENTION: np.array([float(decision.is_intervention)], np.float32),
            EXTRA_HAS_LABEL: np.array([float(labelled)], np.float32),
            EXTRA_EXECUTED: executed,
        }
        if session.recording:
            session.add_step(tick.values, label, now, extras)

    def _summary(self) -> dict[str, Any]:
        alignment = self.inputs.aligner.summary() if self.inputs is not None else {}
        return {**alignment, "gate": self.gate.summary()}

    def _diagnostics(self) -> None:
        watch, inputs = self.watch, self.inputs
        if watch is None or inputs is None:
            return  # not configured: the timer that calls this is gone
        s = self.gate.summary()
        level, message = watch.escalate(
            DiagnosticStatus.OK, "expert driving" if self._engaged else "policy driving"
        )
        self.diag_pub.publish(
            diagnostic_array(
                self,
                "il_ros dagger",
                level,
                message,
                {
                    "gate": s,
                    "deadman": "none" if self._deadman is None else str(self._deadman),
                    "wiring": watch.problems,
                    "malformed_messages": inputs.malformed,
                    "episodes_saved": self.session.episodes_saved if self.session else 0,
                },
            )
        )


def main(args: list[str] | None = None) -> int:
    """``ros2 run il_ros dagger --ros-args --params-file config/dagger.yaml``."""
    return spin_node(DaggerNode, args, on_exit=lambda n: n.shutdown(), name="dagger")


if __name__ == "__main__":
    raise SystemExit(main())
