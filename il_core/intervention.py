"""The intervention gate of HG-DAgger: when the expert's command replaces the policy's.

One pure, tick-driven class shared by the ROS DAgger node (the expert is a human on a
teleop device) and the simulated DAgger loop (the expert is scripted). Each control tick the
caller passes the policy's action, the expert's action and the deadman button;
:class:`InterventionGate` answers which command to execute and whether the step is an
intervention (recorded as the ``is_intervention`` flag with the expert's label).

Triggers (``GateConfig.mode``):

- ``deadman``: the expert drives exactly while the deadman is held, then for
  ``release_ticks`` more ticks after it is released (hysteresis; 0 hands back at once).
- ``deviation``: the expert takes over once ``||(expert - policy) / deviation_scale||``
  exceeds ``deviation_threshold`` on ``engage_ticks`` consecutive ticks (ignoring noise), and
  hands back once it has stayed below ``release_threshold`` for more than ``release_ticks``
  consecutive ticks. The expert must publish what it would do at every tick (a scripted
  expert, a leader arm); an idle joystick publishing zeros would read as disagreement.
- ``either``: the expert drives while either trigger says so.

Missing inputs: without an expert action (teleop silent) the gate never intervenes, and an
ongoing intervention ends at once, unless the deadman is held, in which case the decision is
an intervention with no action, and the caller commands its safe stop. Without a policy
action (policy not ready) an available expert drives (reason ``"no policy"``). Actions that
contain NaN or infinity are treated as missing. No clocks: everything advances by ticks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from il_core.config import ConfigError

Mode = Literal["deadman", "deviation", "either"]


@dataclass(frozen=True)
class GateConfig:
    """When the expert takes over from the policy, and when it hands back.

    Attributes:
        mode: ``deadman`` (button held), ``deviation`` (expert departs from the policy) or
            ``either``.
        deviation_threshold: Take-over threshold on the norm of ``expert - policy``, in action
            units after dividing by ``deviation_scale``.
        deviation_scale: Optional per-dimension divisors applied to ``expert - policy`` before
            the norm (for example each dimension's range), one per action element.
        engage_ticks: Consecutive ticks above the threshold before the expert takes over
            (1: at the first such tick). The deadman engages at once.
        release_ticks: Extra ticks the expert keeps driving once the trigger has released
            (deadman up, deviation below ``release_threshold``); 0 hands back at once.
        release_threshold: Hand-back threshold on the scaled deviation, in
            ``(0, deviation_threshold]``; None means half of ``deviation_threshold``.
    """

    mode: Mode = field(default="deadman", metadata={"help": "deadman | deviation | either"})
    deviation_threshold: float = field(
        default=0.5, metadata={"help": "take-over threshold on ||expert - policy||, > 0"}
    )
    deviation_scale: tuple[float, ...] | None = field(
        default=None, metadata={"help": "per-dimension divisors before the norm, each > 0"}
    )
    engage_ticks: int = field(
        default=1, metadata={"help": "consecutive ticks above threshold to take over, >= 1"}
    )
    release_ticks: int = field(
        default=0, metadata={"help": "extra expert ticks after the trigger releases, >= 0"}
    )
    release_threshold: float | None = field(
        default=None,
        metadata={"help": "hand-back threshold, in (0, deviation_threshold]; None: half"},
    )

    def __post_init__(self) -> None:
        if self.mode not in ("deadman", "deviation", "either"):
            raise ConfigError(f"mode must be deadman, deviation or either, got {self.mode!r}")
        thr = self.deviation_threshold
        if not _is_real(thr) or not math.isfinite(thr) or thr <= 0:
            raise ConfigError(f"deviation_threshold must be a finite number > 0, got {thr!r}")
        if self.deviation_scale is not None:
            scale = tuple(self.deviation_scale)
            if not scale or not all(_is_real(s) and math.isfinite(s) and s > 0 for s in scale):
                raise ConfigError(
                    f"deviation_scale must be a non-empty list of numbers > 0, got {scale!r}"
                )
            object.__setattr__(self, "deviation_scale", tuple(float(s) for s in scale))
        if isinstance(self.engage_ticks, bool) or not isinstance(self.engage_ticks, int):
            raise ConfigError(f"engage_ticks must be an integer, got {self.engage_ticks!r}")
        if self.engage_ticks < 1:
            raise ConfigError(f"engage_ticks must be >= 1, got {self.engage_ticks}")
        if isinstance(self.release_ticks, bool) or not isinstance(self.release_ticks, int):
            raise ConfigError(f"release_ticks must be an integer, got {self.release_ticks!r}")
        if self.release_ticks < 0:
            raise ConfigError(f"release_ticks must be >= 0, got {self.release_ticks}")
        rel = self.release_threshold
        if rel is not None and (not _is_real(rel) or not math.isfinite(rel) or not 0 < rel <= thr):
            raise ConfigError(
                f"release_threshold must be in (0, deviation_threshold={thr}], got {rel!r}"
            )

    @property
    def effective_release_threshold(self) -> float:
        """``release_threshold``, or half of ``deviation_threshold`` when it is None."""
        if self.release_threshold is None:
            return self.deviation_threshold / 2
        return self.release_threshold


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


@dataclass(frozen=True)
class GateDecision:
    """The gate's answer for one tick.

    Attributes:
        is_intervention: The expert drives this tick (record the step flagged, with the
            expert's action as its label).
        action: The command to execute: the expert's while intervening, else the policy's
            (the arrays passed in, not copies). None when there is nothing to execute
            (command the safe stop).
        reason: Why, for logs and diagnostics: ``"policy"``, ``"deadman"``,
            ``"deviation 0.42 > 0.3"`` (take-over), ``"deviation 0.2 >= 0.15"`` (still
            above the release threshold), ``"policy, deviation 0.42 > 0.3 (1/3)"`` (engaging),
            ``"releasing 1/2"``, ``"released"``, ``"no policy"``, ``"no expert"``,
            ``"no action"`` or ``"deadman, no expert action"``.
        deviation: The scaled deviation this tick, when the mode uses it and both actions were
            available; else None.
        tick: Index of this tick since :meth:`InterventionGate.reset` (0-based).
        engaged_at_tick: Tick at which the current intervention began; None when the policy
            drives.
        takeover: This tick started an intervention.
        released: This tick ended one.
    """

    is_intervention: bool
    action: np.ndarray | None
    reason: str
    deviation: float | None
    tick: int
    engaged_at_tick: int | None
    takeover: bool = False
    released: bool = False


class InterventionGate:
    """Tick-driven mux between the policy's and the expert's commands (HG-DAgger).

    Deterministic: the decision depends only on the config and the sequence of inputs.

    Args:
        config: The gate's triggers and hysteresis.

    Attributes:
        ticks: Ticks since :meth:`reset`.
        intervention_ticks: Of those, ticks where the expert drove.
        takeovers: Interventions started since :meth:`reset`.
    """

    def __init__(self, config: GateConfig) -> None:
        self.config = config
        self._use_deadman = config.mode in ("deadman", "either")
        self._use_deviation = config.mode in ("deviation", "either")
        self._threshold = config.deviation_threshold
        self._release_threshold = config.effective_release_threshold
        self._scale = (
            np.asarray(config.deviation_scale, dtype=np.float64)
            if config.deviation_scale is not None
            else None
        )
        self.reset()

    def reset(self) -> None:
        """Hand control back to the policy and zero the counters (episode start)."""
        self.ticks = 0
        self.intervention_ticks = 0
        self.takeovers = 0
        self._intervening = False
        self._engaged_at: int | None = None
        self._engage_count = 0
        self._release_count = 0

    @property
    def intervening(self) -> bool:
        """Whether the expert drove at the last tick."""
        return self._intervening

    def deviation(self, policy_action: np.ndarray, expert_action: np.ndarray) -> float:
        """Scaled deviation ``||(expert - policy) / deviation_scale||`` over all elements.

        Raises:
            ValueError: if the shapes differ, or ``deviation_scale`` does not have one entry
                per action element.
        """
        p = np.asarray(policy_action, dtype=np.float64)
        e = np.asarray(expert_action, dtype=np.float64)
        if p.shape != e.shape:
            raise ValueError(f"policy action shape {p.shape} != expert action shape {e.shape}")
        diff = (e - p).reshape(-1)
        if self._scale is not None:
            if self._scale.size != diff.size:
                raise ValueError(
                    f"deviation_scale has {self._scale.size} entries, the action has "
                    f"{diff.size} elements"
                )
            diff = diff / self._scale
        return float(np.sqrt(diff @ diff))

    def update(
        self,
        policy_action: np.ndarray | None,
        expert_action: np.ndarray | None,
        deadman: bool,
    ) -> GateDecision:
        """Decide who drives this tick.

        Args:
            policy_action: The policy's command, or None when the policy is not ready.
            expert_action: The expert's command, or None when the teleop is silent.
            deadman: Whether the deadman button is held (ignored in ``deviation`` mode).

        Returns:
            The decision; ``action`` is the array to execute, or None for the safe stop.
        """
        tick = self.ticks
        self.ticks += 1
        expert = expert_action if _usable(expert_action) else None
        policy = policy_action if _usable(policy_action) else None
        deadman_on = self._use_deadman and bool(deadman)
        deviation = (
            self.deviation(policy, expert)
            if self._use_deviation and policy is not None and expert is not None
            else None
        )

        if expert is None:
            self._engage_count = 0
            self._release_count = 0
            if deadman_on:
                return self._drive_expert(tick, None, "deadman, no expert action", deviation)
            reason = "no expert" if policy is not None else "no action"
            return self._drive_policy(tick, policy, reason, deviation)

        if policy is None:
            self._engage_count = 0
            self._release_count = 0
            return self._drive_expert(
                tick, expert, "deadman" if deadman_on else "no policy", deviation
            )

        if self._intervening:
            self._engage_count = 0
            if deadman_on:
                self._release_count = 0
                return self._drive_expert(tick, expert, "deadman", deviation)
            if deviation is not None and deviation >= self._release_threshold:
                self._release_count = 0
                reason = f"deviation {deviation:.3g} >= {self._release_threshold:.3g}"
                return self._drive_expert(tick, expert, reason, deviation)
            self._release_count += 1
            if self._release_count <= self.config.release_ticks:
                reason = f"releasing {self._release_count}/{self.config.release_ticks}"
                return self._drive_expert(tick, expert, reason, deviation)
            return self._drive_policy(tick, policy, "released", deviation)

        if deadman_on:
            return self._drive_expert(tick, expert, "deadman", deviation)
        if deviation is not None and deviation > self._threshold:
            self._engage_count += 1
            above = f"deviation {deviation:.3g} > {self._threshold:.3g}"
            if self._engage_count >= self.config.engage_ticks:
                return self._drive_expert(tick, expert, above, deviation)
            reason = f"policy, {above} ({self._engage_count}/{self.config.engage_ticks})"
            return self._drive_policy(tick, policy, reason, deviation, keep_engage=True)
        return self._drive_policy(tick, policy, "policy", deviation)

    def _drive_expert(
        self, tick: int, action: np.ndarray | None, reason: str, deviation: float | None
    ) -> GateDecision:
        takeover = not self._intervening
        if takeover:
            self._intervening = True
            self._engaged_at = tick
            self.takeovers += 1
            self._engage_count = 0
            self._release_count = 0
        self.intervention_ticks += 1
        return GateDecision(True, action, reason, deviation, tick, self._engaged_at, takeover)

    def _drive_policy(
        self,
        tick: int,
        action: np.ndarray | None,
        reason: str,
        deviation: float | None,
        keep_engage: bool = False,
    ) -> GateDecision:
        released = self._intervening
        self._intervening = False
        self._engaged_at = None
        self._release_count = 0
        if not keep_engage:
            self._engage_count = 0
        return GateDecision(False, action, reason, deviation, tick, None, False, released)

    def summary(self) -> dict[str, Any]:
        """JSON-compatible counts since :meth:`reset` (episode metadata, diagnostics)."""
        return {
            "ticks": self.ticks,
            "intervention_ticks": self.intervention_ticks,
            "takeovers": self.takeovers,
            "intervention_fraction": self.intervention_ticks / self.ticks if self.ticks else None,
        }


def _usable(action: np.ndarray | None) -> bool:
    """An action is usable when present and finite everywhere (NaN reads as missing)."""
    if action is None:
        return False
    a = np.asarray(action)
    if a.dtype.kind in "biu":
        return True
    return bool(np.isfinite(a).all())
