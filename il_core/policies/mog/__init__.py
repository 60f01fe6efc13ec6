"""Mixture of Gaussians over action chunks: K modes, trained by negative log-likelihood."""

from il_core.policies.mog.configuration import MoGConfig
from il_core.policies.mog.model import MoGPolicy

__all__ = ["MoGConfig", "MoGPolicy"]
