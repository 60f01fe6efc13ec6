"""Configuration of the autoregressive discretised-action policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from il_core.config import ConfigError
from il_core.policies.base import PolicyConfig


@dataclass
class ARConfig(PolicyConfig):
    """Each action dimension of the chunk binned and predicted in sequence (RT-1 style).

    Attributes:
        num_bins: Bins per continuous action dimension, uniform over the min-max normalised
            range [-1, 1] (discrete actions use their classes as bins).
        hidden_dims: Hidden sizes of the token MLP.
        inference: ``sample`` draws each token from its softmax; ``greedy`` takes the arg-max.
        temperature: Softmax temperature when sampling.
    """

    num_bins: int = field(default=32, metadata={"help": "bins per continuous action dim"})
    hidden_dims: tuple[int, ...] = field(
        default=(256, 256), metadata={"help": "token MLP hidden sizes"}
    )
    inference: Literal["sample", "greedy"] = field(
        default="sample", metadata={"help": "sample | greedy"}
    )
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_bins < 2:
            raise ConfigError(f"num_bins must be >= 2, got {self.num_bins}")
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ConfigError(f"hidden_dims must be positive sizes, got {self.hidden_dims}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
