"""Diffusion Policy: denoise an action chunk conditioned on the observation history."""

from il_core.policies.diffusion.configuration import DiffusionConfig
from il_core.policies.diffusion.model import ConditionalUnet1D, DiffusionPolicy

__all__ = ["ConditionalUnet1D", "DiffusionConfig", "DiffusionPolicy"]
