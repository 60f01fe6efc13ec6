"""The one loop that executes a policy, shared by ``il-core eval`` and the ROS inference node.

A :class:`PolicyExecutor` is driven by control ticks. It keeps the last k observations
(padding an episode's start by repeating the first one, exactly as the dataset windows do at
training time) and a *plan*: the action predicted for each upcoming tick. A chunk predicted
from the observation at tick ``t_obs`` holds actions for ticks ``t_obs .. t_obs + h - 1``;
``n_action_steps`` of them are executed before the next chunk takes over (receding horizon).
A bug found in simulation is therefore a bug fixed on the robot.

Two ways to run the model:

- synchronous (simulation, offline evaluation): when the current chunk is used up, the tick
  runs the model inline and waits for it;
- asynchronous (the robot): the model runs in a background thread, started ``lead_steps``
  ticks *before* the current chunk is used up, so a control tick never waits on the model.
  A chunk that arrives late drops the actions whose ticks have already passed and replaces
  the rest of the plan. If the plan runs dry anyway, :meth:`PolicyExecutor.step` returns
  ``None`` and the caller commands its safe action (and counts a starved tick).

Optional temporal ensembling (ACT): every tick's action is the weighted mean of all
predictions made for that tick, with weights ``exp(-coeff * i)``, ``i = 0`` for the oldest
prediction. It smooths chunk seams at the cost of responsiveness; LeRobot measured it hurting
success on one task, so it is off by default and measured, not assumed.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol, overload

import numpy as np

if TYPE_CHECKING:
    from il_core.spec import DatasetSpec


class ExecutablePolicy(Protocol):
    """What a :class:`PolicyExecutor` runs: an eager policy or an exported one, alike.

    Both :class:`~il_core.policies.base.Policy` and :class:`~il_core.runtime.ExportedPolicy`
    (ONNX or TorchScript, no torch needed for ONNX) have these members.
    """

    @property
    def name(self) -> str:
        """The registered policy name (``bc``, ``diffusion``, ...)."""

    @property
    def spec(self) -> DatasetSpec:
        """The dataset spec the policy was trained on (observations, action bounds)."""

    @property
    def n_obs_steps(self) -> int:
        """Observation history length k."""

    @property
    def horizon(self) -> int:
        """Predicted chunk length h."""

    @property
    def n_action_steps(self) -> int:
        """Actions executed per chunk by default."""

    def predict_action_chunk(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``{key: (k, ...)}`` history -> ``(h, D)`` actions (``(h,)`` int64 if discrete)."""


#: The one spelling of "the checkpoint's own setting" for a setting the executor can override
#: (``n_action_steps``, ``temporal_ensemble_coeff``): in Python, in YAML and in the ROS
#: inference node's parameters alike. The checkpoint's setting is its policy config's.
FROM_CHECKPOINT: Final = "checkpoint"
#: "No temporal ensembling", where a value must be text (a ROS parameter); ``None`` in Python.
OFF: Final = "off"


@overload
def parse_override(name: str, value: object, kind: type[int]) -> int | Literal["checkpoint"]: ...


@overload
def parse_override(
    name: str, value: object, kind: type[float]
) -> float | None | Literal["checkpoint"]: ...


def parse_override(
    name: str, value: object, kind: type[int] | type[float]
) -> int | float | None | Literal["checkpoint"]:
    """Read an executor setting given as text or a number (a ROS parameter, a YAML value).

    Args:
        name: The setting's name, for the error message.
        value: :data:`FROM_CHECKPOINT`, :data:`OFF` (only where ``kind`` is float: temporal
            ensembling), a number, or a number as text.
        kind: ``int`` (``n_action_steps``) or ``float`` (``temporal_ensemble_coeff``).

    Returns:
        ``"checkpoint"``, ``None`` (off) or the number, as :class:`PolicyExecutor` takes it.

    Raises:
        ValueError: anything else; the message names the setting and the accepted values.
    """
    accepted = f"{FROM_CHECKPOINT!r}, " + (f"{OFF!r} or a number" if kind is float else "an int")
    if value is False and kind is float:
        return None  # An unquoted `off` in YAML 1.1 (PyYAML, ROS parameter files) is false.
    if isinstance(value, str):
        text = value.strip().lower()
        if text == FROM_CHECKPOINT:
            return FROM_CHECKPOINT
        if text == OFF and kind is float:
            return None
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{name} must be {accepted}, got {value!r}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    if kind is int:
        if number != int(number):
            raise ValueError(f"{name} must be {accepted}, got {value!r}")
        return int(number)
    return number


