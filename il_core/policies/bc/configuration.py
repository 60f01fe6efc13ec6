"""Configuration of the behaviour-cloning policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from il_core.config import ConfigError
from il_core.policies.base import PolicyConfig
from il_core.policies.encoders import HistoryEncoderConfig, ImageEncoderConfig


@dataclass
class BCConfig(PolicyConfig):
    """Behaviour cloning with an MLP head over the encoded observation history.

    Attributes:
        hidden_dims: Hidden layer sizes of the MLP head.
        dropout: Dropout after each hidden layer (0 disables).
        loss: Continuous actions only: ``mse`` or ``l1`` on normalised actions.
        image_encoder: CNN settings for camera observations.
        history_encoder: How the ``n_obs_steps`` history is combined: frame stacking (the
            default), a GRU or a small causal transformer.
    """

    hidden_dims: tuple[int, ...] = field(
        default=(256, 256), metadata={"help": "MLP hidden layer sizes"}
    )
    dropout: float = field(default=0.0, metadata={"help": "dropout probability, 0..1"})
    loss: Literal["mse", "l1"] = field(
        default="mse", metadata={"help": "continuous action loss: mse | l1"}
    )
    image_encoder: ImageEncoderConfig = field(
        default_factory=ImageEncoderConfig, metadata={"help": "camera CNN settings"}
    )
    history_encoder: HistoryEncoderConfig = field(
        default_factory=HistoryEncoderConfig,
        metadata={"help": "observation history: stack | gru | transformer"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ConfigError(f"hidden_dims must be positive sizes, got {self.hidden_dims}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
