"""Wiring checks: is every topic a node uses really connected, with the type the mapping says?

ROS 2 never complains about a topic used with two different types or with nobody on the
other end: a subscription to ``/camera`` as ``Image`` while the driver publishes
``CompressedImage`` simply receives nothing, and a command published as ``JointTrajectory``
to a controller that reads ``Float64MultiArray`` moves nothing, while the recorder saves the
commands nobody received. A :class:`TopicWatch` looks at the ROS graph once a second and
reports, by topic name and with both types, on the log and in the node's ``/diagnostics``:

- a *type mismatch* (ERROR, as soon as it is seen): another node publishes or subscribes
  the topic with a different type;
- a *missing peer* (WARN, after ``grace_s``, 15 s by default, so that start-up and DDS
  discovery never warn: an inference node importing torch and loading a checkpoint while
  five other nodes started on a busy 2-core machine took 11 s to advertise its command):
  nothing publishes a topic this node reads, or nothing subscribes a command it publishes.
  The grace counts from the last check that saw the peer, so a peer that goes away (a node
  restarting; the other nodes of a launch stopping first on Ctrl-C) is reported after
  ``grace_s`` without it, not at the next check.

Each problem is logged once when it appears and once (INFO) when it is resolved, never per
check. The decision itself is the pure function :func:`endpoint_problem`, tested without a
ROS graph.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["subscribe", "publish"]
Level = Literal["error", "warn"]


@dataclass(frozen=True)
class Endpoint:
    """One topic a node uses.

    Attributes:
        topic: Fully resolved topic name (``/joint_states``).
        type: Message type, ``pkg/msg/Type``.
        role: Whether this node subscribes or publishes it.
        what: What it is for, in reports (``"observation 'front'"``, ``"command"``).
        expect_peer: Warn when, after the grace period, no peer of the matching type exists
            (a publisher for a subscription, a subscriber for a publication). False for
            optional inputs such as a deadman topic that only human teleops publish.
    """

    topic: str
    type: str
    role: Role
    what: str
    expect_peer: bool = True


@dataclass(frozen=True)
class Peer:
    """Another node's publisher or subscription on a topic.

    Attributes:
        node: Fully qualified node name (``/camera_driver``).
        kind: ``publisher`` or ``subscription``.
        type: Its message type, ``pkg/msg/Type``.
    """

    node: str
    kind: Literal["publisher", "subscription"]
    type: str


def has_peer(endpoint: Endpoint, peers: Sequence[Peer]) -> bool:
    """Whether a peer of the endpoint's type is there (a publisher for a subscription, ...)."""
    want = "publisher" if endpoint.role == "subscribe" else "subscription"
    return any(p.kind == want and p.type == endpoint.type for p in peers)


def endpoint_problem(
    endpoint: Endpoint, peers: Sequence[Peer], waited_s: float, grace_s: float
) -> tuple[Level, str] | None:
    """What is wrong with one endpoint, given the other nodes' endpoints on its topic.

    Args:
        endpoint: This node's endpoint.
        peers: Every other node's publishers and subscriptions on ``endpoint.topic``.
        waited_s: Seconds without a peer: since the endpoint was created, or since a check
            last saw its peer.
        grace_s: Seconds before a missing peer is reported.

    Returns:
        ``(level, message)``, or None when the endpoint is wired correctly.
    """
    e = endpoint
    wrong = sorted({(p.node, p.kind, p.type) for p in peers if p.type != e.type})
    if wrong:
        others = ", ".join(f"{node} {kind} {typ}" for node, kind, typ in wrong)
        return (
            "error",
            f"{e.what} topic {e.topic}: this node {'reads' if e.role == 'subscribe' else 'sends'}"
            f" {e.type}, but {others}: "
            + (
                "no message will arrive (fix the type in the mapping)"
                if e.role == "subscribe"
                else "they never receive this node's messages (fix the type in the mapping)"
            ),
        )
    if not e.expect_peer or waited_s < grace_s or has_peer(e, peers):
        return None
    if e.role == "subscribe":
        return "warn", f"{e.what} topic {e.topic}: nothing publishes it ({e.type} expected)"
    return (
        "warn",
        f"{e.what} topic {e.topic}: nothing subscribes to it as {e.type}, so nobody receives "
        "this node's messages",
    )


