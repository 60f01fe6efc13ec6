"""Run a policy file on a robot: numpy in, numpy out, torch only where the file needs it.

This is the runtime half of :mod:`il_core.export` (which writes the files and needs torch).
Importing this module needs numpy, PyYAML (through :mod:`il_core.config`) and nothing else;
torch is imported only inside the functions that load a TorchScript file or a training
checkpoint, and ``onnxruntime`` only when an ONNX file is opened. A robot computer without
torch (a Jetson, NUC or Raspberry Pi that cannot carry a 1-5 GB install) therefore runs an
``.onnx`` export with the same :class:`~il_core.execution.PolicyExecutor` that drives the
eager policy in simulation.

Policy files :func:`load_runtime_policy` accepts:

- ``.onnx``: an ONNX export, run with ONNX Runtime (never imports torch);
- ``.ts``: a TorchScript export, run with ``torch.jit`` (imports torch);
- ``.pt``: a TorchScript export (recognised by the description it carries, read from the
  zip archive without torch) or else an il_core training checkpoint
  (:func:`il_core.checkpoint.load_policy`, the eager policy; imports torch).

An export carries a JSON description (policy name and config, spec, inputs, noise shape):
ONNX model metadata under :data:`META_KEY`, a TorchScript extra file of that name. Loading
a TorchScript file runs TorchScript code from it: only load exports you made or trust. ONNX
files and training checkpoints (``torch.load(weights_only=True)``) hold no code.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from il_core.spec import DatasetSpec, SpecError

if TYPE_CHECKING:
    from il_core.execution import PolicyExecutor
    from il_core.policies.base import Policy

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "META_KEY",
    "POLICY_SUFFIXES",
    "ExportError",
    "ExportFormat",
    "ExportedConfig",
    "ExportedPolicy",
    "export_format_of",
    "is_torchscript_export",
    "load_exported",
    "load_runtime_policy",
]

#: Name of the JSON description inside an exported file.
META_KEY = "il_core_export.json"
#: ``format`` tag and newest ``version`` of that description.
EXPORT_FORMAT = "il_core.export"
EXPORT_VERSION = 1
#: File suffixes :func:`load_runtime_policy` accepts.
POLICY_SUFFIXES = (".onnx", ".ts", ".pt")
ExportFormat = Literal["onnx", "torchscript"]

_EXPECTED = (
    "expected an ONNX export (.onnx), a TorchScript export (.ts or .pt) "
    "or an il_core training checkpoint (.pt)"
)


class ExportError(ValueError):
    """A policy file could not be written, read or run; the message names the file."""


def export_format_of(path: str | Path, fmt: str | None = None) -> ExportFormat:
    """The export format of ``path``: ``fmt`` if given, else from the suffix.

    Raises:
        ExportError: ``fmt`` is not a format, or the suffix is not ``.onnx``/``.pt``/``.ts``.
    """
    path = Path(path)
    if fmt is not None:
        if fmt not in ("onnx", "torchscript"):
            raise ExportError(f"{path}: format must be 'onnx' or 'torchscript', got {fmt!r}")
        return fmt  # type: ignore[return-value]
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix in (".pt", ".ts"):
        return "torchscript"
    raise ExportError(f"{path}: cannot tell the format from the suffix; use .onnx, .pt or .ts")


def is_torchscript_export(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript file written by :func:`il_core.export.export_policy`.

    Both ``torch.jit.save`` and ``torch.save`` write zip archives (``<archive>/data.pkl``
    and so on); only an export holds the description as the extra file
    ``<archive>/extra/<META_KEY>``. Reading the archive's table of contents tells the two
    apart without importing torch and without unpickling anything.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(name.split("/")[1:] == ["extra", META_KEY] for name in names)


def _import_torch(path: Path, what: str) -> Any:
    """``import torch``, or an error naming the file that needed it and the way round it."""
    try:
        import torch
    except ImportError as e:
        if path.suffix == ".pt" and not is_torchscript_export(path):
            how = f"il-core export --checkpoint {path.name} --out {path.stem}.onnx"
        else:
            how = f"il-core export --checkpoint <its training checkpoint> --out {path.stem}.onnx"
        raise ExportError(
            f"{path}: loading {what} needs torch, which is not installed here; install "
            f"torch, or export the policy to ONNX where torch is installed ({how}) and load "
            "the .onnx file"
        ) from e
    return torch


def _view(value: Any) -> Any:
    """Read-only view of a config value: sections become configs, lists become tuples."""
    if isinstance(value, Mapping):
        return ExportedConfig(value)
    if isinstance(value, list):
        return tuple(_view(v) for v in value)
    return value


class ExportedConfig(Mapping[str, Any]):
    """An exported policy's config, read-only, by attribute or by key.

    The eager policy's config is a typed dataclass read by attribute (``config.horizon``;
    :class:`~il_core.execution.PolicyExecutor` reads ``config.temporal_ensemble_coeff``).
    Those dataclasses live next to torch code, so an export stores the config as a dict and
    this view restores attribute access: ``getattr(config, "temporal_ensemble_coeff",
    None)`` gives ACT's setting for an ACT export, and None for policies without one, just
    as for the eager policy. Sections (``history_encoder``) are views too, and lists come
    back as tuples, as in the dataclasses.

    Args:
        values: The config as stored (``config_to_dict`` of the eager config).
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails. Private names are never fields (and
        # copy/pickle probe them before __init__ has run, when _values does not exist yet).
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return _view(self._values[name])
        except KeyError:
            raise AttributeError(f"policy config has no field {name!r}") from None

    def __getitem__(self, key: str) -> Any:
        return _view(self._values[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ExportedConfig({self._values!r})"

    def to_dict(self) -> dict[str, Any]:
        """The config as stored in the file (a deep copy, JSON-compatible)."""
        return json.loads(json.dumps(self._values))


class ExportedPolicy:
    """Runs an exported policy with the eager policy's numpy interface.

    A full stand-in for a :class:`~il_core.policies.base.Policy` wherever a policy is
    *executed* (:class:`~il_core.execution.PolicyExecutor`, ``il-core eval``-style loops,
    the ROS inference node): ``name``, ``spec``, ``config`` (attribute access, see
    :class:`ExportedConfig`), ``n_obs_steps``, ``horizon``, ``n_action_steps``,
    ``predict_action_chunk``, ``select_action`` and ``reset``. ONNX files run with ONNX
    Runtime and never import torch; TorchScript files import torch here.

    Args:
        path: A file written by :func:`il_core.export.export_policy`: ``.onnx`` is ONNX,
            ``.pt``/``.ts`` TorchScript.
        num_threads: ONNX Runtime intra-op threads (TorchScript uses torch's global
            setting, ``torch.set_num_threads``; :func:`load_runtime_policy` sets it).
        seed: Seed of the generator that draws the noise of stochastic policies.

    Attributes:
        name: Registered name of the exported policy (``"bc"``, ``"act"``, ...).
        policy_name: Same as ``name`` (kept for older callers).
        spec: The :class:`DatasetSpec` the policy was trained on.
        config: The policy config, an :class:`ExportedConfig`.
        format: ``"onnx"`` or ``"torchscript"``.
        inputs: Input descriptions ``{"name", "shape", "dtype"}`` in input order: one per
            observation key (``(1, k, D)`` float32, ``(1, k, H, W, C)`` uint8), then
            ``noise`` ``(1, *noise_shape)`` for stochastic policies.
        noise_shape: Per-sample noise shape, or None for a deterministic policy.

    Raises:
        ExportError: naming the file if it is missing, not loadable, not an il_core export,
            or needs a package (onnxruntime, torch) that is not installed.
    """

    def __init__(self, path: str | Path, num_threads: int = 1, seed: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"{self.path}: exported policy not found")
        self.format: ExportFormat = export_format_of(self.path)
        self._torch: Any = None
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
            self._torch = _import_torch(self.path, "a TorchScript export")
            extra = {META_KEY: ""}
            try:
                self._module = self._torch.jit.load(str(self.path), _extra_files=extra)
            except (RuntimeError, ValueError) as e:
                raise ExportError(f"{self.path}: not a loadable TorchScript file: {e}") from None
            text = extra[META_KEY]
        try:
            meta = json.loads(text or "")
            if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
                raise ExportError(
                    f"{self.path}: not an il_core export (no {EXPORT_FORMAT!r} description)"
                )
            if int(meta.get("version", 0)) > EXPORT_VERSION:
                raise ExportError(
                    f"{self.path}: export version {meta.get('version')} is newer than this "
                    f"il_core reads ({EXPORT_VERSION}); upgrade il_ros"
                )
            self.spec = DatasetSpec.from_dict(meta["spec"], f"{self.path}: spec")
            self.name: str = str(meta["policy"]["name"])
            self.config = ExportedConfig(meta["policy"]["config"])
            self.inputs: list[dict[str, Any]] = list(meta["inputs"])
            ns = meta.get("noise_shape")
        except ExportError:
            raise
        except (json.JSONDecodeError, KeyError, SpecError, TypeError, ValueError) as e:
            raise ExportError(f"{self.path}: unreadable export description: {e}") from None
        self.policy_name = self.name
        self.noise_shape: tuple[int, ...] | None = None if ns is None else tuple(ns)
        self._rng = np.random.default_rng(seed)
        self._executor: PolicyExecutor | None = None

    def __repr__(self) -> str:
        return f"ExportedPolicy({self.name!r}, {self.format}, {str(self.path)!r})"

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

        Raises:
            SpecError: an observation key is missing or has the wrong history shape.
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
        torch = self._torch
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

            self._executor = PolicyExecutor(self)
        action = self._executor.step(obs)
        # Only an asynchronous executor can return None (no action planned yet); this one is
        # synchronous: it predicts a chunk for the current tick before popping it.
        assert action is not None
        return action

    def reset(self) -> None:
        """Forget history and queued actions (call at every episode start)."""
        if self._executor is not None:
            self._executor.reset()


def load_exported(
    path: str | Path, num_threads: int = 1, seed: int | None = None
) -> ExportedPolicy:
    """Open an exported policy (see :class:`ExportedPolicy`)."""
    return ExportedPolicy(path, num_threads=num_threads, seed=seed)


def load_runtime_policy(
    path: str | Path,
    *,
    device: str = "cpu",
    num_threads: int = 1,
    seed: int | None = None,
) -> ExportedPolicy | Policy:
    """Load any policy file a robot runs: an ONNX or TorchScript export, or a checkpoint.

    Which paths import torch (lazily, inside this call):

    - ``.onnx``: never. Needs ``onnxruntime``; returns an :class:`ExportedPolicy` whose ONNX
      Runtime session uses ``num_threads`` intra-op threads.
    - ``.ts``, or a ``.pt`` holding an export's description (found by reading the zip
      archive's table of contents, without torch): imports torch, calls
      ``torch.set_num_threads(num_threads)`` and returns a TorchScript
      :class:`ExportedPolicy`.
    - any other ``.pt``: imports torch, calls ``torch.set_num_threads(num_threads)`` (and
      ``torch.manual_seed(seed)`` if a seed is given: eager policies draw their noise from
      torch's global generator) and returns the eager policy,
      ``il_core.checkpoint.load_policy(path, device=device)``.

    Either way the result drives a :class:`~il_core.execution.PolicyExecutor` the same way.

    Args:
        path: The policy file.
        device: Torch device for a training checkpoint. Exports run on the CPU only, so
            anything but ``"cpu"`` is refused for them.
        num_threads: Intra-op threads of the model (>= 1). Keep it low on a robot so that
            the other processes keep their cores.
        seed: Seed of the noise draws of stochastic policies (None: unseeded).

    Returns:
        An :class:`ExportedPolicy` for an export, the eager ``Policy`` (eval mode) for a
        training checkpoint.

    Raises:
        ExportError: naming the file if it is missing, has an unknown suffix, is not a
            loadable export, asks for a device other than the CPU for an export, or needs
            torch (TorchScript, checkpoints) or onnxruntime where it is not installed.
        il_core.checkpoint.CheckpointError: naming the file for a ``.pt`` that is neither a
            TorchScript export nor a readable il_core checkpoint.
    """
    path = Path(path)
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ExportError(f"{path}: num_threads must be an integer >= 1, got {num_threads!r}")
    if path.suffix not in POLICY_SUFFIXES:
        raise ExportError(f"{path}: unknown policy file suffix {path.suffix!r}; {_EXPECTED}")
    if not path.is_file():
        raise ExportError(f"{path}: policy file not found; {_EXPECTED}")
    if path.suffix == ".pt" and not is_torchscript_export(path):
        torch = _import_torch(path, "an il_core training checkpoint (.pt)")
        torch.set_num_threads(num_threads)
        if seed is not None:
            torch.manual_seed(seed)
        from il_core.checkpoint import load_policy

        return load_policy(path, device=device)
    if str(device).split(":")[0] != "cpu":
        raise ExportError(f"{path}: exported policies run on the CPU; got device {device!r}")
    if path.suffix != ".onnx":
        _import_torch(path, "a TorchScript export").set_num_threads(num_threads)
    return ExportedPolicy(path, num_threads=num_threads, seed=seed)
