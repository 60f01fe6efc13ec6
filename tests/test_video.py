"""Evaluation videos: H.264 MP4 (yuv420p, index first) that browsers play, or GIF."""

import numpy as np
import pytest

from il_core.evaluate import evaluate, write_video
from il_core.video import read_video, write_mp4


def _frames(n=12, h=63, w=81):
    # Smooth moving shading: what a rendered sim looks like to a codec (yuv420p halves the
    # colour resolution, so pixel-sharp colour edges are not what this measures).
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return [
        np.stack(
            [
                128 + 90 * np.sin(x / 9 + t / 4),
                128 + 90 * np.cos(y / 7 - t / 5),
                128 + 60 * np.sin((x + y) / 15),
            ],
            -1,
        ).astype(np.uint8)
        for t in range(n)
    ]


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def test_mp4_is_browser_playable_h264_and_decodes_close_to_the_frames(tmp_path):
    frames = _frames()
    path = tmp_path / "v" / "rollout.mp4"
    write_mp4(path, frames, fps=20.0, crf=18)
    decoded, info = read_video(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p", info
    assert info["fps"] == pytest.approx(20.0)
    # Odd sizes are padded to even (yuv420p), never cropped.
    assert decoded.shape == (len(frames), 64, 82, 3)
    psnr = min(_psnr(d[:63, :81], f) for d, f in zip(decoded, frames, strict=True))
    assert psnr > 30, psnr
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: playable while loading


def test_bad_frames_and_suffixes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(tmp_path / "a.mp4", [], 10)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        write_mp4(tmp_path / "a.mp4", [np.zeros((8, 8), np.uint8)], 10)
    with pytest.raises(ValueError, match=r"frame 1 is \(4, 4, 3\)"):
        write_mp4(
            tmp_path / "a.mp4", [np.zeros((8, 8, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)], 10
        )
    with pytest.raises(ValueError, match=r"\.gif or \.mp4, not '\.avi'"):
        write_video(tmp_path / "a.avi", _frames(2), 10)


def test_eval_video_of_a_rollout(tmp_path):
    from il_core.collect import collect
    from il_core.train import train

    collect("CartPole-v1", "auto", 2, 0, tmp_path / "d")
    cfg = {
        "policy": {"name": "bc", "hidden_dims": [8]},
        "train": {"steps": 5, "val_fraction": 0.0},
    }
    ckpt = train([tmp_path / "d"], tmp_path / "run", cfg, seed=0, progress=False)["checkpoint"]
    out = evaluate(ckpt, "CartPole-v1", 1, 0, video=tmp_path / "r.mp4", max_steps=15)
    decoded, info = read_video(out["video"])
    assert info["codec"] == "h264" and len(decoded) >= 2 and decoded.std() > 0
