"""Configuration of the behaviour-cloning policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from il_core.config import ConfigError
from il_core.policies.base import PolicyConfig


@dataclass
class BCConfig(PolicyConfig):
    """Behaviour cloning with an MLP head over the encoded observation history.

    Attributes:
        hidden_dims: Hidden layer sizes of the MLP head.
        dropout: Dropout after each hidden layer (0 disables).
        loss: Continuous actions only: ``mse`` or ``l1`` on normalised actions.
    """

    hidden_dims: tuple[int, ...] = field(
        default=(256, 256), metadata={"help": "MLP hidden layer sizes"}
    )
    dropout: float = field(default=0.0, metadata={"help": "dropout probability, 0..1"})
    loss: Literal["mse", "l1"] = field(
        default="mse", metadata={"help": "continuous action loss: mse | l1"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ConfigError(f"hidden_dims must be positive sizes, got {self.hidden_dims}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
