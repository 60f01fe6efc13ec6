"""Inverse dynamics model p(a | s, s') for BCO, and the transitions it is trained on.

The model sees a state and the change to the next one, both normalised with statistics of its
training transitions, and outputs class logits (discrete actions, cross-entropy) or a
normalised action (continuous, MSE). Feeding the change ``s' - s`` rather than ``s'`` puts
the action's effect (a velocity increment in CartPole and MountainCar) on its own input, so a
small MLP separates the actions with few samples.

Only vector observations are supported: the state is the spec's vector keys concatenated in
spec order (:func:`flatten_obs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from il_core.config import ConfigError
from il_core.policies.encoders import mlp
from il_core.spec import ActionSpec, DatasetSpec, SpecError

__all__ = [
    "IDMConfig",
    "InverseDynamicsModel",
    "Transitions",
    "fit_inverse_dynamics",
    "flatten_obs",
    "state_dim",
]


def state_dim(spec: DatasetSpec) -> int:
    """Length ``D`` of the flat state of ``spec`` (its vector keys concatenated).

    Raises:
        SpecError: the spec has image observations (naming the first one).
    """
    if spec.image_keys:
        raise SpecError(
            f"observation {spec.image_keys[0]!r}: BCO's inverse dynamics model takes vector "
            "observations only"
        )
    return sum(spec.observations[k].shape[0] for k in spec.vector_keys)


def flatten_obs(spec: DatasetSpec, obs: dict[str, np.ndarray]) -> np.ndarray:
    """Concatenate the vector keys of ``obs`` in spec order.

    Args:
        spec: The dataset spec (vector observations only).
        obs: ``{key: (..., D_key)}`` with the same leading shape for every key.

    Returns:
        ``(..., D)`` float32, ``D`` = :func:`state_dim`.
    """
    state_dim(spec)
    return np.concatenate(
        [np.asarray(obs[k], dtype=np.float32) for k in spec.vector_keys], axis=-1
    )


@dataclass(frozen=True)
class Transitions:
    """Environment transitions ``(s, a, s')``, flat states.

    Attributes:
        obs: ``(N, D)`` float32 states ``s``.
        actions: ``(N,)`` int64 classes (discrete) or ``(N, A)`` float32 (continuous).
        next_obs: ``(N, D)`` float32 states ``s'`` reached by taking ``a`` in ``s``.
    """

    obs: np.ndarray
    actions: np.ndarray
    next_obs: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.obs)
        if self.obs.ndim != 2 or self.next_obs.shape != self.obs.shape:
            raise ValueError(
                f"obs and next_obs must both be (N, D), got {self.obs.shape} and "
                f"{self.next_obs.shape}"
            )
        if len(self.actions) != n:
            raise ValueError(f"{len(self.actions)} actions for {n} transitions")

    def __len__(self) -> int:
        return len(self.obs)

    @staticmethod
    def concatenate(parts: list[Transitions]) -> Transitions:
        """Join several sets of transitions in order."""
        return Transitions(
            obs=np.concatenate([p.obs for p in parts]),
            actions=np.concatenate([p.actions for p in parts]),
            next_obs=np.concatenate([p.next_obs for p in parts]),
        )


@dataclass
class IDMConfig:
    """Inverse dynamics model and its training (the ``bco.idm:`` section).

    Attributes:
        hidden_dims: MLP hidden layer sizes.
        steps: Optimiser steps per fit (the model is refitted from scratch every BCO
            iteration, on all transitions so far).
        batch_size: Transitions per step.
        lr: Adam learning rate.
        val_fraction: Fraction of transitions held out to report labelling accuracy/error.
    """

    hidden_dims: tuple[int, ...] = field(
        default=(64, 64), metadata={"help": "MLP hidden layer sizes"}
    )
    steps: int = field(default=2000, metadata={"help": "optimiser steps per fit"})
    batch_size: int = field(default=256, metadata={"help": "transitions per step"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    val_fraction: float = field(default=0.1, metadata={"help": "held-out fraction, 0..0.5"})

    def __post_init__(self) -> None:
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ConfigError(f"hidden_dims must be positive sizes, got {self.hidden_dims}")
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(
                f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}"
            )
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.val_fraction <= 0.5:
            raise ConfigError(f"val_fraction must be in [0, 0.5], got {self.val_fraction}")


def _affine(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per column with constant columns left unscaled. ``x``: ``(N, D)``."""
    mean = x.astype(np.float64).mean(axis=0)
    std = x.astype(np.float64).std(axis=0)
    std = np.where(std < 1e-8, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


class InverseDynamicsModel(nn.Module):
    """MLP ``(s, s' - s) -> a`` with its input (and continuous output) normalisation inside.

    Args:
        state_dim: ``D``.
        action: The action spec (discrete: logits over ``num_classes``; continuous: ``dim``).
        hidden_dims: MLP hidden sizes.
    """

    # Normalisation statistics, registered as buffers in __init__.
    obs_mean: Tensor
    obs_std: Tensor
    delta_mean: Tensor
    delta_std: Tensor
    act_mean: Tensor
    act_std: Tensor

    def __init__(self, state_dim: int, action: ActionSpec, hidden_dims: tuple[int, ...]):
        super().__init__()
        self.action = action
        self.discrete = action.kind == "discrete"
        if self.discrete:
            assert action.num_classes is not None  # ActionSpec requires it for discrete actions
            out = int(action.num_classes)
        else:
            out = action.dim
        self.net = mlp(2 * state_dim, hidden_dims, out, 0.0)
        # Buffers, so the statistics travel with the weights in state_dict.
        for name, dim in (("obs", state_dim), ("delta", state_dim), ("act", action.dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    def fit_normalisation(self, data: Transitions) -> None:
        """Set the input (and continuous action) statistics from ``data``."""
        pairs = [("obs", data.obs), ("delta", data.next_obs - data.obs)]
        if not self.discrete:
            pairs.append(("act", data.actions.reshape(len(data), -1)))
        for name, x in pairs:
            mean, std = _affine(x)
            getattr(self, f"{name}_mean").copy_(torch.from_numpy(mean))
            getattr(self, f"{name}_std").copy_(torch.from_numpy(std))

    def forward(self, obs: Tensor, next_obs: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` or normalised actions ``(B, A)``.

        Args:
            obs: ``(B, D)`` states.
            next_obs: ``(B, D)`` next states.
        """
        x = torch.cat(
            [
                (obs - self.obs_mean) / self.obs_std,
                (next_obs - obs - self.delta_mean) / self.delta_std,
            ],
            dim=-1,
        )
        return self.net(x)

    def loss(self, obs: Tensor, actions: Tensor, next_obs: Tensor) -> tuple[Tensor, Tensor]:
        """Training loss and per-sample error.

        Returns:
            ``(loss, error)``: cross-entropy and 0/1 misclassification ``(B,)``, or MSE on
            normalised actions and the per-sample mean absolute error in action units.
        """
        out = self(obs, next_obs)
        if self.discrete:
            return F.cross_entropy(out, actions), (out.argmax(-1) != actions).float()
        target = (actions - self.act_mean) / self.act_std
        pred = out * self.act_std + self.act_mean
        return F.mse_loss(out, target), (pred - actions).abs().mean(-1)

    @torch.no_grad()
    def predict(self, obs: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """The most likely action for each transition.

        Args:
            obs: ``(N, D)`` states.
            next_obs: ``(N, D)`` next states.

        Returns:
            ``(N,)`` int64 classes or ``(N, A)`` float32 actions clipped to the spec's bounds.
        """
        was_training = self.training
        self.eval()
        out = self(
            torch.as_tensor(obs, dtype=torch.float32),
            torch.as_tensor(next_obs, dtype=torch.float32),
        )
        self.train(was_training)
        if self.discrete:
            return out.argmax(-1).numpy().astype(np.int64)
        act = (out * self.act_std + self.act_mean).numpy().astype(np.float32)
        return self.action.clip(act)


def fit_inverse_dynamics(
    data: Transitions,
    action: ActionSpec,
    config: IDMConfig,
    seed: int,
) -> tuple[InverseDynamicsModel, dict[str, float | None]]:
    """Train a fresh inverse dynamics model on ``data``.

    Args:
        data: Transitions from the learner's own rollouts (at least 2).
        action: The action spec.
        config: Model and optimisation settings.
        seed: Seeds the weights, the held-out split and the batch order.

    Returns:
        ``(model, logs)``; logs: ``train_loss`` (mean over the last 100 steps),
        ``val_error`` (held-out misclassification rate, or mean absolute action error;
        None without a held-out set), ``transitions``.

    Raises:
        ValueError: fewer than 2 transitions.
    """
    if len(data) < 2:
        raise ValueError(f"the inverse dynamics model needs >= 2 transitions, got {len(data)}")
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    n_val = int(round(config.val_fraction * len(data)))
    val, tr = order[:n_val], order[n_val:]
    obs = torch.from_numpy(data.obs)
    nxt = torch.from_numpy(data.next_obs)
    acts = torch.from_numpy(data.actions)
    torch.manual_seed(seed)
    model = InverseDynamicsModel(data.obs.shape[1], action, config.hidden_dims)
    model.fit_normalisation(Transitions(data.obs[tr], data.actions[tr], data.next_obs[tr]))
    optim = torch.optim.Adam(model.parameters(), lr=config.lr)
    tr_t = torch.from_numpy(tr)
    recent: list[float] = []
    for _ in range(config.steps):
        b = tr_t[torch.randint(len(tr_t), (config.batch_size,), generator=gen)]
        loss, _ = model.loss(obs[b], acts[b], nxt[b])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        recent = (recent + [loss.item()])[-100:]
    val_error = None
    if n_val:
        with torch.no_grad():
            v = torch.from_numpy(val)
            val_error = float(model.loss(obs[v], acts[v], nxt[v])[1].mean())
    model.eval()
    return model, {
        "train_loss": float(np.mean(recent)),
        "val_error": val_error,
        "transitions": len(data),
    }
