"""Video files with PyAV (FFmpeg): H.264 MP4 that browsers play, and reading them back.

OpenCV's ``mp4v`` (MPEG-4 Part 2) MP4s do not play in browsers, and OpenCV's pip wheels
have no H.264 encoder. PyAV's wheels bring FFmpeg with libx264, so an evaluation video is
H.264 (High profile), ``yuv420p`` and ``+faststart`` (the index first, so a browser starts
playing before the file has loaded): what every browser and GitHub's viewer play.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np


def _even(frame: np.ndarray) -> np.ndarray:
    # yuv420p subsamples chroma 2x2: H.264 needs even sizes; repeat the last row/column.
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_mp4(
    path: str | Path,
    frames: Sequence[np.ndarray],
    fps: float,
    *,
    crf: int = 23,
    preset: str = "medium",
) -> None:
    """Write RGB frames as an H.264 MP4.

    Args:
        path: The ``.mp4`` file (its folder is created).
        frames: ``(H, W, 3)`` uint8 RGB frames, all the same size; odd sizes are padded by
            one row/column.
        fps: Frame rate (any positive float; stored as an exact fraction).
        crf: x264 constant rate factor (lower is better quality; 23 is x264's default).
        preset: x264 speed/size preset.

    Raises:
        ValueError: No frames, or frames that are not ``(H, W, 3)`` uint8 of one size.
    """
    import av

    path = Path(path)
    if not frames:
        raise ValueError(f"{path}: no frames to write")
    first = np.asarray(frames[0])
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise ValueError(
            f"{path}: frames must be (H, W, 3) uint8 RGB, got {first.shape} {first.dtype}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    h, w = _even(first).shape[:2]
    with av.open(str(path), mode="w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for i, f in enumerate(frames):
            f = np.asarray(f)
            if f.shape != first.shape or f.dtype != np.uint8:
                raise ValueError(
                    f"{path}: frame {i} is {f.shape} {f.dtype}, frame 0 {first.shape}"
                )
            for packet in stream.encode(av.VideoFrame.from_ndarray(_even(f), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():  # flush the encoder's delayed frames
            out.mux(packet)


def read_video(path: str | Path) -> tuple[np.ndarray, dict[str, object]]:
    """Decode every frame of a video file.

    Args:
        path: A video file PyAV opens.

    Returns:
        ``frames``: ``(T, H, W, 3)`` uint8 RGB; ``info``: ``codec``, ``pix_fmt``, ``fps``,
        ``width``, ``height``.
    """
    import av

    with av.open(str(path)) as f:
        s = f.streams.video[0]
        info: dict[str, object] = {
            "codec": s.codec_context.name,
            "pix_fmt": s.codec_context.pix_fmt,
            "fps": float(s.average_rate) if s.average_rate else None,
            "width": s.codec_context.width,
            "height": s.codec_context.height,
        }
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(s)]
    return np.stack(frames), info
