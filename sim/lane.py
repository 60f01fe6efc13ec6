"""Lane following from cameras: a car-like robot on seeded, procedurally generated closed tracks.

``il_ros/LaneFollow-v0`` (and ``il_ros/LaneFollowNoisy-v0``, the same env with evaluation
noise) is the simulator of side-view augmentation (issue 4): an expert that drives exactly
on the centreline records no recovery data, so behaviour cloning from its centre camera is
left with the weak correction it infers from the road's perspective and drifts off the road
under a large steering bias, while the side cameras supply the missing "I am off-centre,
steer back" frames (figures in ``docs/benchmarks.md``).

World and car (REP-103 conventions: x forward, y left, angles counter-clockwise):

- A track is a closed star-shaped curve ``r(theta) = R0 (1 + sum_m a_m cos(m theta +
  phi_m))`` with random radius, harmonics, start point and direction, all drawn from the
  episode's seed (``reset(seed=...)``). It is rejected and redrawn until its tightest radius
  of curvature is at least ``min_track_radius`` and no two distant parts of the road come
  closer than one road width, so every track is drivable. The road is ``2 * road_half_width``
  wide, with white edge lines and a dashed yellow centre line; grass has a smooth,
  per-track random texture.
- The car is a kinematic bicycle (reference point: rear axle, wheelbase ``wheelbase``),
  integrated with ``substeps`` Euler steps per control step of ``dt`` seconds.
- Action ``Box(2)``: ``[steering angle (rad, + = left), speed (m/s)]``, within
  ``[-max_steer, max_steer] x [0, max_speed]``. Speed is commanded (not fixed) so that the
  action is what a real car-like robot takes; the expert holds ``expert_speed``, so a
  cloned policy learns a nearly constant speed and the interesting part is steering.
  Steering comes first so that index 0 is the steering of both this env and CarRacing-v3.
- Observation ``Dict``: one ``(S, S, 3)`` uint8 RGB image per camera (default
  ``cam_left``, ``cam_center``, ``cam_right``), no low-dimensional state: the policy must
  see the road. Each camera sits ``camera_forward`` ahead of the rear axle, at
  ``lateral_offset`` (+ = left) and ``camera_height``, yawed by ``yaw`` (+ = left) and
  pitched down by ``camera_pitch``; it renders the ground plane with one
  ``cv2.warpPerspective`` of the pre-rendered top-down track map (a homography: the ground
  is flat), and haze above ``draw_distance``.
- Episode: ``terminated`` with ``info["is_success"] = True`` after a full lap (progress
  along the centreline >= track length), ``terminated`` with ``is_success = False`` when the
  car's centre leaves the road (``|lateral error| > road_half_width``), ``truncated`` after
  ``time_limit_factor`` times the lap time at ``expert_speed`` (a car that stops).
- Reward: progress along the centreline in metres (so a lap returns the track length).
- ``info``: ``distance`` (m of progress), ``lap_fraction``, ``lateral_error`` (m, signed,
  + = left of the centreline), ``mean_lateral_error`` (mean absolute lateral error over the
  episode so far, m), ``track_length`` (m), ``off_road``, ``is_success``, and
  ``steering_bias`` (the bias applied this episode).
- Evaluation noise (off by default): ``steering_bias`` (rad) added to every steering
  command (sign drawn per episode when ``random_bias_sign``), ``steering_noise`` (rad,
  Gaussian per step), ``speed_noise`` (relative, Gaussian per step), and a random start
  offset (``start_lateral_std`` m, ``start_heading_std`` rad).

Speed: one 64x64 camera renders at 6k to 17k frames/s on one core of the shared development
machine, depending on the other jobs (``bench/bench_lane.py``, ``docs/benchmarks.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

__all__ = [
    "DEFAULT_CAMERAS",
    "CameraMount",
    "LaneFollowEnv",
    "Track",
    "generate_track",
]


@dataclass(frozen=True)
class CameraMount:
    """Where one virtual camera sits on the car, relative to the centre camera.

    Attributes:
        name: Observation key (``"cam_left"``).
        lateral_offset: Metres to the left (+) or right (-) of the car's centre line.
        yaw: Radians to the left (+) or right (-) of the car's heading.
    """

    name: str
    lateral_offset: float = 0.0
    yaw: float = 0.0


#: Left, centre and right cameras, 0.2 m apart, looking straight ahead.
DEFAULT_CAMERAS: tuple[CameraMount, ...] = (
    CameraMount("cam_left", 0.2, 0.0),
    CameraMount("cam_center", 0.0, 0.0),
    CameraMount("cam_right", -0.2, 0.0),
)

# Colours (RGB). Grass and road get a smooth per-track texture on top.
_SKY = (170, 200, 230)
_GRASS = (70, 130, 60)
_ROAD = (95, 95, 100)
_EDGE = (235, 235, 235)
_CENTRE = (225, 195, 40)


@dataclass(frozen=True)
class Track:
    """A closed centreline sampled every ``ds`` metres.

    Attributes:
        points: ``(N, 2)`` float64 centreline points (m), in driving order.
        tangents: ``(N, 2)`` unit tangents (driving direction).
        normals: ``(N, 2)`` unit left normals.
        ds: Spacing between consecutive points (m); the last point connects to the first.
        length: Total length ``N * ds`` (m).
        min_radius: Tightest radius of curvature (m).
    """

    points: np.ndarray
    tangents: np.ndarray
    normals: np.ndarray
    ds: float
    length: float
    min_radius: float

    def __post_init__(self) -> None:
        n = len(self.points)
        if self.points.shape != (n, 2) or n < 8:
            raise ValueError(f"track needs (N >= 8, 2) points, got {self.points.shape}")
        if self.tangents.shape != (n, 2) or self.normals.shape != (n, 2):
            raise ValueError("tangents and normals must match points in shape")


def _polar_curve(
    theta: np.ndarray, r0: float, amps: np.ndarray, phases: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``r(theta)`` and its derivatives ``(r, r', r'')`` of the harmonic track shape."""
    m = np.arange(2, 2 + len(amps))[:, None]
    arg = m * theta[None, :] + phases[:, None]
    r = r0 * (1.0 + (amps[:, None] * np.cos(arg)).sum(0))
    dr = r0 * (-(amps[:, None] * m * np.sin(arg)).sum(0))
    ddr = r0 * (-(amps[:, None] * m**2 * np.cos(arg)).sum(0))
    return r, np.stack([dr, ddr])


