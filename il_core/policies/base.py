"""The one policy contract shared by training, evaluation and the ROS inference node.

Training calls ``forward(batch) -> (loss, logs)``. Acting uses ``reset()``,
``predict_action_chunk(obs)`` (stateless: an observation history in, an action chunk out)
and ``select_action(obs)`` (stateful convenience that keeps the history and chunk queue in an
:class:`il_core.execution.PolicyExecutor`). Normalisation lives inside the policy.

Shapes (B batch, k = ``n_obs_steps`` history, h = ``horizon`` chunk length, D action dim):

- batch ``OBS``: ``{key: (B, k, D_key)}`` float or ``(B, k, H, W, C)`` uint8
- batch ``ACTION``: ``(B, h, D)`` float32 or ``(B, h)`` int64; ``ACTION_MASK`` ``(B, h)`` bool
- ``predict_action_chunk`` input: ``{key: (k, ...)}`` numpy; output ``(h, D)`` float32 or
  ``(h,)`` int64
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from il_core.config import ConfigError
from il_core.policies.encoders import HistoryEncoderConfig, ImageEncoderConfig
from il_core.spec import DatasetSpec

if TYPE_CHECKING:
    from il_core.execution import PolicyExecutor


@dataclass
class PolicyConfig:
    """Fields every policy has. Subclasses add their own, each with a ``help`` string.

    Attributes:
        n_obs_steps: Observation history length k fed to the policy (1 = current frame).
        horizon: Length h of the action chunk the policy predicts.
        n_action_steps: How many actions of each chunk are executed before predicting again
            (receding horizon); must not exceed ``horizon``.
        image_encoder: CNN settings for camera observations.
        history_encoder: How the ``n_obs_steps`` history is combined: frame stacking (the
            default, which adds no weights), a GRU or a small causal transformer.
    """

    n_obs_steps: int = field(default=1, metadata={"help": "observation history length k"})
    horizon: int = field(default=1, metadata={"help": "predicted action chunk length h"})
    n_action_steps: int = field(
        default=1, metadata={"help": "actions executed per predicted chunk (<= horizon)"}
    )
    image_encoder: ImageEncoderConfig = field(
        default_factory=ImageEncoderConfig, metadata={"help": "camera CNN settings"}
    )
    history_encoder: HistoryEncoderConfig = field(
        default_factory=HistoryEncoderConfig,
        metadata={"help": "observation history: stack | gru | transformer"},
    )
    obs_min_std: float = field(
        default=0.0, metadata={"help": "floor of the vector-observation scale (data units)"}
    )

    def __post_init__(self) -> None:
        if not self.obs_min_std >= 0:
            raise ConfigError(f"obs_min_std must be >= 0, got {self.obs_min_std}")
        if self.n_obs_steps < 1:
            raise ConfigError(f"n_obs_steps must be >= 1, got {self.n_obs_steps}")
        if self.horizon < 1:
            raise ConfigError(f"horizon must be >= 1, got {self.horizon}")
        if not 1 <= self.n_action_steps <= self.horizon:
            raise ConfigError(
                f"n_action_steps ({self.n_action_steps}) must be between 1 and horizon "
                f"({self.horizon}): a chunk cannot serve more actions than it holds"
            )


class Policy(nn.Module, ABC):
    """Base class of all policies. Subclasses are registered with ``register_policy``.

    Args:
        config: The policy's config dataclass instance.
        spec: Observation/action spec of the training data.
        stats: Normalisation statistics from ``EpisodeDataset.stats()``, or ``None`` when the
            weights (including normaliser buffers) will be loaded from a checkpoint.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[PolicyConfig]] = PolicyConfig

    def __init__(
        self,
        config: PolicyConfig,
        spec: DatasetSpec,
        stats: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.spec = spec
        self._executor: PolicyExecutor | None = None

    @property
    def n_obs_steps(self) -> int:
        """Observation history length k."""
        return self.config.n_obs_steps

    @property
    def horizon(self) -> int:
        """Predicted chunk length h."""
        return self.config.horizon

    @property
    def n_action_steps(self) -> int:
        """Actions executed per chunk."""
        return self.config.n_action_steps

    @abstractmethod
    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """Training loss on a batch of windows (keys from ``il_core.constants``).

        Returns:
            The scalar loss to minimise and a dict of float metrics for logging.
        """

    @abstractmethod
    def predict_chunk_tensor(self, obs: dict[str, Tensor]) -> Tensor:
        """Predict action chunks from raw (unnormalised) batched observation histories.

        Args:
            obs: ``{key: (B, k, ...)}`` tensors on the policy's device.

        Returns:
            ``(B, h, D)`` float32 raw actions or ``(B, h)`` int64 classes.
        """

    def predict_action_chunk(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Numpy in, numpy out: one observation history to one action chunk.

        Args:
            obs: ``{key: (k, ...)}``, the last k observations, oldest first.

        Returns:
            ``(h, D)`` float32 or ``(h,)`` int64, clamped to the spec's action bounds.
        """
        device = self._device()
        with torch.inference_mode():
            batch = {k: torch.as_tensor(v, device=device).unsqueeze(0) for k, v in obs.items()}
            chunk = self.predict_chunk_tensor(batch)[0].cpu().numpy()
        return self.spec.action.clip(chunk)

    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Act on one observation: keeps history and a chunk queue across calls.

        Args:
            obs: ``{key: array}`` for the current step (no time axis).

        Returns:
            ``(D,)`` float32 or ``()`` int64 action.
        """
        if self._executor is None:
            from il_core.execution import PolicyExecutor

            self._executor = PolicyExecutor(self)
        action = self._executor.step(obs)
        # Only an asynchronous executor can return None (no action planned yet); this one is
        # synchronous: it predicts a chunk for the current tick before popping it.
        assert action is not None
        return action

    def after_optimizer_step(self, step: int) -> None:
        """Hook the trainer calls after every optimiser step (EMA weights, schedules).

        Args:
            step: Number of optimiser steps done so far (1 after the first step).
        """

    def reset(self) -> None:
        """Forget history and queued actions (call at every episode start)."""
        if self._executor is not None:
            self._executor.reset()

    def _device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        return torch.device("cpu")


class StochasticPolicy(Protocol):
    """A policy whose inference consumes standard-normal noise (diffusion, mog, act, ar).

    Its ``predict_chunk_tensor`` takes the draws as ``noise`` so that an exported model and
    the eager one can be fed the same randomness; ``noise_shape`` is the per-sample shape,
    or None when its config makes inference deterministic (the noise is then ignored).
    """

    @property
    def noise_shape(self) -> tuple[int, ...] | None:
        """Per-sample standard-normal noise shape, or None if deterministic."""
        ...

    def predict_chunk_tensor(self, obs: dict[str, Tensor], noise: Tensor | None = None) -> Tensor:
        """:meth:`Policy.predict_chunk_tensor` with the noise passed in (drawn when None)."""
        ...


def config_to_dict(config: PolicyConfig) -> dict[str, Any]:
    """Policy config as a plain dict (tuples become lists) for YAML and checkpoints."""
    from il_core.config import to_dict

    return to_dict(config)
