"""The observation input of every node that acts on or records a robot mapping.

:class:`ObservationInputs` owns what the recorder, inference and DAgger nodes each need to
read a mapping's streams: one subscription per stream (best-effort sensor QoS unless told
otherwise), a callback that only converts and caches (``il_ros.conversions`` into an
``il_core.alignment.TickAligner``; a malformed message is counted and logged, never
raised), and the wiring check of every topic (:class:`il_ros.wiring.TopicWatch`). The node
samples it on its own clock (:meth:`ObservationInputs.sample`) and destroys it on lifecycle
cleanup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from il_core.alignment import AlignedTick, StreamConfig, TickAligner
from il_core.mapping import RobotMapping
from il_ros.common import declare, sensor_qos, stamp_now
from il_ros.conversions import make_observation_decoder, message_class
from il_ros.wiring import Endpoint, TopicWatch


def declare_input_parameters(node: Any, *, lifecycle: bool) -> dict[str, Any]:
    """Declare the parameters every node built on :class:`ObservationInputs` shares.

    ``mapping_file``, ``reliable_sensors`` and ``diagnostics_period_s``; for a lifecycle
    node also ``auto_activate``, and there ``mapping_file`` may change between cleanup and
    configure (it is read on configure), where a plain node reads it once at start-up.

    Returns:
        ``{name: value}`` as declared (from the command line or a parameter file).
    """
    mapping_text = "robot mapping YAML (topics <-> keys)"
    if lifecycle:
        mapping_text += ", read on configure: set it between cleanup and configure to switch"
    values = {
        "mapping_file": declare(node, "mapping_file", "", mapping_text, read_only=not lifecycle),
        "reliable_sensors": declare(
            node,
            "reliable_sensors",
            False,
            "subscribe observation topics RELIABLE instead of BEST_EFFORT",
        ),
        "diagnostics_period_s": declare(
            node,
            "diagnostics_period_s",
            1.0,
            "diagnostics publish period",
            valid_range=(0.05, 60.0),
        ),
    }
    if lifecycle:
        values["auto_activate"] = declare(
            node,
            "auto_activate",
            False,
            "configure and activate at start-up (no lifecycle manager needed)",
            read_only=True,
        )
    return values


#: What a decoder returns: the value and the header stamp (None when unstamped).
Decoded = tuple[Any, "float | None"]


@dataclass(frozen=True)
class ExtraStream:
    """A stream beyond the mapping's observations (the recorder's command stream).

    Attributes:
        name: Stream name in the aligner (must not collide with an observation key).
        topic: Topic to subscribe.
        type: Message type, ``pkg/msg/Type``.
        decode: ``msg -> (value, stamp or None)``; raises ValueError-like errors on bad input.
        max_age_s: A tick is complete only if this stream's sample is at most this old.
        qos: Subscription QoS (default: the observations' sensor QoS).
        what: How the stream is named in wiring reports.
    """

    name: str
    topic: str
    type: str
    decode: Callable[[Any], Decoded]
    max_age_s: float
    qos: Any = None
    what: str = "stream"


class ObservationInputs:
    """Subscriptions, alignment and wiring checks of a mapping's streams.

    Args:
        node: The node that owns the subscriptions.
        mapping: The robot mapping (its observations, in key order, become streams).
        watch: The node's wiring watch; every subscribed topic is added to it.
        rate_hz: Nominal tick rate, for the aligner's rate report (default: the mapping's).
        reliable: Subscribe observations RELIABLE instead of BEST_EFFORT.
        extra: More streams after the observations.
        on_message: Called with the stream name after each cached message (the inference
            node's event-driven trigger); runs in the subscription callback.

    Attributes:
        aligner: The :class:`TickAligner` over all streams (observations first).
        malformed: Messages that could not be converted, since construction.
    """

    def __init__(
        self,
        node: Any,
        mapping: RobotMapping,
        watch: TopicWatch,
        *,
        rate_hz: float | None = None,
        reliable: bool = False,
        extra: Sequence[ExtraStream] = (),
        on_message: Callable[[str], None] | None = None,
    ) -> None:
        self.node = node
        qos = sensor_qos(reliable)
        streams = [
            ExtraStream(
                src.key,
                src.topic,
                src.type,
                make_observation_decoder(src),
                src.max_age_s,
                qos,
                f"observation {src.key!r}",
            )
            for src in mapping.observations
        ]
        streams += list(extra)
        self.aligner = TickAligner(
            [StreamConfig(s.name, s.max_age_s) for s in streams],
            rate_hz=rate_hz or mapping.control_rate_hz,
        )
        self.malformed = 0
        self._on_message = on_message
        self._subscriptions = []
        for s in streams:
            self._subscriptions.append(
                node.create_subscription(
                    message_class(s.type), s.topic, self._callback(s), s.qos or qos
                )
            )
            # The resolved name: a relative topic in the mapping lives in the node's namespace.
            topic = self._subscriptions[-1].topic_name
            watch.add(Endpoint(topic, s.type, "subscribe", s.what))

    @property
    def names(self) -> tuple[str, ...]:
        """Stream names in order (observation keys, then extra streams)."""
        return self.aligner.names

    def _callback(self, stream: ExtraStream) -> Callable[[Any], None]:
        name, decode, node = stream.name, stream.decode, self.node

        def callback(msg: Any) -> None:
            received = stamp_now(node)
            try:
                value, stamp = decode(msg)
            except (ValueError, TypeError, IndexError, AttributeError, KeyError) as e:
                self.malformed += 1
                self.aligner.count_malformed(name)
                node.get_logger().warning(
                    f"malformed message on {stream.topic} ({stream.what}; "
                    f"{self.malformed} so far): {e}",
                    throttle_duration_sec=2.0,
                )
                return
            self.aligner.put(name, value, stamp, received)
            if self._on_message is not None:
                self._on_message(name)

        return callback

    def sample(self, t: float) -> AlignedTick:
        """Every stream's newest sample at or before ``t`` (see :meth:`TickAligner.sample`)."""
        return self.aligner.sample(t)

    def destroy(self) -> None:
        """Destroy the subscriptions (lifecycle cleanup)."""
        for sub in self._subscriptions:
            self.node.destroy_subscription(sub)
        self._subscriptions.clear()
