"""Configuration of the mixture-of-Gaussians policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from il_core.config import ConfigError
from il_core.policies.base import PolicyConfig


@dataclass
class MoGConfig(PolicyConfig):
    """Mixture of K diagonal Gaussians over the whole (normalised) action chunk.

    Attributes:
        num_modes: Number of mixture components K.
        hidden_dims: Hidden layer sizes of the MLP head.
        min_std: Lower bound added to every standard deviation (normalised units); keeps
            the likelihood finite on near-deterministic demonstrations.
        inference: ``component_mean`` draws a component from the mixture weights and returns
            its mean (robomimic's low-noise evaluation: the mode choice stays random, the
            chunk is not jittered); ``sample`` also samples the Gaussian; ``mode`` returns the
            mean of the most likely component (deterministic).
    """

    num_modes: int = field(default=5, metadata={"help": "mixture components K"})
    hidden_dims: tuple[int, ...] = field(
        default=(256, 256), metadata={"help": "MLP hidden layer sizes"}
    )
    min_std: float = field(default=1e-3, metadata={"help": "std lower bound (normalised)"})
    inference: Literal["component_mean", "sample", "mode"] = field(
        default="component_mean", metadata={"help": "component_mean | sample | mode"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_modes < 1:
            raise ConfigError(f"num_modes must be >= 1, got {self.num_modes}")
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ConfigError(f"hidden_dims must be positive sizes, got {self.hidden_dims}")
        if self.min_std <= 0:
            raise ConfigError(f"min_std must be > 0, got {self.min_std}")
