"""A synthetic camera for the dataset benchmarks: a textured world panned past, with noise.

Neither flat colour (which every codec squeezes to nothing) nor white noise (which none
compresses): the camera pans steadily across a large multi-scale texture (the "floor"),
three coloured discs move across the view (objects), and every frame gets Gaussian sensor
noise (sigma ``noise``, drawn from a few precomputed tiles so generating stays cheap).
Consecutive frames are therefore similar, as in a recording at 30 Hz, which is what video
codecs exploit.
"""

from __future__ import annotations

import cv2
import numpy as np


class SceneCamera:
    """Frames ``(size_h, size_w, 3)`` uint8 RGB of a moving textured scene.

    Args:
        height: Frame height.
        width: Frame width.
        seed: Texture, object and noise seed (one world per seed).
        speed: Pan speed in pixels per frame (of a 96-pixel-wide frame; scaled with width).
        noise: Standard deviation of the sensor noise, in grey levels.
    """

    def __init__(
        self, height: int, width: int, seed: int = 0, speed: float = 1.5, noise: float = 2.0
    ):
        rng = np.random.default_rng(seed)
        self.h, self.w = height, width
        scale = width / 96
        self.speed = speed * scale
        span = int(width * 6)
        tex = np.zeros((height * 2, span, 3), np.float32)
        # Sum of random fields at wavelengths from a third of the frame down to 3 pixels,
        # plus sharp-edged rectangles (furniture, tiles): structure at every scale.
        for wavelength, amp in (
            (width / 3, 60.0),
            (width / 12, 35.0),
            (width / 40, 20.0),
            (3, 8.0),
        ):
            cells_x, cells_y = max(2, int(span / wavelength)), max(2, int(2 * height / wavelength))
            small = rng.normal(0, 1, (cells_y, cells_x, 3)).astype(np.float32)
            tex += amp * cv2.resize(small, (span, height * 2), interpolation=cv2.INTER_CUBIC)
        for _ in range(40):
            x, y = int(rng.integers(0, span)), int(rng.integers(0, 2 * height))
            rw, rh = (int(rng.integers(width // 30 + 1, width // 5 + 2)) for _ in range(2))
            cv2.rectangle(tex, (x, y), (x + rw, y + rh), tuple(rng.normal(0, 50, 3).tolist()), -1)
        # Desaturate: real scenes vary much more in brightness than in colour.
        grey = tex.mean(axis=2, keepdims=True)
        tex = 110 + grey + 0.35 * (tex - grey)
        self.texture = np.clip(tex, 0, 255).astype(np.uint8)
        self.objects = [
            (
                rng.uniform(0, width),
                rng.uniform(0, height),
                rng.uniform(-1, 1) * scale,
                rng.uniform(-0.5, 0.5) * scale,
                int(rng.integers(max(2, width // 16), max(3, width // 6))),
                tuple(int(c) for c in rng.integers(30, 230, 3)),
            )
            for _ in range(3)
        ]
        self.noise = [rng.normal(0, noise, (height, width, 3)).astype(np.int16) for _ in range(4)]

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` (any integer; the pan wraps around)."""
        span = self.texture.shape[1] - self.w
        x0 = int(t * self.speed) % (2 * span)
        x0 = x0 if x0 < span else 2 * span - x0  # pan back and forth: no jump
        y0 = int(self.h / 2 + self.h / 2 * np.sin(t / 97.0)) % self.h
        img = np.ascontiguousarray(self.texture[y0 : y0 + self.h, x0 : x0 + self.w])
        for x, y, vx, vy, r, color in self.objects:
            cx = int((x + vx * t) % (self.w + 2 * r)) - r
            cy = int((y + vy * t) % (self.h + 2 * r)) - r
            cv2.circle(img, (cx, cy), r, color, -1, lineType=cv2.LINE_AA)
        noisy = img.astype(np.int16) + self.noise[t % 4]
        return np.clip(noisy, 0, 255).astype(np.uint8)
