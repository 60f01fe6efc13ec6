"""Video storage of camera frames (H.264 or AV1 through PyAV): one packet per frame.

A video camera (``FeatureSpec(codec="h264" | "av1")``) is stored in the same frame index as
a JPEG camera, ``data`` (N,) uint8 + ``offsets`` (T + 1,), except that entry ``t`` is the
compressed *packet* of frame ``t`` (a raw H.264 Annex-B access unit or an AV1 temporal unit,
no container), plus a ``keyframe`` (T,) bool column. The encoders are configured so that
packet order is frame order (no B-frames / no reordering, one packet per frame, checked),
so a frame is decoded by feeding the packets from the keyframe at or before it, in order.

Segments: the writer starts a new encoder for every flushed chunk, so every chunk is an
independent segment whose first frame is a keyframe (and carries the codec headers in-band:
SPS/PPS for H.264, the sequence header for AV1). The final episode file is the chunks'
packets concatenated (the same consolidation as JPEG frames, :mod:`il_core.data.format`),
which decodes as one stream; a crash therefore loses nothing more than with JPEG (the
unflushed steps), and recovery needs no video-specific step. Inside a segment a keyframe
comes every ``gop`` frames (x264 may add one at a scene cut; the column records them all).

Pixels: RGB frames go to yuv420p (4:2:0, BT.601 limited range, OpenCV's conversion both
ways so encode and decode agree) padded by edge replication to even sizes (and to the
encoders' minimum); grayscale (``C == 1``) frames are the Y plane with neutral chroma, so
they come back as ``(H, W, 1)`` with only the luma coding error. Decoded frames are
cropped back to exactly ``(H, W, C)`` uint8.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Literal

import cv2
import numpy as np

from il_core.data.codec import CodecError
from il_core.spec import DEFAULT_CRF, FeatureSpec

#: PyAV encoder and decoder per codec name of the spec. (Literal encoder names: PyAV's stubs
#: then know that ``CodecContext.create`` gives a video codec context.)
ENCODERS: dict[str, Literal["libx264", "libsvtav1"]] = {"h264": "libx264", "av1": "libsvtav1"}
DECODERS = {"h264": "h264", "av1": "libdav1d"}
# x264: "veryfast" is about 4x faster than "medium" for 10-15 % more bytes on camera
# frames; zerolatency turns off lookahead and B-frames, so each frame gives its packet at
# once and packet order is frame order. SVT-AV1 preset 10: real-time speed at 640x480 on
# one core; a low-delay prediction structure keeps frame order.
ENCODER_OPTIONS = {
    "h264": {"preset": "veryfast", "tune": "zerolatency"},
    "av1": {"preset": "10", "svtav1-params": "pred-struct=1"},
}
# Smallest frame each encoder takes; smaller frames are padded up (and cropped on decode).
MIN_SIZE = {"h264": 2, "av1": 16}

# SVT-AV1 prints a banner per encoder on stderr unless told otherwise (1 = errors only).
os.environ.setdefault("SVT_LOG", "1")


def _require(name: str, codec: str) -> None:
    """Raise :class:`CodecError` if PyAV's FFmpeg lacks the encoder or decoder ``name``."""
    try:
        import av
    except ImportError:
        raise CodecError(
            f"{codec} cameras need PyAV (pip install av), which is not installed"
        ) from None
    if name not in av.codecs_available:
        raise CodecError(
            f"this PyAV ({av.__version__}) has no {name} for {codec} cameras; install a PyAV "
            "whose FFmpeg has libx264, libsvtav1 and libdav1d (the PyPI wheels of av >= 17 do)"
        )


def _padded_size(h: int, w: int, codec: str) -> tuple[int, int]:
    m = MIN_SIZE[codec]
    return max(m, h + h % 2), max(m, w + w % 2)


