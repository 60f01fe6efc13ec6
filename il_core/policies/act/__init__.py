"""ACT: the Action Chunking Transformer (transformer CVAE with action chunking)."""

from il_core.policies.act.configuration import ACTConfig
from il_core.policies.act.model import ACTPolicy

__all__ = ["ACTConfig", "ACTPolicy"]
