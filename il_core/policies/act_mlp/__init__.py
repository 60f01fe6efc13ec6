"""ACT-style conditional VAE with MLP halves (``act_mlp``; ``act`` is the transformer)."""

from il_core.policies.act_mlp.configuration import ACTMLPConfig
from il_core.policies.act_mlp.model import ACTMLPPolicy

__all__ = ["ACTMLPConfig", "ACTMLPPolicy"]
