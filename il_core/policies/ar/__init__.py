"""Autoregressive discretised actions: every action dimension binned, predicted in sequence."""

from il_core.policies.ar.configuration import ARConfig
from il_core.policies.ar.model import ARPolicy

__all__ = ["ARConfig", "ARPolicy"]