def generate_track(
    rng: np.random.Generator,
    *,
    radius: tuple[float, float] = (4.0, 6.0),
    amplitude: float = 0.3,
    harmonics: int = 3,
    min_radius: float = 2.0,
    clearance: float = 1.0,
    ds: float = 0.05,
    max_tries: int = 200,
) -> Track:
    """Draw a random closed track whose every curve is drivable.

    Args:
        rng: Source of randomness (the env passes its seeded ``np_random``).
        radius: Range of the mean radius ``R0`` (m).
        amplitude: Harmonic ``m`` (2, 3, ...) gets a relative amplitude uniform in
            ``+-amplitude / (m - 1)``.
        harmonics: Number of harmonics.
        min_radius: Smallest allowed radius of curvature (m).
        clearance: Smallest allowed distance (m) between centreline points more than
            ``3 * clearance`` apart along the track (keeps road bands from touching).
        ds: Spacing of the returned points (m).
        max_tries: Redraws before giving up.

    Returns:
        The :class:`Track`, starting at a random point, in a random direction.

    Raises:
        RuntimeError: no drivable track after ``max_tries`` draws (impossible settings).
    """
    theta = np.linspace(0.0, 2 * np.pi, 2048, endpoint=False)
    for _ in range(max_tries):
        r0 = rng.uniform(*radius)
        m = np.arange(2, 2 + harmonics)
        amps = rng.uniform(-1.0, 1.0, harmonics) * amplitude / (m - 1)
        phases = rng.uniform(0.0, 2 * np.pi, harmonics)
        r, (dr, ddr) = _polar_curve(theta, r0, amps, phases)
        if r.min() <= 0.3 * r0:
            continue
        # Curvature of a polar curve: (r^2 + 2 r'^2 - r r'') / (r^2 + r'^2)^(3/2).
        kappa = (r**2 + 2 * dr**2 - r * ddr) / (r**2 + dr**2) ** 1.5
        tightest = 1.0 / np.abs(kappa).max()
        if tightest < min_radius:
            continue
        xy = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
        # Resample uniformly by arc length.
        seg = np.linalg.norm(np.diff(np.vstack([xy, xy[:1]]), axis=0), axis=1)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        length = float(s[-1])
        n = int(round(length / ds))
        s_new = np.arange(n) * (length / n)
        closed = np.vstack([xy, xy[:1]])
        pts = np.stack(
            [np.interp(s_new, s, closed[:, 0]), np.interp(s_new, s, closed[:, 1])], axis=1
        )
        step = length / n
        gap = int(math.ceil(3 * clearance / step))
        sub = pts[:: max(1, n // 400)]
        d = np.linalg.norm(sub[:, None] - sub[None], axis=-1)
        idx = np.arange(len(sub)) * max(1, n // 400)
        sep = np.abs(idx[:, None] - idx[None])
        sep = np.minimum(sep, n - sep)
        if (d[sep > gap] < clearance).any():
            continue
        if rng.random() < 0.5:
            pts = pts[::-1]
        pts = np.roll(pts, -int(rng.integers(n)), axis=0)
        tang = np.roll(pts, -1, axis=0) - np.roll(pts, 1, axis=0)
        tang /= np.linalg.norm(tang, axis=1, keepdims=True)
        normals = np.stack([-tang[:, 1], tang[:, 0]], axis=1)
        return Track(pts, tang, normals, step, length, float(tightest))
    raise RuntimeError(f"no drivable track in {max_tries} draws; relax min_radius/amplitude")


def _as_mount(c: Any) -> CameraMount:
    if isinstance(c, CameraMount):
        return c
    if isinstance(c, dict):
        return CameraMount(**c)
    return CameraMount(*c)


class LaneFollowEnv(gym.Env):
    """Camera-based lane following on a random closed track (see the module docstring).

    Args:
        render_mode: ``None`` or ``"rgb_array"`` (top-down view plus the camera images).
        image_size: Camera images are ``(image_size, image_size, 3)``.
        cameras: Camera mounts: :class:`CameraMount`, ``(name, lateral_offset, yaw)`` tuples
            or dicts; names become the observation keys.
        camera_height: Height of the cameras above the ground (m).
        camera_pitch: Downward tilt of the cameras (rad).
        camera_fov: Horizontal (= vertical) field of view (rad).
        camera_forward: Distance of the cameras ahead of the rear axle (m).
        draw_distance: Ground farther than this (m) is drawn as haze.
        road_half_width: Half the road width (m); leaving it ends the episode.
        wheelbase: Distance between the axles (m).
        max_steer: Steering angle bound (rad).
        max_speed: Speed bound (m/s).
        expert_speed: Speed of the expert (m/s); also sets the time limit.
        dt: Control period (s); the env's ``render_fps`` is ``1 / dt``.
        substeps: Euler integration steps per control step.
        time_limit_factor: Truncate after this many times the lap time at ``expert_speed``.
        steering_bias: Constant steering offset added to every command (rad).
        random_bias_sign: Draw the bias sign per episode (else it is always as given).
        steering_noise: Std of Gaussian steering noise per step (rad).
        speed_noise: Std of Gaussian relative speed noise per step.
        start_lateral_std: Std of the start offset from the centreline (m).
        start_heading_std: Std of the start heading error (rad).
        track_radius: Range of the tracks' mean radius (m).
        track_amplitude: Relative amplitude of the tracks' harmonics.
        min_track_radius: Tightest allowed radius of curvature (m).
        pixels_per_meter: Resolution of the top-down map the cameras sample.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        render_mode: str | None = None,
        *,
        image_size: int = 64,
        cameras: Sequence[Any] = DEFAULT_CAMERAS,
        camera_height: float = 0.5,
        camera_pitch: float = 0.6,
        camera_fov: float = 1.4,
        camera_forward: float = 0.3,
        draw_distance: float = 5.0,
        road_half_width: float = 0.5,
        wheelbase: float = 0.3,
        max_steer: float = 0.5,
        max_speed: float = 2.0,
        expert_speed: float = 1.5,
        dt: float = 0.1,
        substeps: int = 2,
        time_limit_factor: float = 3.0,
        steering_bias: float = 0.0,
        random_bias_sign: bool = False,
        steering_noise: float = 0.0,
        speed_noise: float = 0.0,
        start_lateral_std: float = 0.0,
        start_heading_std: float = 0.0,
        track_radius: tuple[float, float] = (4.0, 6.0),
        track_amplitude: float = 0.3,
        min_track_radius: float = 2.0,
        pixels_per_meter: float = 40.0,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.cameras = tuple(_as_mount(c) for c in cameras)
        names = [c.name for c in self.cameras]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique and non-empty, got {names}")
        if not 16 <= image_size <= 256:
            raise ValueError(f"image_size must be in 16..256, got {image_size}")
        if not 0 < camera_fov < math.pi * 0.9 or camera_height <= 0 or draw_distance <= 0:
            raise ValueError("camera_fov in (0, 0.9 pi), camera_height > 0, draw_distance > 0")
        if min(road_half_width, wheelbase, max_steer, max_speed, expert_speed, dt) <= 0:
            raise ValueError("road_half_width, wheelbase, max_steer, speeds and dt must be > 0")
        if substeps < 1 or time_limit_factor <= 1.0:
            raise ValueError("substeps must be >= 1 and time_limit_factor > 1")
        self.render_mode = render_mode
        self.image_size = int(image_size)
        self.camera_height = float(camera_height)
        self.camera_pitch = float(camera_pitch)
        self.camera_fov = float(camera_fov)
        self.camera_forward = float(camera_forward)
        self.draw_distance = float(draw_distance)
        self.road_half_width = float(road_half_width)
        self.wheelbase = float(wheelbase)
        self.max_steer = float(max_steer)
        self.max_speed = float(max_speed)
        self.expert_speed = float(expert_speed)
        self.dt = float(dt)
        self.substeps = int(substeps)
        self.time_limit_factor = float(time_limit_factor)
        self.steering_bias = float(steering_bias)
        self.random_bias_sign = bool(random_bias_sign)
        self.steering_noise = float(steering_noise)
        self.speed_noise = float(speed_noise)
        self.start_lateral_std = float(start_lateral_std)
        self.start_heading_std = float(start_heading_std)
        self.track_radius = (float(track_radius[0]), float(track_radius[1]))
        self.track_amplitude = float(track_amplitude)
        self.min_track_radius = float(min_track_radius)
        self.pixels_per_meter = float(pixels_per_meter)
        self.metadata = {**self.metadata, "render_fps": 1.0 / self.dt}

        s = self.image_size
        self.observation_space = gym.spaces.Dict(
            {c.name: gym.spaces.Box(0, 255, (s, s, 3), np.uint8) for c in self.cameras}
        )
        self.action_space: gym.spaces.Box = gym.spaces.Box(
            np.array([-self.max_steer, 0.0], dtype=np.float32),
            np.array([self.max_steer, self.max_speed], dtype=np.float32),
            dtype=np.float32,
        )
        f = (s / 2.0) / math.tan(self.camera_fov / 2.0)
        c = (s - 1) / 2.0
        self._K = np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])
        # Image rows whose rays meet the ground beyond draw_distance (or never): haze. The
        # cameras have no roll, so this is one row index for every pose.
        below = math.atan2(self.camera_height, self.draw_distance) - self.camera_pitch
        self._haze_rows = int(np.clip(math.ceil(c + f * math.tan(below)), 0, s))
        self.track: Track | None = None
        self._map: np.ndarray | None = None
        self._state = np.zeros(3)  # rear axle x, y, heading

    # ------------------------------------------------------------------ track and map

    def _build_map(self, track: Track) -> None:
        """Render the top-down map (grass, road, edge lines, dashed centre line)."""
        ppm = self.pixels_per_meter
        margin = self.road_half_width + 1.0
        lo = track.points.min(0) - margin
        hi = track.points.max(0) + margin
        w, h = (int(math.ceil(v * ppm)) for v in hi - lo)
        rng = self.np_random
        # Smooth texture: low-resolution noise upsampled (cheap, and JPEG-friendly).
        noise = rng.normal(0.0, 1.0, (max(2, h // 24), max(2, w // 24), 1)).astype(np.float32)
        tex = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
        grass = np.asarray(_GRASS, np.float32) * (1.0 + 0.12 * tex)
        road = np.asarray(_ROAD, np.float32) * (1.0 + 0.04 * tex)
        # Map pixel (u, v) <-> world (x, y): u = (x - x0) ppm, v = (y1 - y) ppm.
        self._map_origin = (float(lo[0]), float(hi[1]))

        def px(xy: np.ndarray) -> np.ndarray:
            u = (xy[:, 0] - lo[0]) * ppm
            v = (hi[1] - xy[:, 1]) * ppm
            return np.round(np.stack([u, v], 1) * 16).astype(np.int32)  # shift=4

        left = track.points + track.normals * self.road_half_width
        right = track.points - track.normals * self.road_half_width
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [px(left), px(right)], 1, cv2.LINE_AA, shift=4)
        img = np.where(mask[..., None] > 0, road, grass)
        img = np.clip(img, 0, 255).astype(np.uint8)
        line = max(1, int(round(0.04 * ppm)))
        for edge in (left, right):
            cv2.polylines(img, [px(edge)], True, _EDGE, line, cv2.LINE_AA, shift=4)
        # Dashes: 0.3 m painted, 0.3 m gap.
        n_dash = max(1, int(round(0.3 / track.ds)))
        pts = px(track.points)
        dashes = [pts[i : i + n_dash + 1] for i in range(0, len(pts) - n_dash, 2 * n_dash)]
        cv2.polylines(img, dashes, False, _CENTRE, line, cv2.LINE_AA, shift=4)
        self._map = img
        self._grass_value = tuple(float(v) for v in _GRASS)
        self._world_from_map = np.array(
            [[1.0 / ppm, 0.0, lo[0]], [0.0, -1.0 / ppm, hi[1]], [0.0, 0.0, 1.0]]
        )

    # ------------------------------------------------------------------ geometry

    def _centre_point(self) -> np.ndarray:
        """Car centre (midpoint of the axles), ``(2,)``."""
        x, y, th = self._state
        half = 0.5 * self.wheelbase
        return np.array([x + half * math.cos(th), y + half * math.sin(th)])

    def _locate(self, p: np.ndarray, hint: int | None, window: int = 40) -> tuple[int, float]:
        """Nearest centreline index to ``p`` (searched near ``hint``) and signed offset."""
        assert self.track is not None
        pts = self.track.points
        n = len(pts)
        if hint is None:
            idx = np.arange(n)
        else:
            idx = (hint + np.arange(-window, window + 1)) % n
        d2 = ((pts[idx] - p) ** 2).sum(1)
        i = int(idx[int(np.argmin(d2))])
        lateral = float(np.dot(p - pts[i], self.track.normals[i]))
        return i, lateral

    def lateral_error(self) -> float:
        """Signed distance (m) of the car centre from the centreline, + = left."""
        return self._lateral

    def camera_homography(self, mount: CameraMount) -> np.ndarray:
        """3x3 homography from top-down map pixels to the camera's image pixels."""
        x, y, th = self._state
        a = th + mount.yaw
        ca, sa = math.cos(a), math.sin(a)
        cth, sth = math.cos(th), math.sin(th)
        cx = x + self.camera_forward * cth - mount.lateral_offset * sth
        cy = y + self.camera_forward * sth + mount.lateral_offset * cth
        cp, sp = math.cos(self.camera_pitch), math.sin(self.camera_pitch)
        fwd = np.array([cp * ca, cp * sa, -sp])
        right = np.array([sa, -ca, 0.0])
        down = np.cross(fwd, right)
        rot = np.stack([right, down, fwd])
        centre = np.array([cx, cy, self.camera_height])
        ground = np.column_stack([rot[:, 0], rot[:, 1], -rot @ centre])
        return self._K @ ground @ self._world_from_map

    def render_camera(self, mount: CameraMount) -> np.ndarray:
        """Render one camera's ``(S, S, 3)`` uint8 image at the current pose."""
        assert self._map is not None, "call reset() first"
        s = self.image_size
        out = cv2.warpPerspective(
            self._map,
            self.camera_homography(mount),
            (s, s),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=self._grass_value,
        )
        out[: self._haze_rows] = _SKY
        return out

    def _obs(self) -> dict[str, np.ndarray]:
        return {c.name: self.render_camera(c) for c in self.cameras}

    def _info(self) -> dict[str, Any]:
        assert self.track is not None
        return {
            "distance": self._progress,
            "lap_fraction": self._progress / self.track.length,
            "lateral_error": self._lateral,
            "mean_lateral_error": self._abs_lat_sum / max(1, self._steps),
            "track_length": self.track.length,
            "off_road": abs(self._lateral) > self.road_half_width,
            "is_success": self._progress >= self.track.length,
            "steering_bias": self._bias,
        }

    # ------------------------------------------------------------------ gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Draw a new track from the seed, place the car at its start, return the views."""
        super().reset(seed=seed)
        rng = self.np_random
        self.track = generate_track(
            rng,
            radius=self.track_radius,
            amplitude=self.track_amplitude,
            min_radius=self.min_track_radius,
            clearance=2 * self.road_half_width + 0.5,
        )
        self._build_map(self.track)
        t, nrm = self.track.tangents[0], self.track.normals[0]
        heading = math.atan2(t[1], t[0])
        lat = rng.normal(0.0, self.start_lateral_std) if self.start_lateral_std else 0.0
        dh = rng.normal(0.0, self.start_heading_std) if self.start_heading_std else 0.0
        lat = float(np.clip(lat, -0.6 * self.road_half_width, 0.6 * self.road_half_width))
        # Place the car centre at the start point; the state is the rear axle.
        centre = self.track.points[0] + lat * nrm
        th = heading + dh
        half = 0.5 * self.wheelbase
        self._state = np.array(
            [centre[0] - half * math.cos(th), centre[1] - half * math.sin(th), th]
        )
        self._bias = self.steering_bias
        if self.random_bias_sign and rng.random() < 0.5:
            self._bias = -self._bias
        self._idx, self._lateral = self._locate(self._centre_point(), None)
        self._progress = 0.0
        self._abs_lat_sum = 0.0
        self._steps = 0
        self._max_steps = int(
            math.ceil(self.time_limit_factor * self.track.length / (self.expert_speed * self.dt))
        )
        return self._obs(), self._info()

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply ``[steering, speed]`` for ``dt`` seconds (with any configured noise)."""
        assert self.track is not None, "call reset() first"
        a = np.asarray(action, dtype=np.float64).reshape(2)
        steer, speed = float(a[0]), float(a[1])
        rng = self.np_random
        steer += self._bias
        if self.steering_noise:
            steer += float(rng.normal(0.0, self.steering_noise))
        if self.speed_noise:
            speed *= 1.0 + float(rng.normal(0.0, self.speed_noise))
        steer = float(np.clip(steer, -self.max_steer, self.max_steer))
        speed = float(np.clip(speed, 0.0, self.max_speed))
        x, y, th = self._state
        h = self.dt / self.substeps
        turn = speed * math.tan(steer) / self.wheelbase
        for _ in range(self.substeps):
            x += speed * math.cos(th) * h
            y += speed * math.sin(th) * h
            th += turn * h
        self._state = np.array([x, y, math.atan2(math.sin(th), math.cos(th))])
        n = len(self.track.points)
        prev = self._idx
        self._idx, self._lateral = self._locate(self._centre_point(), prev)
        delta = (self._idx - prev + n // 2) % n - n // 2
        gained = delta * self.track.ds
        self._progress += gained
        self._steps += 1
        self._abs_lat_sum += abs(self._lateral)
        off_road = abs(self._lateral) > self.road_half_width
        lap = self._progress >= self.track.length
        terminated = bool(off_road or lap)
        truncated = bool(not terminated and self._steps >= self._max_steps)
        return self._obs(), float(gained), terminated, truncated, self._info()

    # ------------------------------------------------------------------ privileged expert

    def pure_pursuit_action(
        self, lookahead: float = 0.8, speed: float | None = None
    ) -> np.ndarray:
        """The privileged expert's action: pure pursuit of the centreline from the true pose.

        The target is the centreline point ``lookahead`` metres (along the track) ahead of
        the rear axle's nearest point; the steering angle is ``atan(2 W sin(alpha) / l)``
        with ``alpha`` the target's bearing and ``l`` its distance from the rear axle.

        Args:
            lookahead: Look-ahead distance along the centreline (m).
            speed: Commanded speed (default ``expert_speed``).

        Returns:
            ``(2,)`` float32 ``[steering, speed]``, within the action bounds.
        """
        assert self.track is not None, "call reset() first"
        x, y, th = self._state
        rear = np.array([x, y])
        i, _ = self._locate(rear, self._idx, window=80)
        j = (i + int(round(lookahead / self.track.ds))) % len(self.track.points)
        d = self.track.points[j] - rear
        dist = float(np.hypot(d[0], d[1]))
        alpha = math.atan2(d[1], d[0]) - th
        steer = math.atan2(2.0 * self.wheelbase * math.sin(alpha), max(dist, 1e-6))
        v = self.expert_speed if speed is None else float(speed)
        out = np.array([steer, v], dtype=np.float32)
        return np.clip(out, self.action_space.low, self.action_space.high)

    # ------------------------------------------------------------------ rendering

    def render(self) -> np.ndarray | None:
        """Top-down view around the car (192x192) above the camera images, scaled up."""
        if self.render_mode != "rgb_array":
            return None
        assert self._map is not None and self.track is not None, "call reset() first"
        size, span = 192, 6.0  # pixels, metres shown
        x, y, th = self._state
        scale = size / (span * self.pixels_per_meter)
        u = (x - self._map_origin[0]) * self.pixels_per_meter
        v = (self._map_origin[1] - y) * self.pixels_per_meter
        affine = np.array([[scale, 0.0, size / 2 - scale * u], [0.0, scale, size / 2 - scale * v]])
        top = cv2.warpAffine(
            self._map, affine, (size, size), flags=cv2.INTER_AREA, borderValue=_GRASS
        )
        ppm = size / span
        c, s = math.cos(th), math.sin(th)
        body = [
            (-0.1, 0.13),
            (self.wheelbase + 0.1, 0.13),
            (self.wheelbase + 0.1, -0.13),
            (-0.1, -0.13),
        ]
        poly = np.array(
            [
                [size / 2 + ppm * (bx * c - by * s), size / 2 - ppm * (bx * s + by * c)]
                for bx, by in body
            ]
        )
        cv2.fillPoly(top, [np.round(poly).astype(np.int32)], (200, 40, 40))
        cams = [
            cv2.resize(self.render_camera(m), (size // max(1, len(self.cameras)),) * 2)
            for m in self.cameras
        ]
        strip = np.concatenate(cams, axis=1)
        canvas = np.zeros((size + strip.shape[0], size, 3), np.uint8)
        canvas[:size] = top
        canvas[size:, : strip.shape[1]] = strip
        return canvas
