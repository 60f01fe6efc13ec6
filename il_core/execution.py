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

import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from il_core.policies.base import Policy


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
        n_action_steps: Actions executed per chunk; defaults to the policy's setting.
        temporal_ensemble_coeff: ``None`` disables temporal ensembling; otherwise the ACT
            weight decay ``m`` (``w_i = exp(-m i)``, oldest prediction first). With
            ensembling a chunk is predicted every tick (``n_action_steps`` is 1). The
            default, ``"policy"``, takes the policy config's ``temporal_ensemble_coeff``
            (ACT's setting; None for policies without one), so ``il-core eval`` and the
            inference node execute a checkpoint the way it was configured.
        asynchronous: Run the model in a background thread (never block a tick).
        lead_steps: Asynchronous only: start the next inference this many ticks before the
            current chunk's ``n_action_steps`` are used up. Choose about
            ``ceil(p99 inference latency * control rate)``.
    """

    def __init__(
        self,
        policy: Policy,
        n_action_steps: int | None = None,
        *,
        temporal_ensemble_coeff: float | None | Literal["policy"] = "policy",
        asynchronous: bool = False,
        lead_steps: int = 1,
    ) -> None:
        self.policy = policy
        if temporal_ensemble_coeff == "policy":
            config = getattr(policy, "config", None)
            temporal_ensemble_coeff = getattr(config, "temporal_ensemble_coeff", None)
        self.temporal_ensemble_coeff = temporal_ensemble_coeff
        if temporal_ensemble_coeff is not None:
            if policy.spec.action.kind != "continuous":
                raise ValueError("temporal ensembling needs continuous actions")
            n_action_steps = 1
        self.n_action_steps = n_action_steps or policy.n_action_steps
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
        self._lock = threading.Lock()

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
        with self._lock:
            self._generation += 1

    def set_policy(self, policy: Policy) -> None:
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
        with self._lock:
            gen = self._generation
        self._pending_gen = gen
        self._pending = self._pool.submit(lambda: (t, self._predict(history)))

    def _collect_result(self) -> None:
        fut = self._pending
        if fut is None or not fut.done():
            return
        self._pending = None
        with self._lock:
            stale = self._pending_gen != self._generation
        if stale:
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
            w = np.exp(-float(self.temporal_ensemble_coeff) * np.arange(len(entries)))
            acts = np.stack([a for _, a in entries]).astype(np.float32)
            action = (w[:, None] * acts).sum(0) / w.sum()
            action = self.policy.spec.action.clip(action.astype(np.float32))
        if self._last_action is not None and newest != self._last_chunk_id:
            jump = np.abs(np.asarray(action, np.float64) - np.asarray(self._last_action))
            self.stats.seam_jumps.append(float(jump.max()) if jump.size else 0.0)
        self._last_action, self._last_chunk_id = action, newest
        return action