def _to_yuv(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, C)`` uint8 -> ``(3 * Hp / 2, Wp)`` I420 planes, padded to ``size``."""
    h, w, c = image.shape
    hp, wp = size
    if (hp, wp) != (h, w):
        image = np.pad(image, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    if c == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2YUV_I420)
    yuv = np.full((hp * 3 // 2, wp), 128, dtype=np.uint8)
    yuv[:hp] = image[:, :, 0]
    return yuv


def _from_yuv(yuv: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """I420 planes of a (padded) frame -> ``(H, W, C)`` uint8, cropped to ``shape``."""
    h, w, c = shape
    if c == 1:
        return np.ascontiguousarray(yuv[:h, :w, None])
    rgb = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
    if rgb.shape[:2] != (h, w):
        rgb = np.ascontiguousarray(rgb[:h, :w])
    return rgb


class SegmentEncoder:
    """Encodes one independent segment (one chunk) of a video camera, frame by frame.

    The first frame is a keyframe. :meth:`finish` drains the encoder and returns the
    packets, one per frame, in frame order.

    Args:
        feature: The camera's :class:`FeatureSpec` (codec ``h264`` or ``av1``).
        fps: Nominal frame rate (the control rate); only informs rate control.
    """

    def __init__(self, feature: FeatureSpec, fps: float):
        _require(ENCODERS[feature.codec], feature.codec)
        import av

        self.feature = feature
        codec = feature.codec
        h, w, _ = feature.shape
        self._size = _padded_size(h, w, codec)
        ctx = av.CodecContext.create(ENCODERS[codec], "w")
        ctx.height, ctx.width = self._size
        ctx.pix_fmt = "yuv420p"
        rate = Fraction(fps).limit_denominator(1001)
        ctx.time_base = 1 / rate
        ctx.framerate = rate
        ctx.gop_size = int(feature.gop)
        ctx.max_b_frames = 0
        crf = DEFAULT_CRF[codec] if feature.crf is None else int(feature.crf)
        ctx.options = {**ENCODER_OPTIONS[codec], "crf": str(crf)}
        ctx.thread_count = 1  # cameras are encoded side by side; one thread each is enough
        self._ctx = ctx
        self._av = av
        self._frames = 0
        self._packets: list[tuple[int, bytes, bool]] = []

    @property
    def num_frames(self) -> int:
        """Frames sent so far."""
        return self._frames

    def encode(self, image: np.ndarray) -> None:
        """Add one ``(H, W, C)`` uint8 frame (RGB for ``C == 3``), already spec-checked."""
        frame = self._av.VideoFrame.from_ndarray(_to_yuv(image, self._size), format="yuv420p")
        frame.pts = self._frames
        self._frames += 1
        try:
            self._collect(self._ctx.encode(frame))
        except self._av.FFmpegError as e:
            raise CodecError(f"{self.feature.codec} encoder failed: {e}") from None

    def _collect(self, packets: Any) -> None:
        for p in packets:
            self._packets.append((int(p.pts), bytes(p), bool(p.is_keyframe)))

    def finish(self) -> tuple[list[bytes], np.ndarray]:
        """Drain the encoder; the segment's packets and ``(T,)`` bool keyframe flags.

        Raises:
            CodecError: if the encoder did not give one packet per frame in frame order
                (it would then not be randomly accessible this way).
        """
        try:
            self._collect(self._ctx.encode(None))
        except self._av.FFmpegError as e:
            raise CodecError(f"{self.feature.codec} encoder failed: {e}") from None
        pts = [p for p, _, _ in self._packets]
        if pts != list(range(self._frames)):
            raise CodecError(
                f"{self.feature.codec} encoder gave packets for frames {pts[:8]}... "
                f"for {self._frames} frames (expected one per frame, in order)"
            )
        keys = np.array([k for _, _, k in self._packets], dtype=bool)
        if self._frames and not keys[0]:
            raise CodecError(f"{self.feature.codec} segment does not start with a keyframe")
        return [b for _, b, _ in self._packets], keys


class _Decoders(threading.local):
    """One decoder per codec and thread, reused (flushed) between segments."""

    def __init__(self) -> None:
        self.by_codec: dict[str, Any] = {}


_decoders = _Decoders()


def _decoder(codec: str) -> Any:
    ctx = _decoders.by_codec.get(codec)
    if ctx is None:
        import av

        _require(DECODERS[codec], codec)
        ctx = av.CodecContext.create(DECODERS[codec], "r")
        # Fail on damaged packets instead of concealing them: a corrupt frame is a dataset
        # error to report, not an image to train on.
        ctx.options = {"err_detect": "crccheck+bitstream+buffer+explode"}
        ctx.thread_count = 1  # small frames; parallelism comes from decoding episodes apart
        _decoders.by_codec[codec] = ctx
    return ctx


def decode_run(
    codec: str,
    packets: Sequence[bytes | memoryview | np.ndarray],
    shape: tuple[int, ...],
    want: Sequence[int] | None = None,
    into: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Decode consecutive packets that start at a keyframe.

    Args:
        codec: ``"h264"`` or ``"av1"``.
        packets: The packets of frames ``s, s + 1, ...`` where frame ``s`` is a keyframe.
        shape: ``(H, W, C)`` of a frame.
        want: Positions (relative to ``s``, increasing) of the frames to return; all if None.
        into: ``(M, H, W, C)`` uint8 array to write the M wanted frames into, in order,
            instead of returning them (decoding a long episode into its cache slot).

    Returns:
        The wanted frames, ``(H, W, C)`` uint8 each (empty when ``into`` is given).

    Raises:
        CodecError: if a packet does not decode, or fewer frames come out than went in.
    """
    import av

    if codec not in DECODERS:
        raise CodecError(f"unknown video codec {codec!r}")
    ctx = _decoder(codec)
    wanted = None if want is None else set(int(i) for i in want)
    out: list[np.ndarray] = []
    n = 0
    written = [0]

    def take(frames: Any) -> None:
        nonlocal n
        for fr in frames:
            if wanted is None or n in wanted:
                if fr.format.name != "yuv420p":
                    raise CodecError(f"frame decoded as {fr.format.name}, expected yuv420p")
                yuv = fr.to_ndarray()
                if yuv.shape[0] * 2 // 3 < shape[0] or yuv.shape[1] < shape[1]:
                    raise CodecError(
                        f"frame decoded to {fr.height}x{fr.width}, expected at least "
                        f"{shape[0]}x{shape[1]}"
                    )
                img = _from_yuv(yuv, shape)
                if into is None:
                    out.append(img)
                else:
                    into[written[0]] = img
                written[0] += 1
            n += 1

    try:
        for p in packets:
            take(ctx.decode(av.Packet(bytes(p))))
        take(ctx.decode(None))  # drain the decoder's delay (dav1d holds a few frames)
    except (av.FFmpegError, ValueError) as e:
        raise CodecError(f"{codec} packet does not decode: {e}") from None
    finally:
        ctx.flush_buffers()  # ready for the next segment
    if n < len(packets):
        raise CodecError(f"{len(packets)} {codec} packets decoded to only {n} frames")
    expected = len(packets) if wanted is None else len(wanted)
    if into is not None and written[0] != expected:
        raise CodecError(f"decoded {written[0]} of the {expected} frames asked for")
    return out


def keyframe_before(keyframe: np.ndarray) -> np.ndarray:
    """For each frame, the index of the keyframe at or before it.

    Args:
        keyframe: ``(T,)`` bool, ``keyframe[0]`` True.

    Returns:
        ``(T,)`` int64.
    """
    idx = np.where(keyframe, np.arange(keyframe.size, dtype=np.int64), 0)
    return np.maximum.accumulate(idx) if idx.size else idx
