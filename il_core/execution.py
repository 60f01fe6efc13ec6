"""The one loop that executes a policy, shared by ``il-core eval`` and the ROS inference node.

A :class:`PolicyExecutor` keeps the last k observations (padding the start of an episode by
repeating the first one, exactly as the dataset windows do at training time) and a queue of
actions from the latest predicted chunk, executed with a receding horizon: ``n_action_steps``
actions are served from each chunk before the policy is queried again. A bug found in
simulation is therefore a bug fixed on the robot.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from il_core.policies.base import Policy


class PolicyExecutor:
    """Observation history + action-chunk queue around a policy.

    Args:
        policy: Any registered policy.
        n_action_steps: Actions executed per chunk; defaults to the policy's setting.

    Attributes:
        inference_count: How many chunks were predicted since construction.
    """

    def __init__(self, policy: Policy, n_action_steps: int | None = None) -> None:
        self.policy = policy
        self.n_action_steps = n_action_steps or policy.n_action_steps
        if not 1 <= self.n_action_steps <= policy.horizon:
            raise ValueError(
                f"n_action_steps={self.n_action_steps} must be in 1..horizon={policy.horizon}"
            )
        self._history: deque[dict[str, np.ndarray]] = deque(maxlen=policy.n_obs_steps)
        self._queue: deque[np.ndarray] = deque()
        self.inference_count = 0

    def reset(self) -> None:
        """Forget history and queued actions (episode start, or after a safe stop)."""
        self._history.clear()
        self._queue.clear()

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

    def step(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Observe ``obs`` and return the action to execute now.

        Args:
            obs: ``{key: array}`` for the current step (vectors ``(D,)``, images
                ``(H, W, C)`` uint8).

        Returns:
            ``(D,)`` float32 or ``()`` int64 action within the spec's bounds.
        """
        self.observe(obs)
        if not self._queue:
            chunk = self.policy.predict_action_chunk(self.stacked_history())
            self.inference_count += 1
            self._queue.extend(chunk[: self.n_action_steps])
        return self._queue.popleft()
