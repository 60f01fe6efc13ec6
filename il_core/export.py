"""Export any policy for robot CPUs (TorchScript or ONNX): the torch side of export.

:func:`export_policy` traces the policy's inference path, ``predict_chunk_tensor`` (input
normalisation, network, output unnormalisation; for diffusion the whole DDIM loop, unrolled),
for one observation history (batch 1: one robot, one chunk) and writes one self-describing
file:

- ``.onnx``: an ONNX model (legacy TorchScript-based exporter, so no ``onnxscript`` is
  needed), run with ONNX Runtime;
- ``.pt`` / ``.ts``: a TorchScript module, run with ``torch.jit.load``.

Inputs, in this order: one tensor per observation key in spec order, shaped ``(1, k, D)``
float32 for vectors and ``(1, k, H, W, C)`` uint8 for images, then, for stochastic policies
(those with a ``noise_shape``: diffusion, mog, act when sampling, ar when sampling), a
``noise`` tensor ``(1, *noise_shape)`` of standard-normal draws. Randomness is an input
rather than a random op inside the graph so that exported and eager models can be fed the
same draws (and compared), and so that a robot can seed it. Output ``action``: ``(1, h, D)``
float32, or ``(1, h)`` int64 for discrete actions.

The file carries a JSON description (policy name and config, spec, inputs, noise shape):
ONNX model metadata under :data:`META_KEY`, a TorchScript extra file of that name.
:func:`export_checkpoint` is ``il-core export``: a training checkpoint in, an export out,
checked against the eager policy.

Running exports is :mod:`il_core.runtime`, which never imports torch for an ONNX file (a
robot computer need not carry torch): :class:`ExportedPolicy`, :func:`load_exported` and
:func:`load_runtime_policy` live there and are re-exported here for older imports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from il_core.policies.base import Policy, StochasticPolicy, config_to_dict
from il_core.runtime import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    META_KEY,
    ExportedPolicy,
    ExportError,
    ExportFormat,
    export_format_of,
    is_torchscript_export,
    load_exported,
    load_runtime_policy,
)

__all__ = [
    "META_KEY",
    "ExportError",
    "ExportFormat",
    "ExportedPolicy",
    "export_checkpoint",
    "export_policy",
    "load_exported",
    "load_runtime_policy",
    "noise_shape_of",
]


def noise_shape_of(policy: Any) -> tuple[int, ...] | None:
    """Per-sample noise shape a policy's inference consumes, or None if deterministic."""
    shape = getattr(policy, "noise_shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


def _predict_with_noise(policy: Policy, obs: dict[str, Tensor], noise: Tensor) -> Tensor:
    """``policy.predict_chunk_tensor(obs, noise=noise)`` for a policy with a ``noise_shape``."""
    # Only called where noise_shape_of(policy) found a noise shape: every such policy takes
    # the draws as a `noise` argument (StochasticPolicy), which Policy's contract lacks.
    return cast(StochasticPolicy, policy).predict_chunk_tensor(obs, noise=noise)


class _Traceable(nn.Module):
    """Positional tensors in (obs keys in spec order, then noise) -> action chunk."""

    def __init__(self, policy: Policy, keys: list[str], stochastic: bool) -> None:
        super().__init__()
        self.policy = policy
        self.keys = keys
        self.stochastic = stochastic

    def forward(self, *inputs: Tensor) -> Tensor:
        """Run ``predict_chunk_tensor`` on the positional inputs."""
        obs = dict(zip(self.keys, inputs[: len(self.keys)], strict=True))
        if self.stochastic:
            return _predict_with_noise(self.policy, obs, inputs[-1])
        return self.policy.predict_chunk_tensor(obs)


def _example_inputs(policy: Policy) -> tuple[list[dict[str, Any]], list[Tensor]]:
    """Input descriptions and zero-valued example tensors for tracing (batch 1)."""
    k = policy.n_obs_steps
    described, examples = [], []
    for key, feat in policy.spec.observations.items():
        shape = [1, k, *feat.shape]
        dtype = "uint8" if feat.kind == "image" else "float32"
        described.append({"name": key, "shape": shape, "dtype": dtype})
        examples.append(torch.zeros(shape, dtype=getattr(torch, dtype)))
    noise = noise_shape_of(policy)
    if noise is not None:
        described.append({"name": "noise", "shape": [1, *noise], "dtype": "float32"})
        examples.append(torch.zeros((1, *noise)))
    return described, examples


def _ints(value: Any) -> list[int]:
    """Constant int or int list of a TorchScript graph value (ONNX symbolic helper)."""
    from torch.onnx import symbolic_helper as sh

    try:
        return [sh._parse_arg(value, "i")]
    except (TypeError, RuntimeError, ValueError):
        return list(sh._parse_arg(value, "is"))


def _movedim_symbolic(g: Any, x: Any, source: Any, destination: Any) -> Any:
    """``aten::movedim`` as an ONNX ``Transpose`` with a non-negative permutation.

    The legacy exporter's own rule copies negative dims into ``perm`` (``movedim(-1, -3)``,
    the channels-first move of camera images in :class:`il_core.normalize.Normalizer`,
    becomes ``perm=[0, 1, -1, 2, 3]``), which ONNX forbids and which corrupts the shapes the
    exporter infers downstream. This rule resolves the dims against the rank first.
    """
    from torch.onnx import symbolic_helper as sh

    rank = sh._get_tensor_rank(x)
    if rank is None:
        raise ExportError("aten::movedim: the input's rank is unknown, cannot build its perm")
    src = [s % rank for s in _ints(source)]
    dst = [d % rank for d in _ints(destination)]
    perm: list[int | None] = [None] * rank
    for s, d in zip(src, dst, strict=True):
        perm[d] = s
    rest = iter(i for i in range(rank) if i not in src)
    return g.op("Transpose", x, perm_i=[next(rest) if p is None else p for p in perm])


@contextlib.contextmanager
def _exported_config(policy: Policy, fmt: ExportFormat) -> Iterator[None]:
    """Temporarily give ``policy`` the config its ``fmt`` export runs with.

    ONNX Runtime's CPU kernels have no bfloat16 matrix products: an ONNX export runs the
    float32 path of a policy configured for bfloat16 inference (TorchScript keeps bfloat16).
    The eager reference of :func:`export_checkpoint`'s check runs under the same config, so
    that the check measures the export, not bfloat16 rounding.
    """
    config = policy.config
    if fmt == "onnx" and getattr(config, "inference_dtype", "float32") != "float32":
        # Any config with an inference_dtype field (checked just above; diffusion's):
        # PolicyConfig itself declares none, so mypy's dataclass plugin rejects the name.
        policy.config = dataclasses.replace(  # type: ignore[call-arg]
            config, inference_dtype="float32"
        )
    try:
        yield
    finally:
        policy.config = config


def export_policy(
    policy: Policy,
    path: str | Path,
    fmt: ExportFormat | None = None,
    *,
    opset: int = 17,
) -> Path:
    """Export ``policy``'s inference path to ``path``.

    The file is written under a temporary name and renamed, so a robot reloading ``path``
    never reads a half-written export.

    Args:
        policy: Any registered policy (moved to CPU and eval mode for the trace).
        path: Destination; the suffix picks the format unless ``fmt`` is given (``.onnx``
            -> ONNX, ``.pt``/``.ts`` -> TorchScript).
        fmt: ``onnx`` or ``torchscript``.
        opset: ONNX opset version.

    Returns:
        The path written.

    Raises:
        ExportError: unknown format, or ``onnx`` not installed for an ONNX export.
    """
    path = Path(path)
    fmt = export_format_of(path, fmt)
    policy = policy.to("cpu").eval()
    with _exported_config(policy, fmt):
        return _export(policy, path, fmt, opset)


def _export(policy: Policy, path: Path, fmt: ExportFormat, opset: int) -> Path:
    described, examples = _example_inputs(policy)
    stochastic = noise_shape_of(policy) is not None
    module = _Traceable(policy, list(policy.spec.observations), stochastic).eval()
    meta = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "policy": {"name": policy.name, "config": config_to_dict(policy.config)},
        "spec": policy.spec.to_dict(),
        "inputs": described,
        "noise_shape": list(noise_shape_of(policy) or []) if stochastic else None,
        "output": "action",
    }
    text = json.dumps(meta)
    with torch.inference_mode(False), torch.no_grad():
        # One untraced call first: policies build inference caches lazily (the diffusion
        # policy's bfloat16 U-Net copy), which must not be recorded into the graph.
        module(*examples)
        if fmt == "torchscript":
            traced = torch.jit.trace(module, tuple(examples), check_trace=False)
            traced = torch.jit.freeze(traced)
            return _write_atomically(
                path, lambda tmp: torch.jit.save(traced, tmp, _extra_files={META_KEY: text})
            )
        try:
            import onnx
        except ImportError as e:
            raise ExportError(
                f"{path}: ONNX export needs the 'onnx' package (pip install onnx onnxruntime)"
            ) from e
        buf = io.BytesIO()
        torch.onnx.register_custom_op_symbolic("aten::movedim", _movedim_symbolic, opset)
        try:
            torch.onnx.export(
                module,
                tuple(examples),
                # torch annotates f as a path only, but the legacy (dynamo=False) exporter
                # also writes to a file-like object (its own code says so and handles it).
                buf,  # type: ignore[arg-type]
                dynamo=False,
                input_names=[d["name"] for d in described],
                output_names=["action"],
                opset_version=opset,
            )
        finally:
            torch.onnx.unregister_custom_op_symbolic("aten::movedim", opset)
        model = onnx.load_from_string(buf.getvalue())
        onnx.helper.set_model_props(model, {META_KEY: text})
        return _write_atomically(path, lambda tmp: onnx.save(model, tmp))


