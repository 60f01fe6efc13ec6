"""Export any policy for robot CPUs (TorchScript or ONNX) and run it numpy in, numpy out.

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
:class:`ExportedPolicy` reads it back and offers the policy interface the executor uses
(``spec``, ``n_obs_steps``, ``horizon``, ``n_action_steps``, ``predict_action_chunk``,
``select_action``, ``reset``), so ``PolicyExecutor(ExportedPolicy(path))`` runs an exported
model exactly like an eager one. Loading a TorchScript file runs TorchScript code from it:
only load exports you made or trust. ONNX files hold no code.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from il_core.policies.base import Policy, config_to_dict
from il_core.spec import DatasetSpec, SpecError

if TYPE_CHECKING:
    from il_core.execution import PolicyExecutor

__all__ = ["META_KEY", "ExportError", "ExportedPolicy", "export_policy", "load_exported"]

#: Name of the JSON description inside an exported file.
META_KEY = "il_core_export.json"
_FORMAT = "il_core.export"
_VERSION = 1
ExportFormat = Literal["onnx", "torchscript"]


class ExportError(ValueError):
    """An export could not be written or read; the message names the file."""


def _format_of(path: Path, fmt: str | None) -> ExportFormat:
    if fmt is not None:
        if fmt not in ("onnx", "torchscript"):
            raise ExportError(f"{path}: format must be 'onnx' or 'torchscript', got {fmt!r}")
        return fmt  # type: ignore[return-value]
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix in (".pt", ".ts"):
        return "torchscript"
    raise ExportError(f"{path}: cannot tell the format from the suffix; use .onnx, .pt or .ts")


def noise_shape_of(policy: Any) -> tuple[int, ...] | None:
    """Per-sample noise shape a policy's inference consumes, or None if deterministic."""
    shape = getattr(policy, "noise_shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


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
            return self.policy.predict_chunk_tensor(obs, noise=inputs[-1])
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
    src = [s % rank for s in _ints(source)]
    dst = [d % rank for d in _ints(destination)]
    perm: list[int | None] = [None] * rank
    for s, d in zip(src, dst, strict=True):
        perm[d] = s
    rest = iter(i for i in range(rank) if i not in src)
    return g.op("Transpose", x, perm_i=[next(rest) if p is None else p for p in perm])


def export_policy(
    policy: Policy,
    path: str | Path,
    fmt: ExportFormat | None = None,
    *,
    opset: int = 17,
) -> Path:
    """Export ``policy``'s inference path to ``path``.

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
    fmt = _format_of(path, fmt)
    policy = policy.to("cpu").eval()
    config = policy.config
    if fmt == "onnx" and getattr(config, "inference_dtype", "float32") != "float32":
        # ONNX Runtime's CPU kernels have no bfloat16 matrix products: export the float32
        # path of a policy configured for bfloat16 inference (TorchScript keeps bfloat16).
        policy.config = dataclasses.replace(config, inference_dtype="float32")
    try:
        return _export(policy, path, fmt, opset)
    finally:
        policy.config = config


def _export(policy: Policy, path: Path, fmt: ExportFormat, opset: int) -> Path:
    described, examples = _example_inputs(policy)
    stochastic = noise_shape_of(policy) is not None
    module = _Traceable(policy, list(policy.spec.observations), stochastic).eval()
    meta = {
        "format": _FORMAT,
        "version": _VERSION,
        "policy": {"name": policy.name, "config": config_to_dict(policy.config)},
        "spec": policy.spec.to_dict(),
        "inputs": described,
        "noise_shape": list(noise_shape_of(policy) or []) if stochastic else None,
        "output": "action",
    }
    text = json.dumps(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False), torch.no_grad():
        # One untraced call first: policies build inference caches lazily (the diffusion
        # policy's bfloat16 U-Net copy), which must not be recorded into the graph.
        module(*examples)
        if fmt == "torchscript":
            traced = torch.jit.trace(module, tuple(examples), check_trace=False)
            traced = torch.jit.freeze(traced)
            torch.jit.save(traced, str(path), _extra_files={META_KEY: text})
            return path
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
                buf,
                dynamo=False,
                input_names=[d["name"] for d in described],
                output_names=["action"],
                opset_version=opset,
            )
        finally:
            torch.onnx.unregister_custom_op_symbolic("aten::movedim", opset)
        model = onnx.load_from_string(buf.getvalue())
        onnx.helper.set_model_props(model, {META_KEY: text})
        onnx.save(model, str(path))
    return path


class ExportedPolicy:
    """Runs an exported policy with the eager policy's numpy interface.

    Args:
        path: A file written by :func:`export_policy`.
        num_threads: ONNX Runtime intra-op threads (TorchScript uses torch's global
            setting, ``torch.set_num_threads``).
        seed: Seed of the generator that draws the noise of stochastic policies.

    Attributes:
        spec: The :class:`DatasetSpec` the policy was trained on.
        policy_name: Registered name of the exported policy.
        config: The policy config as a dict.
        noise_shape: Per-sample noise shape, or None for a deterministic policy.
    """

    def __init__(self, path: str | Path, num_threads: int = 1, seed: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"{self.path}: exported policy not found")
        self.format = _format_of(self.path, None)
        if self.format == "onnx":
            try:
                import onnxruntime as ort
            except ImportError as e:
                raise ExportError(
                    f"{self.path}: running an ONNX export needs 'onnxruntime' "
                    "(pip install onnxruntime)"
                ) from e
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = num_threads
            opts.inter_op_num_threads = 1
            try:
                self._session = ort.InferenceSession(
                    str(self.path), opts, providers=["CPUExecutionProvider"]
                )
            except Exception as e:  # onnxruntime raises its own exception types
                raise ExportError(f"{self.path}: not a loadable ONNX model: {e}") from None
            text = self._session.get_modelmeta().custom_metadata_map.get(META_KEY)
        else:
            extra = {META_KEY: ""}
            try:
                self._module = torch.jit.load(str(self.path), _extra_files=extra)
            except RuntimeError as e:
                raise ExportError(f"{self.path}: not a loadable TorchScript file: {e}") from None
            text = extra[META_KEY]
        try:
            meta = json.loads(text or "")
            if meta.get("format") != _FORMAT or int(meta.get("version", 0)) > _VERSION:
                raise ExportError(f"{self.path}: not an il_core export (or a newer version)")
            self.spec = DatasetSpec.from_dict(meta["spec"], f"{self.path}: spec")
        except (json.JSONDecodeError, KeyError, SpecError, TypeError) as e:
            raise ExportError(f"{self.path}: unreadable export description: {e}") from None
        self.policy_name: str = meta["policy"]["name"]
        self.config: dict[str, Any] = meta["policy"]["config"]
        self.inputs: list[dict[str, Any]] = meta["inputs"]
        ns = meta.get("noise_shape")
        self.noise_shape: tuple[int, ...] | None = None if ns is None else tuple(ns)
        self._rng = np.random.default_rng(seed)
        self._executor: PolicyExecutor | None = None

    @property
    def n_obs_steps(self) -> int:
        """Observation history length k."""
        return int(self.config["n_obs_steps"])

    @property
    def horizon(self) -> int:
        """Predicted chunk length h."""
        return int(self.config["horizon"])

    @property
    def n_action_steps(self) -> int:
        """Actions executed per chunk."""
        return int(self.config["n_action_steps"])

    def draw_noise(self) -> np.ndarray | None:
        """One ``(1, *noise_shape)`` float32 standard-normal draw (None if deterministic)."""
        if self.noise_shape is None:
            return None
        return self._rng.standard_normal((1, *self.noise_shape), dtype=np.float32)

    def run(self, obs: dict[str, np.ndarray], noise: np.ndarray | None = None) -> np.ndarray:
        """The raw model output for one history: ``(1, h, D)`` or ``(1, h)``, unclipped.

        Args:
            obs: ``{key: (k, ...)}`` raw observations, oldest first.
            noise: ``(1, *noise_shape)`` standard normal; drawn from the seeded generator
                when None (stochastic policies only).
        """
        arrays = []
        for desc in self.inputs:
            name = desc["name"]
            if name == "noise":
                n = self.draw_noise() if noise is None else noise
                arrays.append(np.ascontiguousarray(n, dtype=np.float32).reshape(desc["shape"]))
                continue
            if name not in obs:
                raise SpecError(
                    f"observation key {name!r} missing; expected {list(self.spec.observations)}"
                )
            x = np.ascontiguousarray(obs[name], dtype=desc["dtype"])
            if x.shape != tuple(desc["shape"][1:]):
                raise SpecError(
                    f"observation {name!r}: expected history shape {tuple(desc['shape'][1:])}, "
                    f"got {x.shape}"
                )
            arrays.append(x[None])
        if self.format == "onnx":
            feeds = {d["name"]: a for d, a in zip(self.inputs, arrays, strict=True)}
            return self._session.run(None, feeds)[0]
        with torch.inference_mode():
            return self._module(*(torch.from_numpy(a) for a in arrays)).numpy()

    def predict_action_chunk(
        self, obs: dict[str, np.ndarray], noise: np.ndarray | None = None
    ) -> np.ndarray:
        """Numpy in, numpy out, like :meth:`il_core.policies.base.Policy.predict_action_chunk`.

        Args:
            obs: ``{key: (k, ...)}`` the last k observations, oldest first.
            noise: Optional ``(1, *noise_shape)`` standard-normal draw to use.

        Returns:
            ``(h, D)`` float32 or ``(h,)`` int64, clamped to the spec's action bounds.
        """
        return self.spec.action.clip(self.run(obs, noise)[0])

    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Act on one observation through a :class:`~il_core.execution.PolicyExecutor`."""
        if self._executor is None:
            from il_core.execution import PolicyExecutor

            self._executor = PolicyExecutor(self)  # type: ignore[arg-type]
        return self._executor.step(obs)

    def reset(self) -> None:
        """Forget history and queued actions (call at every episode start)."""
        if self._executor is not None:
            self._executor.reset()


def load_exported(
    path: str | Path, num_threads: int = 1, seed: int | None = None
) -> ExportedPolicy:
    """Open an exported policy (see :class:`ExportedPolicy`)."""
    return ExportedPolicy(path, num_threads=num_threads, seed=seed)