class TopicWatch:
    """Checks a node's endpoints against the ROS graph periodically; see the module docstring.

    Args:
        node: The node whose endpoints these are (its graph queries and logger are used).
        period_s: Seconds between checks.
        grace_s: Seconds an endpoint may lack a peer before it is reported.
    """

    def __init__(self, node: Any, period_s: float = 1.0, grace_s: float = 15.0) -> None:
        self.node = node
        self.grace_s = float(grace_s)
        self._endpoints: dict[tuple[str, Role], tuple[Endpoint, float]] = {}
        self._reported: dict[tuple[str, Role], tuple[Level, str]] = {}
        self._timer = node.create_timer(period_s, self.check)

    def add(self, endpoint: Endpoint) -> None:
        """Watch ``endpoint`` (its grace period starts now)."""
        self._endpoints[(endpoint.topic, endpoint.role)] = (endpoint, time.monotonic())

    def remove_all(self) -> None:
        """Forget every endpoint (lifecycle cleanup); current problems are dropped."""
        self._endpoints.clear()
        self._reported.clear()

    def destroy(self) -> None:
        """Stop checking."""
        self.remove_all()
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None

    @property
    def problems(self) -> list[str]:
        """Current problems, errors first, for ``/diagnostics``."""
        found = sorted(self._reported.values(), key=lambda p: (p[0] != "error", p[1]))
        return [msg for _, msg in found]

    @property
    def level(self) -> Level | None:
        """The worst current problem's level, or None."""
        levels = {lvl for lvl, _ in self._reported.values()}
        return "error" if "error" in levels else "warn" if levels else None

    def escalate(self, level: Any, message: str) -> tuple[Any, str]:
        """A node's ``/diagnostics`` level and message, raised to the wiring's if worse.

        Args:
            level: The node's own ``DiagnosticStatus`` level (``OK``, ``WARN``, ``ERROR``).
            message: The node's own status message.

        Returns:
            ``(level, message)``: a wiring error wins over anything, a wiring warning over OK.
        """
        from diagnostic_msgs.msg import DiagnosticStatus

        worst = self.level
        if worst == "error" and level != DiagnosticStatus.ERROR:
            return DiagnosticStatus.ERROR, self.problems[0]
        if worst == "warn" and level == DiagnosticStatus.OK:
            return DiagnosticStatus.WARN, self.problems[0]
        return level, message

    def _peers(self, topic: str) -> list[Peer]:
        me = (self.node.get_name(), self.node.get_namespace())
        peers = []
        sides: tuple[tuple[Literal["publisher", "subscription"], list[Any]], ...] = (
            ("publisher", self.node.get_publishers_info_by_topic(topic)),
            ("subscription", self.node.get_subscriptions_info_by_topic(topic)),
        )
        for kind, infos in sides:
            for info in infos:
                if (info.node_name, info.node_namespace) == me:
                    continue
                ns = info.node_namespace.rstrip("/")
                peers.append(Peer(f"{ns}/{info.node_name}", kind, info.topic_type))
        return peers

    def check(self) -> None:
        """One check of every endpoint; logs what changed."""
        now = time.monotonic()
        log = self.node.get_logger()
        for key, (endpoint, since) in list(self._endpoints.items()):
            try:
                peers = self._peers(endpoint.topic)
            except Exception as e:  # a graph query failing (shutdown race) is no wiring fault
                log.debug(f"graph query for {endpoint.topic} failed: {e}")
                continue
            if has_peer(endpoint, peers):
                # The grace counts from the last time the peer was there: one that goes away
                # (restarting, or the other nodes of a launch stopping first) is reported
                # only after grace_s without it, as at start-up.
                since = now
                self._endpoints[key] = (endpoint, now)
            problem = endpoint_problem(endpoint, peers, now - since, self.grace_s)
            old = self._reported.get(key)
            if problem == old:
                continue
            if problem is None:
                del self._reported[key]
                log.info(f"{endpoint.what} topic {endpoint.topic}: wiring fixed")
                continue
            self._reported[key] = problem
            level, message = problem
            # One call site per severity: rclpy refuses a call site whose severity changes.
            if level == "error":
                log.error(message)
            else:
                log.warning(message)