def _write_atomically(path: Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_name)`` on a temporary file next to ``path``, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 files; an export is meant to be copied to the robot user.
        os.fchmod(fd, 0o644)
        os.close(fd)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _random_history(policy: Policy, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One ``{key: (k, ...)}`` observation history: standard normal vectors, random images."""
    k = policy.n_obs_steps
    obs = {}
    for key, feat in policy.spec.observations.items():
        if feat.kind == "image":
            obs[key] = rng.integers(0, 256, (k, *feat.shape), dtype=np.uint8)
        else:
            obs[key] = rng.standard_normal((k, *feat.shape)).astype(np.float32)
    return obs


def _eager_chunk(
    policy: Policy, obs: dict[str, np.ndarray], noise: np.ndarray | None
) -> np.ndarray:
    """The eager policy's clipped chunk ``(h, D)`` or ``(h,)`` for one history and draw."""
    batch = {k: torch.from_numpy(v)[None] for k, v in obs.items()}
    with torch.inference_mode():
        if noise is None:
            out = policy.predict_chunk_tensor(batch)
        else:
            out = _predict_with_noise(policy, batch, torch.from_numpy(noise))
    return policy.spec.action.clip(out[0].numpy())


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    fmt: ExportFormat | None = None,
    *,
    check: bool = True,
    seed: int = 0,
    opset: int = 17,
) -> dict[str, Any]:
    """Export a training checkpoint (``il-core export``) and describe the file written.

    Args:
        checkpoint: A ``policy.pt`` written by ``il-core train``.
        out: Destination: ``.onnx`` is ONNX, ``.pt`` or ``.ts`` TorchScript (the suffix is
            what :func:`load_runtime_policy` dispatches on, so it must match ``fmt``).
        fmt: Optional ``onnx`` or ``torchscript``; must agree with the suffix of ``out``.
        check: Run the eager policy and the export on one seeded random observation history
            (the same noise draw for stochastic policies) and report the largest absolute
            difference between their action chunks.
        seed: Seed of that history and draw.
        opset: ONNX opset version.

    Returns:
        ``type``, ``policy`` (name), ``format``, ``checkpoint``, ``out``, ``bytes``,
        ``inputs`` (name, shape, dtype each), ``noise_shape``, ``output`` (name, shape,
        dtype), ``max_abs_diff`` (None without ``check``) and ``seed``.

    Raises:
        ExportError: bad suffix or format, ``out`` is the checkpoint itself, or the
            checkpoint is already an export.
        il_core.checkpoint.CheckpointError: the checkpoint is missing or unreadable.
    """
    from il_core.checkpoint import CheckpointError, load_policy

    checkpoint, out = Path(checkpoint), Path(out)
    if fmt is not None:
        fmt = export_format_of(out, fmt)  # validates the name only
    by_suffix = export_format_of(out)
    if fmt is not None and fmt != by_suffix:
        raise ExportError(
            f"{out}: suffix {out.suffix!r} means {by_suffix}, not {fmt}; "
            "use .onnx for onnx, .ts or .pt for torchscript"
        )
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: checkpoint file not found")
    if out.resolve() == checkpoint.resolve() or (
        out.exists() and os.path.samefile(out, checkpoint)
    ):
        raise ExportError(f"{out}: is the input checkpoint; refusing to overwrite it")
    if checkpoint.suffix == ".onnx" or is_torchscript_export(checkpoint):
        raise ExportError(
            f"{checkpoint}: already an exported policy; expected an il_core training "
            "checkpoint (policy.pt from il-core train)"
        )
    policy = load_policy(checkpoint)
    export_policy(policy, out, by_suffix, opset=opset)
    exported = ExportedPolicy(out, num_threads=1, seed=seed)
    action = policy.spec.action
    summary: dict[str, Any] = {
        "type": "export",
        "policy": policy.name,
        "format": by_suffix,
        "checkpoint": str(checkpoint),
        "out": str(out),
        "bytes": out.stat().st_size,
        "inputs": exported.inputs,
        "noise_shape": None if exported.noise_shape is None else list(exported.noise_shape),
        "output": {
            "name": "action",
            "shape": [1, policy.horizon, *action.shape],
            "dtype": str(action.dtype),
        },
        "max_abs_diff": None,
        "seed": seed,
    }
    if check:
        obs = _random_history(policy, np.random.default_rng(seed))
        noise = exported.draw_noise()
        with _exported_config(policy, by_suffix):
            want = _eager_chunk(policy, obs, noise)
        got = exported.predict_action_chunk(obs, noise)
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        summary["max_abs_diff"] = float(diff.max()) if diff.size else 0.0
    return summary
