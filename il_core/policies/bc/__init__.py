"""Behaviour cloning: regress (MSE/L1) or classify (cross-entropy) the expert's action chunk."""

from il_core.policies.bc.configuration import BCConfig
from il_core.policies.bc.model import BCPolicy

__all__ = ["BCConfig", "BCPolicy"]
