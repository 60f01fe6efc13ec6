"""The bookkeeping of a control loop that commands a robot: safe stops and loop statistics.

Pure and framework-free, so the inference node's reporting rules are tested without ROS:

- :class:`SafeStop` is the safe-stop state. Every stop has a :class:`StopCause`, which says
  whether it is a fault (a stale stream, a model error, a model too slow for the control
  rate) or requested (deactivate, shutdown) or expected (waiting for the first chunk); the
  node publishes the safe command on every stopped tick, but reports a stop only when the
  state changes: it engages, or its cause changes. The reason's text is for people only.
- :class:`LoopStats` keeps bounded windows of the tick cost and of the observation-to-command
  latency and reports their percentiles in milliseconds.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LoopStats", "SafeStop", "StopCause", "StopReport", "percentile_ms"]


def percentile_ms(values_s: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile of durations in seconds, in milliseconds (None if empty)."""
    a = np.fromiter(values_s, dtype=np.float64)
    return round(float(np.percentile(a, q)) * 1e3, 3) if a.size else None


class StopCause(enum.Enum):
    """Why the loop commands its safe action instead of the policy's."""

    #: Configured or activated, not commanding yet.
    INACTIVE = "inactive"
    #: Activated and waiting for the first action chunk (an asynchronous policy's start-up).
    STARTING = "starting"
    #: An observation stream is missing, stale or malformed.
    OBSERVATION = "observation"
    #: The policy raised.
    POLICY_ERROR = "policy_error"
    #: No action was ready: inference is behind the control rate.
    STARVED = "starved"
    #: Asked for: the node was deactivated or shut down.
    REQUESTED = "requested"

    @property
    def fault(self) -> bool:
        """A fault is something gone wrong; the others are states the loop passes through."""
        return self in (StopCause.OBSERVATION, StopCause.POLICY_ERROR, StopCause.STARVED)


@dataclass(frozen=True)
class StopReport:
    """A change of the safe-stop state, to log and publish once.

    Attributes:
        cause: Why the loop stopped.
        reason: The same, in words, with the detail (which stream, which error).
        warn: Log it as a warning: a fault after the policy has commanded since activation
            (before that, missing streams are the start-up, not a failure).
    """

    cause: StopCause
    reason: str
    warn: bool


@dataclass
class SafeStop:
    """Safe-stop state of a control loop.

    Attributes:
        engaged: The loop commands its safe action.
        cause: Why, while engaged (the last cause afterwards).
        reason: The cause in words, with its detail.
        count: Stops engaged since construction (each new stop once, however long it lasts).
        commanded: The policy has commanded since :meth:`arm`.
    """

    engaged: bool = True
    cause: StopCause = StopCause.INACTIVE
    reason: str = "inactive"
    count: int = 0
    commanded: bool = False

    def arm(self) -> None:
        """Activation: safe until the policy's first command, which is then not a resume."""
        self.engaged, self.commanded = True, False
        self.cause, self.reason = StopCause.INACTIVE, "activated"

    def stop(self, cause: StopCause, reason: str) -> StopReport | None:
        """Engage the safe stop (or stay engaged) for ``cause``.

        Returns:
            A report when the stop is new or its cause changed; ``None`` when it goes on.
        """
        changed = not self.engaged or cause is not self.cause
        if not self.engaged:
            self.count += 1
        self.engaged, self.reason = True, reason
        self.cause = cause
        if not changed:
            return None
        return StopReport(cause, reason, warn=cause.fault and self.commanded)

    def resume(self) -> bool:
        """The policy commands again; True when that ends a stop (report it once)."""
        was = self.engaged
        self.engaged, self.commanded = False, True
        return was


@dataclass
class LoopStats:
    """Bounded windows of the control loop's timing, in seconds.

    Attributes:
        window: How many recent ticks the percentiles cover.
    """

    window: int = 2000
    tick_cost: deque[float] = field(init=False)
    obs_to_command: deque[float] = field(init=False)
    oldest_obs: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self.tick_cost = deque(maxlen=self.window)
        self.obs_to_command = deque(maxlen=self.window)
        self.oldest_obs = deque(maxlen=self.window)

    def record(self, cost_s: float, newest_age_s: float, oldest_age_s: float) -> None:
        """One commanded tick.

        Args:
            cost_s: The tick's own compute time.
            newest_age_s: Age of the newest observation acted on when the tick began; with
                ``cost_s`` it gives the observation-to-command latency.
            oldest_age_s: Age of the oldest observation acted on when the tick began.
        """
        self.tick_cost.append(cost_s)
        self.obs_to_command.append(newest_age_s + cost_s)
        self.oldest_obs.append(oldest_age_s + cost_s)

    def summary(self) -> dict[str, float | None]:
        """Percentiles in milliseconds (None before the first commanded tick)."""
        return {
            "obs_to_command_ms_p50": percentile_ms(self.obs_to_command, 50),
            "obs_to_command_ms_p99": percentile_ms(self.obs_to_command, 99),
            "oldest_obs_ms_p99": percentile_ms(self.oldest_obs, 99),
            "tick_cost_ms_p99": percentile_ms(self.tick_cost, 99),
        }
