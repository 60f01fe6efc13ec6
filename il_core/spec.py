"""Observation and action specifications shared by datasets, policies and checkpoints.

A :class:`DatasetSpec` describes everything a consumer needs to interpret a step without
looking at the data: the named observation keys (low-dimensional float vectors and uint8
camera images), the action (continuous with names, units and bounds, or discrete with a
number of classes), optional per-step extras (flags such as ``is_intervention``) and the
control rate. The same spec is stored in a dataset's ``meta.json`` and in every checkpoint,
so that a policy can refuse observations that do not match what it was trained on.

Specs are plain frozen dataclasses that round-trip through JSON-compatible dicts
(:meth:`DatasetSpec.to_dict` / :meth:`DatasetSpec.from_dict`); ``from_dict`` validates and
raises :class:`SpecError` naming the offending key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

FeatureKind = Literal["vector", "image"]
ActionKind = Literal["continuous", "discrete"]
ImageCodec = Literal["jpeg", "png", "h264", "av1"]

#: Image codecs that store each frame on its own (any frame decodes alone).
FRAME_CODECS = ("jpeg", "png")
#: Video codecs (:mod:`il_core.data.videocodec`): frames depend on the keyframe before them.
VIDEO_CODECS = ("h264", "av1")
#: Default keyframe interval of video cameras: a random frame costs on average about half of
#: it in decoded frames (see docs/benchmarks.md, "Video storage").
DEFAULT_GOP = 10
#: Default constant rate factor per video codec (x264's own default; SVT-AV1's 35).
DEFAULT_CRF = {"h264": 23, "av1": 35}


class SpecError(ValueError):
    """A spec, or data checked against a spec, is malformed. The message names the key."""


#: ``DatasetSpec.metadata`` key that marks a dataset of observations without actions
#: (state-only demonstrations: videos, observation logs; see :mod:`il_core.algos.bco`).
#: Its steps store a placeholder action (zeros, class 0) that means nothing;
#: :class:`il_core.data.EpisodeDataset` refuses such a dataset unless asked for
#: observations only. A metadata flag, so older datasets and readers are unchanged.
STATE_ONLY = "state_only"


def _tuple_or_none(value: Any, cast: type) -> tuple | None:
    if value is None:
        return None
    return tuple(cast(v) for v in value)


@dataclass(frozen=True)
class FeatureSpec:
    """One named per-step array: an observation key or a per-step extra.

    Attributes:
        kind: ``"vector"`` for a float32 vector of shape ``(D,)``, ``"image"`` for a uint8
            image of shape ``(H, W, C)`` with ``C`` in ``{1, 3}`` (RGB channel order).
        shape: Array shape of one step, without any batch or time dimension.
        names: Optional per-element names for vectors (joint names, state names).
        units: Optional per-element units for vectors (``"rad"``, ``"m/s"``).
        codec: Image storage codec: ``"jpeg"`` (lossy, the default) or ``"png"``
            (lossless), one file per frame; or ``"h264"`` / ``"av1"`` (lossy video, yuv420p,
            far smaller; see :mod:`il_core.data.videocodec`). Ignored for vectors.
        quality: JPEG quality 1..100 (ignored otherwise).
        gop: Video codecs: keyframe interval in frames (>= 1; 1 = every frame a keyframe).
            Reading a random frame decodes forward from the keyframe at or before it, so
            random access costs about ``gop / 2`` decoded frames. Ignored otherwise.
        crf: Video codecs: constant rate factor (lower is better quality), None for the
            codec's default (:data:`DEFAULT_CRF`): 0..51 for h264, 0..63 for av1.
    """

    kind: FeatureKind
    shape: tuple[int, ...]
    names: tuple[str, ...] | None = None
    units: tuple[str, ...] | None = None
    codec: ImageCodec = "jpeg"
    quality: int = 90
    gop: int = DEFAULT_GOP
    crf: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.kind not in ("vector", "image"):
            raise SpecError(f"feature kind must be 'vector' or 'image', got {self.kind!r}")
        if self.kind == "vector":
            if len(self.shape) != 1 or self.shape[0] < 1:
                raise SpecError(f"vector feature shape must be (D,) with D >= 1, got {self.shape}")
            for attr in ("names", "units"):
                val = getattr(self, attr)
                if val is not None and len(val) != self.shape[0]:
                    raise SpecError(
                        f"vector feature has {self.shape[0]} elements but {len(val)} {attr}"
                    )
        else:
            if len(self.shape) != 3 or self.shape[2] not in (1, 3) or min(self.shape) < 1:
                raise SpecError(
                    f"image feature shape must be (H, W, C) with C in 1|3, got {self.shape}"
                )
            codecs = FRAME_CODECS + VIDEO_CODECS
            if self.codec not in codecs:
                raise SpecError(
                    f"image codec must be one of {'|'.join(codecs)}, got {self.codec!r}"
                )
            if not 1 <= int(self.quality) <= 100:
                raise SpecError(f"jpeg quality must be in 1..100, got {self.quality}")
            if isinstance(self.gop, bool) or not isinstance(self.gop, int) or self.gop < 1:
                raise SpecError(
                    f"video gop (keyframe interval) must be an integer >= 1, got {self.gop!r}"
                )
            if self.crf is not None:
                top = 51 if self.codec == "h264" else 63
                if (
                    isinstance(self.crf, bool)
                    or not isinstance(self.crf, int)
                    or not (0 <= self.crf <= top)
                ):
                    raise SpecError(
                        f"video crf must be an integer in 0..{top} for {self.codec}, "
                        f"got {self.crf!r}"
                    )

    @property
    def dtype(self) -> np.dtype:
        """Storage dtype: float32 for vectors, uint8 for images."""
        return np.dtype(np.float32) if self.kind == "vector" else np.dtype(np.uint8)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (inverse of :meth:`from_dict`)."""
        d: dict[str, Any] = {"kind": self.kind, "shape": list(self.shape)}
        if self.kind == "vector":
            d["names"] = list(self.names) if self.names is not None else None
            d["units"] = list(self.units) if self.units is not None else None
        else:
            d["codec"] = self.codec
            d["quality"] = int(self.quality)
            if self.codec in VIDEO_CODECS:
                # Only for video cameras, so JPEG/PNG specs (and old files) are unchanged.
                d["gop"] = int(self.gop)
                d["crf"] = self.crf
        return d

    @property
    def is_video(self) -> bool:
        """Whether this image feature is stored as video (h264 or av1)."""
        return self.kind == "image" and self.codec in VIDEO_CODECS

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "feature") -> FeatureSpec:
        """Build from a dict, raising :class:`SpecError` that names ``where`` on bad input."""
        if not isinstance(d, dict):
            raise SpecError(f"{where}: expected a mapping, got {type(d).__name__}")
        allowed = {"kind", "shape", "names", "units", "codec", "quality", "gop", "crf"}
        unknown = set(d) - allowed
        if unknown:
            raise SpecError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(allowed)}")
        try:
            return cls(
                kind=d["kind"],
                shape=tuple(d["shape"]),
                names=_tuple_or_none(d.get("names"), str),
                units=_tuple_or_none(d.get("units"), str),
                codec=d.get("codec", "jpeg"),
                quality=int(d.get("quality", 90)),
                gop=d.get("gop", DEFAULT_GOP),
                crf=d.get("crf"),
            )
        except KeyError as e:
            raise SpecError(f"{where}: missing key {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise SpecError(f"{where}: {e}") from None


@dataclass(frozen=True)
class ActionSpec:
    """The action a policy outputs and a dataset stores per step.

    Attributes:
        kind: ``"continuous"`` (float32 vector of shape ``(D,)``) or ``"discrete"`` (one int64
            class index per step, stored with shape ``()``).
        dim: Number of continuous action dimensions (1 for discrete).
        num_classes: Number of classes for discrete actions (``None`` for continuous).
        names: Per-dimension names (continuous) or per-class names (discrete).
        units: Per-dimension units, continuous only.
        low: Per-dimension lower bounds (continuous only; ``-inf`` allowed).
        high: Per-dimension upper bounds (continuous only; ``+inf`` allowed).
    """

    kind: ActionKind
    dim: int = 1
    num_classes: int | None = None
    names: tuple[str, ...] | None = None
    units: tuple[str, ...] | None = None
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind == "continuous":
            if self.dim < 1:
                raise SpecError(f"continuous action dim must be >= 1, got {self.dim}")
            if self.num_classes is not None:
                raise SpecError("continuous action must not set num_classes")
            for attr in ("names", "units", "low", "high"):
                val = getattr(self, attr)
                if val is not None and len(val) != self.dim:
                    raise SpecError(f"action has dim {self.dim} but {len(val)} {attr}")
            if self.low is not None and self.high is not None:
                if any(lo > hi for lo, hi in zip(self.low, self.high, strict=True)):
                    raise SpecError(f"action low {self.low} exceeds high {self.high}")
        elif self.kind == "discrete":
            if self.num_classes is None or self.num_classes < 2:
                raise SpecError(f"discrete action needs num_classes >= 2, got {self.num_classes}")
            if self.dim != 1:
                raise SpecError("discrete action must have dim 1")
            if self.names is not None and len(self.names) != self.num_classes:
                raise SpecError(
                    f"discrete action has {self.num_classes} classes but {len(self.names)} names"
                )
        else:
            raise SpecError(f"action kind must be 'continuous' or 'discrete', got {self.kind!r}")

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-step array shape: ``(dim,)`` for continuous, ``()`` for discrete."""
        return (self.dim,) if self.kind == "continuous" else ()

    @property
    def dtype(self) -> np.dtype:
        """Storage dtype: float32 (continuous) or int64 (discrete)."""
        return np.dtype(np.float32) if self.kind == "continuous" else np.dtype(np.int64)

    def clip(self, action: np.ndarray) -> np.ndarray:
        """Clamp a continuous action to ``[low, high]``; discrete actions pass unchanged."""
        if self.kind != "continuous" or (self.low is None and self.high is None):
            return action
        low = -np.inf if self.low is None else np.asarray(self.low, dtype=np.float32)
        high = np.inf if self.high is None else np.asarray(self.high, dtype=np.float32)
        return np.clip(action, low, high).astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict. Infinite bounds are written as ``null``."""

        def _bounds(b: tuple[float, ...] | None) -> list[float | None] | None:
            return None if b is None else [None if math.isinf(x) else float(x) for x in b]

        return {
            "kind": self.kind,
            "dim": self.dim,
            "num_classes": self.num_classes,
            "names": list(self.names) if self.names is not None else None,
            "units": list(self.units) if self.units is not None else None,
            "low": _bounds(self.low),
            "high": _bounds(self.high),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "action") -> ActionSpec:
        """Build from a dict, raising :class:`SpecError` that names ``where`` on bad input."""
        if not isinstance(d, dict):
            raise SpecError(f"{where}: expected a mapping, got {type(d).__name__}")
        allowed = {"kind", "dim", "num_classes", "names", "units", "low", "high"}
        unknown = set(d) - allowed
        if unknown:
            raise SpecError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(allowed)}")

        def _bounds(b: Any, sign: float) -> tuple[float, ...] | None:
            if b is None:
                return None
            return tuple(sign * math.inf if x is None else float(x) for x in b)

        try:
            return cls(
                kind=d["kind"],
                dim=int(d.get("dim", 1)),
                num_classes=None if d.get("num_classes") is None else int(d["num_classes"]),
                names=_tuple_or_none(d.get("names"), str),
                units=_tuple_or_none(d.get("units"), str),
                low=_bounds(d.get("low"), -1.0),
                high=_bounds(d.get("high"), 1.0),
            )
        except KeyError as e:
            raise SpecError(f"{where}: missing key {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise SpecError(f"{where}: {e}") from None


@dataclass(frozen=True)
class DatasetSpec:
    """Observation/action contract of a dataset and of every policy trained on it.

    Attributes:
        observations: Observation keys in a fixed order, each a :class:`FeatureSpec`.
        action: The :class:`ActionSpec`.
        control_rate_hz: Nominal control (and recording) rate. The measured rate of each
            episode is stored separately in its metadata.
        extras: Optional per-step vector fields that are neither observation nor action
            (``is_intervention``, header stamps, expert labels). Keys must not collide with
            observation keys.
        metadata: Free-form JSON-compatible description (env id, robot, topic mapping).
    """

    observations: dict[str, FeatureSpec]
    action: ActionSpec
    control_rate_hz: float
    extras: dict[str, FeatureSpec] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.observations:
            raise SpecError("spec needs at least one observation key")
        for key in list(self.observations) + list(self.extras):
            if not isinstance(key, str) or not key or "/" in key or key.startswith("."):
                raise SpecError(f"invalid key {key!r}: use a non-empty name without '/'")
        clash = set(self.observations) & set(self.extras)
        if clash:
            raise SpecError(f"keys {sorted(clash)} are both observations and extras")
        for key, f in self.extras.items():
            if f.kind != "vector":
                raise SpecError(f"extra {key!r} must be a vector feature")
        if not (self.control_rate_hz > 0 and math.isfinite(self.control_rate_hz)):
            raise SpecError(
                f"control_rate_hz must be a positive number, got {self.control_rate_hz}"
            )

    @property
    def state_only(self) -> bool:
        """Whether steps hold observations without actions (``metadata[STATE_ONLY]``)."""
        return bool(self.metadata.get(STATE_ONLY, False))

    @property
    def image_keys(self) -> list[str]:
        """Observation keys holding camera images, in spec order."""
        return [k for k, f in self.observations.items() if f.kind == "image"]

    @property
    def vector_keys(self) -> list[str]:
        """Observation keys holding float vectors, in spec order."""
        return [k for k, f in self.observations.items() if f.kind == "vector"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (inverse of :meth:`from_dict`)."""
        return {
            "observations": {k: f.to_dict() for k, f in self.observations.items()},
            "action": self.action.to_dict(),
            "control_rate_hz": float(self.control_rate_hz),
            "extras": {k: f.to_dict() for k, f in self.extras.items()},
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "spec") -> DatasetSpec:
        """Build and validate from a dict; errors name ``where`` and the offending key."""
        if not isinstance(d, dict):
            raise SpecError(f"{where}: expected a mapping, got {type(d).__name__}")
        allowed = {"observations", "action", "control_rate_hz", "extras", "metadata"}
        unknown = set(d) - allowed
        if unknown:
            raise SpecError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(allowed)}")
        for req in ("observations", "action", "control_rate_hz"):
            if req not in d:
                raise SpecError(f"{where}: missing key {req!r}")
        obs = d["observations"]
        if not isinstance(obs, dict):
            raise SpecError(f"{where}.observations: expected a mapping")
        try:
            return cls(
                observations={
                    k: FeatureSpec.from_dict(v, f"{where}.observations.{k}")
                    for k, v in obs.items()
                },
                action=ActionSpec.from_dict(d["action"], f"{where}.action"),
                control_rate_hz=float(d["control_rate_hz"]),
                extras={
                    k: FeatureSpec.from_dict(v, f"{where}.extras.{k}")
                    for k, v in (d.get("extras") or {}).items()
                },
                metadata=dict(d.get("metadata") or {}),
            )
        except SpecError as e:
            if str(e).startswith(where):
                raise
            raise SpecError(f"{where}: {e}") from None
        except (TypeError, ValueError) as e:
            raise SpecError(f"{where}: {e}") from None

    def compatible_with(self, other: DatasetSpec) -> list[str]:
        """Differences that make data of ``other`` unusable by a consumer of ``self``.

        Metadata and image codec settings are ignored; keys, shapes, kinds and the action
        definition must match. Returns a list of human-readable differences (empty if OK).
        """
        problems: list[str] = []
        for k, f in self.observations.items():
            g = other.observations.get(k)
            if g is None:
                problems.append(f"observation {k!r} is missing")
            elif (f.kind, f.shape) != (g.kind, g.shape):
                problems.append(
                    f"observation {k!r}: expected {f.kind} {f.shape}, got {g.kind} {g.shape}"
                )
        a, b = self.action, other.action
        if (a.kind, a.dim, a.num_classes) != (b.kind, b.dim, b.num_classes):
            problems.append(
                f"action: expected {a.kind} dim={a.dim} classes={a.num_classes}, "
                f"got {b.kind} dim={b.dim} classes={b.num_classes}"
            )
        return problems

    def check_observation(self, obs: dict[str, np.ndarray], where: str = "observation") -> None:
        """Validate one step's observation dict: keys, shapes, dtypes, finiteness.

        Args:
            obs: ``{key: array}`` with vector arrays of shape ``(D,)`` and images
                ``(H, W, C)`` uint8.
            where: Prefix for error messages (for example ``"episode 3 step 17"``).

        Raises:
            SpecError: naming the key and what was expected.
        """
        unknown = set(obs) - set(self.observations)
        if unknown:
            raise SpecError(
                f"{where}: unknown observation keys {sorted(unknown)}; "
                f"spec has {list(self.observations)}"
            )
        for key, f in self.observations.items():
            if key not in obs:
                raise SpecError(f"{where}: missing observation key {key!r}")
            check_feature(obs[key], f, f"{where}: observation {key!r}")

    def check_action(self, action: Any, where: str = "action") -> np.ndarray:
        """Validate and convert one step's action; returns it with the spec's dtype and shape."""
        a = self.action
        arr = np.asarray(action)
        if a.kind == "discrete":
            if arr.shape not in ((), (1,)) or not np.issubdtype(arr.dtype, np.integer):
                raise SpecError(
                    f"{where}: expected one integer class index, got "
                    f"{arr.dtype} array of shape {arr.shape}"
                )
            v = int(arr.reshape(()))
            n = a.num_classes
            assert n is not None  # ActionSpec.__post_init__ requires it for discrete actions
            if not 0 <= v < int(n):
                raise SpecError(f"{where}: class {v} outside 0..{n - 1}")
            return np.asarray(v, dtype=np.int64)
        if arr.shape != (a.dim,):
            raise SpecError(f"{where}: expected shape ({a.dim},), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise SpecError(f"{where}: expected a real-valued array, got dtype {arr.dtype}")
        out = arr.astype(np.float32)
        if not np.all(np.isfinite(out)):
            raise SpecError(f"{where}: contains NaN or infinity: {out}")
        return out


def check_feature(value: Any, f: FeatureSpec, where: str) -> None:
    """Check one array against a :class:`FeatureSpec` (shape, dtype, finite values).

    Raises:
        SpecError: naming ``where`` and what was expected.
    """
    if not isinstance(value, np.ndarray):
        raise SpecError(f"{where}: expected a numpy array, got {type(value).__name__}")
    if value.shape != f.shape:
        raise SpecError(f"{where}: expected shape {f.shape}, got {value.shape}")
    if f.kind == "image":
        if value.dtype != np.uint8:
            raise SpecError(f"{where}: expected uint8 image, got {value.dtype}")
    else:
        if not (
            np.issubdtype(value.dtype, np.floating)
            or np.issubdtype(value.dtype, np.integer)
            or value.dtype == np.bool_
        ):
            raise SpecError(f"{where}: expected a real-valued vector, got dtype {value.dtype}")
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise SpecError(f"{where}: contains NaN or infinity")
