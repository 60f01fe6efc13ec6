"""Self-contained checkpoints: weights, policy config, spec, normaliser, package version.

A checkpoint is a ``torch.save`` dict of tensors and plain Python values only, loaded with
``torch.load(weights_only=True)`` so that loading a file never executes code from it. It is
written to a temporary file and renamed, so a crash while saving never leaves a truncated
``policy.pt`` behind.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

import il_core
from il_core.config import ConfigError
from il_core.constants import CKPT_FORMAT, CKPT_FORMAT_VERSION
from il_core.policies import Policy, get_policy_class, make_config
from il_core.policies.base import config_to_dict
from il_core.spec import DatasetSpec, SpecError

FORMAT_NAME = "il_core.checkpoint"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or not an il_core checkpoint. Names the file."""


def save_checkpoint(path: str | Path, policy: Policy, extra: dict[str, Any] | None = None) -> Path:
    """Atomically write ``policy`` (and optional training state) to ``path``.

    Args:
        path: Destination file (conventionally ``policy.pt``).
        policy: The policy to save (unwrapped, not a DDP module).
        extra: Plain-data training state: ``train`` (config, step, metrics),
            ``optimizer`` (state dict), ``rng`` (generator states).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        CKPT_FORMAT: FORMAT_NAME,
        "format_version": CKPT_FORMAT_VERSION,
        "il_core_version": il_core.__version__,
        "policy": {"name": policy.name, "config": config_to_dict(policy.config)},
        "spec": policy.spec.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
    }
    data.update(extra or {})
    return atomic_torch_save(path, data)


def atomic_torch_save(path: str | Path, data: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file, fsync, then rename: never a half-written file.

    Used for policy checkpoints and learned rewards (:mod:`il_core.reward`).

    Returns:
        The path written (its directory is created if needed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates 0600 files; a checkpoint is meant to be shared with the robot user.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate the raw checkpoint dict.

    Raises:
        CheckpointError: if the file is missing, truncated, corrupt, not an il_core
            checkpoint, or from a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        ValueError,
        OSError,
    ) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupt file?): {first}"
        ) from None
    if not isinstance(data, dict) or data.get(CKPT_FORMAT) != FORMAT_NAME:
        raise CheckpointError(f"{path}: not an il_core checkpoint (missing '{CKPT_FORMAT}' tag)")
    version = data.get("format_version")
    if not isinstance(version, int) or version > CKPT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this il_core "
            f"({il_core.__version__}) understands ({CKPT_FORMAT_VERSION}); upgrade il_ros"
        )
    for key in ("policy", "spec", "state_dict"):
        if key not in data:
            raise CheckpointError(f"{path}: checkpoint lacks the {key!r} entry")
    return data


def policy_from_checkpoint_dict(
    data: dict[str, Any], where: str = "checkpoint", device: str | torch.device = "cpu"
) -> Policy:
    """Rebuild the policy stored in a checkpoint dict (see :func:`read_checkpoint`)."""
    try:
        spec = DatasetSpec.from_dict(data["spec"], f"{where}: spec")
        name = data["policy"]["name"]
        get_policy_class(name)
        config = make_config(name, data["policy"]["config"], f"{where}: policy config")
    except (SpecError, ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"{where}: invalid checkpoint contents: {e}") from None
    policy = get_policy_class(name)(config, spec, None)
    try:
        policy.load_state_dict(data["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{where}: weights do not match the stored config: {e}") from None
    return policy.to(device).eval()


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> Policy:
    """Load a policy from a checkpoint without its training config.

    Args:
        path: A ``policy.pt`` written by ``il-core train``.
        device: Where to put the weights.

    Returns:
        The policy in eval mode.

    Raises:
        CheckpointError: naming the file for any unreadable or inconsistent checkpoint.
    """
    data = read_checkpoint(path, map_location=device)
    return policy_from_checkpoint_dict(data, str(path), device)