@dataclass
class ExecutorStats:
    """Counters for diagnostics.

    Attributes:
        ticks: Calls to :meth:`PolicyExecutor.step`.
        inferences: Chunks predicted (including discarded ones).
        starved_ticks: Ticks with no planned action (asynchronous mode only).
        discarded_chunks: Chunks that arrived after a reset or policy swap.
        latencies_s: Recent inference durations (bounded window).
        seam_jumps: Recent ``|a_t - a_{t-1}|`` (max over dims) at ticks where the executed
            action switched to a newer chunk: the discontinuity at chunk seams.
    """

    ticks: int = 0
    inferences: int = 0
    starved_ticks: int = 0
    discarded_chunks: int = 0
    latencies_s: deque = field(default_factory=lambda: deque(maxlen=1000))
    seam_jumps: deque = field(default_factory=lambda: deque(maxlen=1000))


class PolicyExecutor:
    """Observation history + tick-indexed action plan around a policy.

    Args:
        policy: Any registered policy.
        n_action_steps: Actions executed per chunk; :data:`FROM_CHECKPOINT` (the default)
            keeps the policy's setting.
        temporal_ensemble_coeff: ``None`` disables temporal ensembling; otherwise the ACT
            weight decay ``m`` (``w_i = exp(-m i)``, oldest prediction first). With
            ensembling a chunk is predicted every tick (``n_action_steps`` is 1). The
            default, :data:`FROM_CHECKPOINT`, takes the policy config's
            ``temporal_ensemble_coeff`` (ACT's setting; None for policies without one), so
            ``il-core eval`` and the inference node execute a checkpoint the way it was
            configured.
        asynchronous: Run the model in a background thread (never block a tick).
        lead_steps: Asynchronous only: start the next inference this many ticks before the
            current chunk's ``n_action_steps`` are used up. Choose about
            ``ceil(p99 inference latency * control rate)``.
    """

    def __init__(
        self,
        policy: ExecutablePolicy,
        n_action_steps: int | Literal["checkpoint"] = FROM_CHECKPOINT,
        *,
        temporal_ensemble_coeff: float | None | Literal["checkpoint"] = FROM_CHECKPOINT,
        asynchronous: bool = False,
        lead_steps: int = 1,
    ) -> None:
        self.policy = policy
        for name, value in (
            ("n_action_steps", n_action_steps),
            ("temporal_ensemble_coeff", temporal_ensemble_coeff),
        ):
            if isinstance(value, str) and value != FROM_CHECKPOINT:
                raise ValueError(f"{name} must be a number or {FROM_CHECKPOINT!r}, got {value!r}")
        coeff: float | None
        if isinstance(temporal_ensemble_coeff, str):
            config = getattr(policy, "config", None)
            coeff = getattr(config, "temporal_ensemble_coeff", None)
        else:
            coeff = temporal_ensemble_coeff
        self.temporal_ensemble_coeff = coeff
        if coeff is not None:
            if policy.spec.action.kind != "continuous":
                raise ValueError("temporal ensembling needs continuous actions")
            n_action_steps = 1
        self.n_action_steps = (
            policy.n_action_steps if isinstance(n_action_steps, str) else int(n_action_steps)
        )
        if not 1 <= self.n_action_steps <= policy.horizon:
            raise ValueError(
                f"n_action_steps={self.n_action_steps} must be in 1..horizon={policy.horizon}"
            )
        if lead_steps < 0:
            raise ValueError(f"lead_steps must be >= 0, got {lead_steps}")
        self.asynchronous = asynchronous
        self.lead_steps = min(lead_steps, self.n_action_steps - 1) if asynchronous else 0
        self.stats = ExecutorStats()
        self._history: deque[dict[str, np.ndarray]] = deque(maxlen=policy.n_obs_steps)
        # tick -> list of (chunk id, action); several entries only with ensembling.
        self._plan: dict[int, list[tuple[int, np.ndarray]]] = {}
        self._tick = -1
        self._last_request_tick: int | None = None
        self._chunk_id = 0
        self._last_action: np.ndarray | None = None
        self._last_chunk_id = -1
        self._generation = 0
        self._pending: Future | None = None
        self._pending_gen = 0
        self._pool: ThreadPoolExecutor | None = None
        # Only the caller's thread touches the plan, the history and the generation; the
        # worker runs _predict on a snapshot and hands the chunk back through its future.

    @property
    def inference_count(self) -> int:
        """Chunks predicted so far (kept for callers of the synchronous executor)."""
        return self.stats.inferences

    def reset(self) -> None:
        """Forget history and plan (episode start, safe stop); in-flight results are dropped."""
        self._history.clear()
        self._plan.clear()
        self._tick = -1
        self._last_request_tick = None
        self._last_action = None
        self._last_chunk_id = -1
        self._generation += 1

    def set_policy(self, policy: ExecutablePolicy) -> None:
        """Swap the policy (hot reload) and reset; specs must have been checked by the caller."""
        self.policy = policy
        self._history = deque(maxlen=policy.n_obs_steps)
        self.reset()

    def close(self) -> None:
        """Stop the background thread (asynchronous mode)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def observe(self, obs: dict[str, np.ndarray]) -> None:
        """Append the current observation to the history (pads an empty history)."""
        if not self._history:
            for _ in range(self.policy.n_obs_steps - 1):
                self._history.append(obs)
        self._history.append(obs)

    def stacked_history(self) -> dict[str, np.ndarray]:
        """The history as ``{key: (k, ...)}``, oldest first."""
        if len(self._history) == 1:
            return {k: v[None] for k, v in self._history[0].items()}
        return {k: np.stack([h[k] for h in self._history]) for k in self._history[-1]}

    def step(self, obs: dict[str, np.ndarray]) -> np.ndarray | None:
        """Observe ``obs`` (one control tick) and return the action to execute now.

        Args:
            obs: ``{key: array}`` for the current tick (vectors ``(D,)``, images
                ``(H, W, C)`` uint8).

        Returns:
            ``(D,)`` float32 or ``()`` int64 action within the spec's bounds, or ``None`` in
            asynchronous mode when no action is planned for this tick yet.
        """
        self._tick += 1
        self.stats.ticks += 1
        t = self._tick
        self.observe(obs)
        if self.asynchronous:
            self._collect_result()
            if self._due(t) and self._pending is None:
                self._submit(t)
        elif self._due(t) or t not in self._plan:
            self._last_request_tick = t
            self._add_chunk(t, self._predict(self.stacked_history()))
        return self._pop_action(t)

    # -- internals ---------------------------------------------------------------------

    def _due(self, t: int) -> bool:
        if self._last_request_tick is None:
            return True
        return t - self._last_request_tick >= self.n_action_steps - self.lead_steps

    def _predict(self, history: dict[str, np.ndarray]) -> np.ndarray:
        t0 = time.perf_counter()
        chunk = self.policy.predict_action_chunk(history)
        self.stats.latencies_s.append(time.perf_counter() - t0)
        self.stats.inferences += 1
        return chunk

    def _submit(self, t: int) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="il_core-infer")
        history = self.stacked_history()  # a snapshot: the worker never sees later ticks
        self._last_request_tick = t
        self._pending_gen = self._generation
        self._pending = self._pool.submit(lambda: (t, self._predict(history)))

    def _collect_result(self) -> None:
        fut = self._pending
        if fut is None or not fut.done():
            return
        self._pending = None
        if self._pending_gen != self._generation:
            self.stats.discarded_chunks += 1
            return
        t_obs, chunk = fut.result()  # re-raises an exception from the model, on purpose
        self._add_chunk(t_obs, chunk)

    def _add_chunk(self, t_obs: int, chunk: np.ndarray) -> None:
        """Plan ``chunk`` (predicted from the observation at ``t_obs``) from now on."""
        self._chunk_id += 1
        now = max(self._tick, t_obs)
        ensemble = self.temporal_ensemble_coeff is not None
        # Without ensembling the whole remaining chunk is planned (not only n_action_steps),
        # so a late next chunk finds actions to execute instead of a dry plan.
        if t_obs + len(chunk) - 1 < now:
            # The whole chunk is late (a one-step policy whose model took longer than a tick):
            # its last action is the freshest prediction there is, so it is executed now.
            chunk, t_obs = chunk[-1:], now
        for i, action in enumerate(chunk):
            tick = t_obs + i
            if tick < now:
                continue  # its moment has passed while the model ran
            if ensemble:
                self._plan.setdefault(tick, []).append((self._chunk_id, action))
            else:
                self._plan[tick] = [(self._chunk_id, action)]

    def _pop_action(self, t: int) -> np.ndarray | None:
        for old in [k for k in self._plan if k < t]:
            del self._plan[old]
        entries = self._plan.pop(t, None)
        if not entries:
            self.stats.starved_ticks += 1
            return None
        newest = entries[-1][0]
        if len(entries) == 1:
            action = entries[0][1]
        else:
            coeff = self.temporal_ensemble_coeff
            assert coeff is not None  # several entries per tick only with ensembling
            w = np.exp(-coeff * np.arange(len(entries)))
            acts = np.stack([a for _, a in entries]).astype(np.float32)
            action = (w[:, None] * acts).sum(0) / w.sum()
            # The mean of in-bounds actions is in bounds but for rounding: clip that away.
            # Otherwise the policy's chunk is already clipped (Policy.predict_action_chunk).
            action = self.policy.spec.action.clip(action.astype(np.float32))
        if self._last_action is not None and newest != self._last_chunk_id:
            jump = np.abs(np.asarray(action, np.float64) - np.asarray(self._last_action))
            self.stats.seam_jumps.append(float(jump.max()) if jump.size else 0.0)
        self._last_action, self._last_chunk_id = action, newest
        return action
