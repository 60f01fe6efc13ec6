"""Training-time augmentation: side-view label correction and image augmentation.

Configured by the optional ``augment:`` section of a training config (absent: training is
exactly as before)::

    augment:
      side_views:                 # SideViewConfig
        center: cam_center        # the camera the trained policy will see
        steering_index: 0         # which continuous action dimension is steering
        recovery_distance: 2.0    # m: derive offsets from the camera geometry ...
        wheelbase: 0.3            # ... as a steering angle (rad) of a bicycle model
        cameras:                  # CameraCorrection per side camera
          - {key: cam_left, lateral_offset: 0.2}     # derived: steer right
          - {key: cam_right, steering_offset: 0.09}  # or given directly
      image:                      # ImageAugmentConfig: training only, never at evaluation
        shift: 4
        brightness: 0.2

**Side views.** A camera mounted ``d`` metres to the left of the centre camera and yawed by
``psi`` sees what the centre camera would see had the robot drifted ``d`` to the left and
turned by ``psi``. Its frames are therefore demonstrations of a state the expert never
visited, labelled with the expert's action plus a correction that steers back (NVIDIA's
DAVE-2 car; the trail-following drone with three cameras). During training every sample's
window is drawn from the centre camera or, with probability proportional to the cameras'
weights, from one side camera, with the corrected label (:func:`correct_actions`) for every
step of its action chunk; the side camera's frames are put under the centre camera's key, so
the policy only ever sees that key. The trained policy's spec (:func:`policy_spec`) is the
dataset spec without the side cameras, and it runs wherever the centre camera is available
(``il-core eval`` feeds a policy only the keys of its spec).

The correction is either a fixed ``steering_offset`` (continuous actions, added to the
steering dimension and clipped to the action bounds), a ``class_map`` (discrete actions:
class ``i`` becomes ``class_map[i]``), or derived from the camera's ``lateral_offset`` and
``yaw`` by :func:`steering_offset_from_geometry`: pure pursuit back onto the centre camera's
path at ``recovery_distance`` ahead.

**Images.** Random shift (replicate-padded translation by up to ``shift`` pixels, the
DrQ augmentation) and colour jitter (brightness, contrast, saturation), drawn per sample and
shared by the frames of one history window. Applied to training batches only; validation
batches and evaluation never see it.

All randomness comes from ``numpy.random.default_rng((seed, rank, step))``, so a run is
reproducible and a resumed run draws what the uninterrupted one would have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from il_core.config import ConfigError
from il_core.constants import ACTION, OBS
from il_core.spec import ActionSpec, DatasetSpec

__all__ = [
    "AugmentConfig",
    "Augmenter",
    "CameraCorrection",
    "ImageAugmentConfig",
    "SideViewConfig",
    "augment_images",
    "correct_actions",
    "policy_spec",
    "steering_offset_from_geometry",
]


@dataclass
class CameraCorrection:
    """One side camera and the label correction of its frames.

    Give exactly one of: ``steering_offset`` (continuous), ``class_map`` (discrete), or the
    geometry ``lateral_offset``/``yaw`` (continuous; needs the side-view section's
    ``recovery_distance``).

    Attributes:
        key: The camera's observation key in the dataset.
        steering_offset: Added to the steering action of this camera's samples, in action
            units (+ = the direction of a positive steering action).
        class_map: Discrete actions: ``class_map[i]`` is the corrected class of class ``i``
            (length ``num_classes``).
        lateral_offset: Metres to the left (+) of the centre camera.
        yaw: Radians to the left (+, counter-clockwise seen from above) of the centre camera.
        weight: Relative probability of drawing a sample from this camera.
    """

    key: str = field(default="", metadata={"help": "the camera's observation key"})
    steering_offset: float | None = field(
        default=None, metadata={"help": "added to the steering action (action units)"}
    )
    class_map: tuple[int, ...] | None = field(
        default=None, metadata={"help": "discrete: corrected class of each class"}
    )
    lateral_offset: float | None = field(
        default=None, metadata={"help": "m to the left (+) of the centre camera"}
    )
    yaw: float | None = field(
        default=None, metadata={"help": "rad to the left (+) of the centre camera"}
    )
    weight: float = field(default=1.0, metadata={"help": "relative sampling weight"})

    def __post_init__(self) -> None:
        if not self.key:
            raise ConfigError("every camera needs a key")
        geometric = self.lateral_offset is not None or self.yaw is not None
        given = [self.steering_offset is not None, self.class_map is not None, geometric]
        if sum(given) != 1:
            raise ConfigError(
                f"camera {self.key!r}: give exactly one of steering_offset, class_map, or "
                "lateral_offset/yaw"
            )
        if not (self.weight >= 0 and math.isfinite(self.weight)):
            raise ConfigError(f"camera {self.key!r}: weight must be >= 0, got {self.weight}")
        if self.class_map is not None and (not self.class_map or min(self.class_map) < 0):
            raise ConfigError(f"camera {self.key!r}: class_map must list classes >= 0")


@dataclass
class SideViewConfig:
    """Side cameras whose frames become extra samples with corrected labels.

    Attributes:
        center: Key of the camera the policy sees (its frames keep their labels).
        cameras: The side cameras and their corrections.
        center_weight: Relative probability of a sample keeping the centre camera.
        steering_index: Continuous actions: the steering dimension.
        recovery_distance: Metres ahead at which a derived correction rejoins the centre
            camera's path (needed when a camera gives ``lateral_offset``/``yaw``).
        wheelbase: Derived corrections are steering angles (rad) of a bicycle model with
            this wheelbase (m); unset: they are path curvatures (1/m).
        steering_scale: Action units per radian (or per 1/m) of derived corrections, for
            example ``1 / max_steer`` for steering normalised to [-1, 1], or ``-1`` when a
            positive steering action turns right.
    """

    center: str = field(default="", metadata={"help": "key of the camera the policy sees"})
    cameras: tuple[CameraCorrection, ...] = field(
        default=(), metadata={"help": "side cameras: key + correction"}
    )
    center_weight: float = field(default=1.0, metadata={"help": "relative weight of centre"})
    steering_index: int = field(default=0, metadata={"help": "steering action dimension"})
    recovery_distance: float | None = field(
        default=None, metadata={"help": "m ahead to rejoin the path (derived offsets)"}
    )
    wheelbase: float | None = field(
        default=None, metadata={"help": "m; derived offsets become steering angles"}
    )
    steering_scale: float = field(
        default=1.0, metadata={"help": "action units per rad (or per 1/m)"}
    )

    def __post_init__(self) -> None:
        if not self.center:
            raise ConfigError("center: name the centre camera's key")
        if not self.cameras:
            raise ConfigError("cameras: list at least one side camera")
        keys = [c.key for c in self.cameras]
        if len(set(keys)) != len(keys) or self.center in keys:
            raise ConfigError(
                f"camera keys {keys} must be unique and differ from the centre {self.center!r}"
            )
        if not (self.center_weight >= 0 and math.isfinite(self.center_weight)):
            raise ConfigError("center_weight must be >= 0")
        if self.center_weight + sum(c.weight for c in self.cameras) <= 0:
            raise ConfigError("the camera weights must not all be 0")
        if self.steering_index < 0:
            raise ConfigError("steering_index must be >= 0")
        if self.wheelbase is not None and self.wheelbase <= 0:
            raise ConfigError("wheelbase must be > 0")
        if not math.isfinite(self.steering_scale) or self.steering_scale == 0:
            raise ConfigError("steering_scale must be a non-zero number")
        geometric = [c.key for c in self.cameras if c.steering_offset is None and not c.class_map]
        if geometric and not (self.recovery_distance and self.recovery_distance > 0):
            raise ConfigError(
                f"recovery_distance (m, > 0) is needed to derive the corrections "
                f"of cameras {geometric} from lateral_offset/yaw"
            )


@dataclass
class ImageAugmentConfig:
    """Random image augmentation of training batches (never of evaluation).

    Attributes:
        shift: Maximum translation in pixels (replicate padding), 0 disables.
        brightness: Brightness factor drawn from ``[1 - b, 1 + b]``.
        contrast: Contrast factor drawn from ``[1 - c, 1 + c]`` (around the frame's mean).
        saturation: Saturation factor from ``[1 - s, 1 + s]`` (RGB cameras only).
        keys: Image keys to augment; empty: every image key the policy sees.
    """

    shift: int = field(default=0, metadata={"help": "max shift in pixels, 0 disables"})
    brightness: float = field(default=0.0, metadata={"help": "brightness jitter, 0..1"})
    contrast: float = field(default=0.0, metadata={"help": "contrast jitter, 0..1"})
    saturation: float = field(default=0.0, metadata={"help": "saturation jitter, 0..1"})
    keys: tuple[str, ...] = field(default=(), metadata={"help": "image keys; empty = all"})

    def __post_init__(self) -> None:
        if self.shift < 0:
            raise ConfigError(f"shift must be >= 0, got {self.shift}")
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {v}")

    @property
    def active(self) -> bool:
        """Whether any augmentation is switched on."""
        return bool(self.shift or self.brightness or self.contrast or self.saturation)


@dataclass
class AugmentConfig:
    """The ``augment:`` section of a training config.

    Attributes:
        side_views: Side-camera samples with corrected labels (None: off).
        image: Image augmentation of training batches (None: off).
    """

    side_views: SideViewConfig | None = field(
        default=None, metadata={"help": "side cameras with corrected labels"}
    )
    image: ImageAugmentConfig | None = field(
        default=None, metadata={"help": "random shift and colour jitter (training only)"}
    )


# ---------------------------------------------------------------------- pure functions


def steering_offset_from_geometry(
    lateral_offset: float,
    yaw: float,
    recovery_distance: float,
    wheelbase: float | None = None,
    steering_scale: float = 1.0,
) -> float:
    """Steering correction of a camera displaced from the centre camera, by pure pursuit.

    The side camera's view is the centre camera's view after a drift of ``lateral_offset``
    (left +) and a turn of ``yaw`` (left +). Steering back to the centre camera's path point
    ``L = recovery_distance`` ahead: that point lies at ``x' = L cos(yaw) - d sin(yaw)``,
    ``y' = -L sin(yaw) - d cos(yaw)`` in the displaced frame, and pure pursuit's curvature is
    ``kappa = 2 y' / (x'^2 + y'^2)``. With a ``wheelbase`` ``W`` the result is the bicycle
    model's steering angle ``atan(W kappa)`` (rad), else ``kappa`` itself (1/m); either
    times ``steering_scale``. Added to the expert's steering this is exact for straight
    roads and a first-order approximation in curves.

    Args:
        lateral_offset: ``d``, metres to the left of the centre camera.
        yaw: Radians to the left of the centre camera.
        recovery_distance: ``L`` > 0, metres.
        wheelbase: ``W`` > 0 (m), or None for a curvature.
        steering_scale: Action units per radian (or per 1/m).

    Returns:
        The offset in action units: negative (steer right) for a camera on the left.
    """
    if recovery_distance <= 0:
        raise ValueError(f"recovery_distance must be > 0, got {recovery_distance}")
    d, psi, L = float(lateral_offset), float(yaw), float(recovery_distance)
    x = L * math.cos(psi) - d * math.sin(psi)
    y = -L * math.sin(psi) - d * math.cos(psi)
    kappa = 2.0 * y / (x * x + y * y)
    value = kappa if wheelbase is None else math.atan(float(wheelbase) * kappa)
    return value * float(steering_scale)


def correct_actions(
    actions: np.ndarray,
    action: ActionSpec,
    *,
    steering_offset: float | None = None,
    class_map: tuple[int, ...] | np.ndarray | None = None,
    steering_index: int = 0,
) -> np.ndarray:
    """Side-camera labels from centre-camera labels. Pure: returns a new array.

    Args:
        actions: Continuous ``(..., D)`` float, or discrete ``(...)`` integer classes.
        action: The action spec (kind, bounds, number of classes).
        steering_offset: Continuous: added to ``actions[..., steering_index]``, then that
            dimension is clipped to the spec's bounds.
        class_map: Discrete: class ``i`` becomes ``class_map[i]``.
        steering_index: Continuous: the steering dimension.

    Returns:
        Corrected actions, same shape and dtype as ``actions``.

    Raises:
        ValueError: the correction does not fit the action kind, an index or class is out
            of range.
    """
    actions = np.asarray(actions)
    if action.kind == "discrete":
        if class_map is None or steering_offset is not None:
            raise ValueError("discrete actions are corrected by a class_map only")
        table = np.asarray(class_map, dtype=np.int64)
        n = int(action.num_classes or 0)
        if table.shape != (n,) or table.min() < 0 or table.max() >= n:
            raise ValueError(f"class_map must map each of {n} classes to 0..{n - 1}, got {table}")
        return table[actions.astype(np.int64)].astype(actions.dtype)
    if steering_offset is None or class_map is not None:
        raise ValueError("continuous actions are corrected by a steering_offset only")
    if not 0 <= steering_index < action.dim:
        raise ValueError(f"steering_index {steering_index} outside 0..{action.dim - 1}")
    out = np.array(actions, copy=True)
    col = out[..., steering_index] + steering_offset
    lo = -np.inf if action.low is None else action.low[steering_index]
    hi = np.inf if action.high is None else action.high[steering_index]
    out[..., steering_index] = np.clip(col, lo, hi)
    return out


def policy_spec(spec: DatasetSpec, side_views: SideViewConfig) -> DatasetSpec:
    """The spec a side-view-trained policy consumes: the dataset's without the side cameras.

    The centre camera keeps its key, so the policy runs in any env or on any robot that
    provides that camera; the side cameras are recorded for training only. The
    configuration is noted in ``metadata["side_views"]``.
    """
    side = {c.key for c in side_views.cameras}
    kept = {k: f for k, f in spec.observations.items() if k not in side}
    note = {"center": side_views.center, "cameras": sorted(side)}
    return replace(spec, observations=kept, metadata={**spec.metadata, "side_views": note})


def augment_images(
    frames: np.ndarray, cfg: ImageAugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """Random shift and colour jitter of a batch of frame histories.

    Args:
        frames: ``(B, k, H, W, C)`` uint8; the k frames of one sample get the same draw.
        cfg: What to apply.
        rng: Source of randomness.

    Returns:
        ``(B, k, H, W, C)`` uint8, a new array.
    """
    b, _, h, w, c = frames.shape
    out = frames
    if cfg.shift:
        # Size as a shape tuple: numpy's stubs type a bare (untyped) size as the scalar case.
        dy = rng.integers(-cfg.shift, cfg.shift + 1, (b,))
        dx = rng.integers(-cfg.shift, cfg.shift + 1, (b,))
        rows = np.clip(np.arange(h)[None] + dy[:, None], 0, h - 1)
        cols = np.clip(np.arange(w)[None] + dx[:, None], 0, w - 1)
        # Advanced indices split by the k slice: the result is (B, H, W, k, C).
        out = frames[np.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        out = np.ascontiguousarray(out.transpose(0, 3, 1, 2, 4))
    if not (cfg.brightness or cfg.contrast or (cfg.saturation and c == 3)):
        return out if out is not frames else frames.copy()
    x = out.astype(np.float32)

    def factor(amount: float) -> np.ndarray:
        return rng.uniform(1.0 - amount, 1.0 + amount, (b, 1, 1, 1, 1)).astype(np.float32)

    if cfg.brightness:
        x *= factor(cfg.brightness)
    if cfg.contrast:
        mean = x.mean(axis=(2, 3, 4), keepdims=True)
        x = (x - mean) * factor(cfg.contrast) + mean
    if cfg.saturation and c == 3:
        gray = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        x = (x - gray) * factor(cfg.saturation) + gray
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------- the batch transform


class Augmenter:
    """The ``augment:`` section bound to a dataset: batch transforms and the policy's spec.

    Args:
        cfg: The validated config.
        spec: The dataset's spec.
        seed: Run seed; draws depend only on ``(seed, rank, step)``.
        rank: Process rank under ``torchrun`` (0 otherwise).

    Attributes:
        policy_spec: The spec to build the policy with.

    Raises:
        ConfigError: a key that is not an image of the dataset, a correction that does not
            fit the action (naming the camera).
    """

    def __init__(self, cfg: AugmentConfig, spec: DatasetSpec, seed: int = 0, rank: int = 0):
        self.cfg, self.spec, self.seed, self.rank = cfg, spec, int(seed), int(rank)
        self.policy_spec = spec
        self._sources: list[str] = []
        self._weights = np.zeros(0)
        self._corrections: dict[str, dict[str, Any]] = {}
        sv = cfg.side_views
        if sv is not None:
            images = set(spec.image_keys)
            for key in [sv.center, *(c.key for c in sv.cameras)]:
                if key not in images:
                    raise ConfigError(
                        f"augment.side_views: {key!r} is not a camera of the dataset; "
                        f"cameras: {spec.image_keys}"
                    )
                if spec.observations[key].shape != spec.observations[sv.center].shape:
                    raise ConfigError(
                        f"augment.side_views: camera {key!r} has shape "
                        f"{spec.observations[key].shape}, centre {sv.center!r} "
                        f"{spec.observations[sv.center].shape}"
                    )
            for cam in sv.cameras:
                self._corrections[cam.key] = self._resolve(cam, sv, spec.action)
            self._sources = [sv.center, *(c.key for c in sv.cameras)]
            w = np.array([sv.center_weight, *(c.weight for c in sv.cameras)], np.float64)
            self._weights = w / w.sum()
            self.policy_spec = policy_spec(spec, sv)
        im = cfg.image
        if im is not None:
            unknown = sorted(set(im.keys) - set(self.policy_spec.image_keys))
            if unknown:
                raise ConfigError(
                    f"augment.image.keys: {unknown} are not cameras the policy sees "
                    f"({self.policy_spec.image_keys})"
                )

    @staticmethod
    def _resolve(cam: CameraCorrection, sv: SideViewConfig, action: ActionSpec) -> dict[str, Any]:
        """Keyword arguments of :func:`correct_actions` for one camera, checked."""
        where = f"augment.side_views camera {cam.key!r}"
        if action.kind == "discrete":
            n = int(action.num_classes or 0)
            if cam.class_map is None:
                raise ConfigError(f"{where}: discrete actions need a class_map")
            if len(cam.class_map) != n or max(cam.class_map) >= n:
                raise ConfigError(
                    f"{where}: class_map needs {n} entries in 0..{n - 1}, got {cam.class_map}"
                )
            return {"class_map": tuple(cam.class_map)}
        if cam.class_map is not None:
            raise ConfigError(f"{where}: class_map is for discrete actions; use steering_offset")
        if sv.steering_index >= action.dim:
            raise ConfigError(
                f"augment.side_views.steering_index {sv.steering_index} outside the "
                f"{action.dim} action dimensions"
            )
        offset = cam.steering_offset
        if offset is None:
            offset = steering_offset_from_geometry(
                cam.lateral_offset or 0.0,
                cam.yaw or 0.0,
                float(sv.recovery_distance or 0.0),
                sv.wheelbase,
                sv.steering_scale,
            )
        return {"steering_offset": float(offset), "steering_index": sv.steering_index}

    @property
    def steering_offsets(self) -> dict[str, float]:
        """Resolved continuous offsets by camera key (empty for discrete actions)."""
        return {
            k: v["steering_offset"] for k, v in self._corrections.items() if "steering_offset" in v
        }

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary (resolved corrections, sampling probabilities)."""
        out: dict[str, Any] = {}
        if self._sources:
            out["side_views"] = {
                "probabilities": dict(
                    zip(self._sources, self._weights.round(4).tolist(), strict=True)
                ),
                "corrections": self._corrections,
            }
        if self.cfg.image is not None:
            out["image"] = {"active": self.cfg.image.active}
        return out

    def adjust_stats(self, stats: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
        """Action statistics of the label mixture training will see.

        Continuous: the steering dimension's mean and std are those of the mixture of the
        centre labels and the offset labels (exact before clipping to the bounds); min and
        max widen by the offsets (then clipped). Discrete: class counts are remapped per
        camera and mixed with the sampling probabilities.

        Returns:
            A new stats dict; ``stats`` is not modified.
        """
        if not self._sources or "action" not in stats:
            return stats
        out = {k: dict(v) for k, v in stats.items()}
        act = self.spec.action
        probs = self._weights
        if act.kind == "discrete":
            counts = np.asarray(stats["action"]["counts"], np.float64)
            mixed = probs[0] * counts
            for p, key in zip(probs[1:], self._sources[1:], strict=True):
                table = np.asarray(self._corrections[key]["class_map"])
                mixed += p * np.bincount(table, weights=counts, minlength=len(counts))
            out["action"]["counts"] = np.rint(mixed).astype(np.int64)
            return out
        i = self.cfg.side_views.steering_index  # type: ignore[union-attr]
        offsets = np.array(
            [0.0] + [self._corrections[k]["steering_offset"] for k in self._sources[1:]]
        )
        a = {k: np.array(v, dtype=np.float64, copy=True) for k, v in stats["action"].items()}
        mean_shift = float((probs * offsets).sum())
        var_shift = float((probs * offsets**2).sum()) - mean_shift**2
        a["std"][i] = math.sqrt(float(a["std"][i]) ** 2 + var_shift)
        a["mean"][i] += mean_shift
        used = offsets[probs > 0]
        lo = -np.inf if act.low is None else act.low[i]
        hi = np.inf if act.high is None else act.high[i]
        a["min"][i] = np.clip(a["min"][i] + used.min(), lo, hi)
        a["max"][i] = np.clip(a["max"][i] + used.max(), lo, hi)
        out["action"] = {k: v.astype(np.float32) for k, v in a.items()}
        return out

    def _rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.rank, int(step)))

    def _select_cameras(self, batch: dict[str, Any], choice: np.ndarray | None) -> dict[str, Any]:
        """Put the chosen camera's frames under the centre key, fix labels, drop side keys."""
        sv = self.cfg.side_views
        assert sv is not None
        obs = dict(batch[OBS])
        centre = obs[sv.center]
        actions = batch[ACTION]
        if choice is not None and (choice > 0).any():
            centre = centre.copy()
            actions = actions.copy()
            for j, key in enumerate(self._sources[1:], start=1):
                rows = np.flatnonzero(choice == j)
                if rows.size:
                    centre[rows] = obs[key][rows]
                    actions[rows] = correct_actions(
                        actions[rows], self.spec.action, **self._corrections[key]
                    )
        obs[sv.center] = centre
        for key in self._sources[1:]:
            obs.pop(key, None)
        return {**batch, OBS: obs, ACTION: actions}

    def train_batch(self, batch: dict[str, Any], step: int) -> dict[str, Any]:
        """Training transform of a window batch (see :meth:`EpisodeDataset.window`).

        Args:
            batch: ``OBS`` ``{key: (B, k, ...)}``, ``ACTION`` ``(B, h, D)`` or ``(B, h)``, ...
            step: Optimiser step (seeds the draws).

        Returns:
            A new batch: side cameras folded into the centre key with corrected labels,
            images augmented; other entries unchanged.
        """
        rng = self._rng(step)
        if self._sources:
            n = len(batch[ACTION])
            batch = self._select_cameras(batch, rng.choice(len(self._sources), n, p=self._weights))
        im = self.cfg.image
        if im is not None and im.active:
            obs = dict(batch[OBS])
            for key in im.keys or self.policy_spec.image_keys:
                obs[key] = augment_images(obs[key], im, rng)
            batch = {**batch, OBS: obs}
        return batch

    def eval_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Validation transform: centre camera only, labels and images untouched."""
        if not self._sources:
            return batch
        return self._select_cameras(batch, None)
