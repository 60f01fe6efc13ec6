"""Opens a dataset with LeRobot 0.4.4's ``LeRobotDataset``; run by tests/test_lerobot.py.

Runs in LeRobot's own environment (``.lerobot-venv``), never under pytest: ``python
tests/lerobot_probe.py read ROOT OUT.npz`` prints one JSON line (episodes, frames per
episode, features, the item keys and camera shapes, an item with ACT-style
``delta_timestamps``) and saves every frame's action and camera images as LeRobot decoded
them, for the test to compare with the source dataset. ``python tests/lerobot_probe.py
write ROOT`` records a small dataset with LeRobot's own writer (``LeRobotDataset.create``,
``add_frame``, ``save_episode``) for the import test.

Two stand-ins make LeRobot import and decode in that environment:

- PyPI's torchvision 0.28 is built against the CUDA torch; beside the CPU wheel its two
  kernel-registration modules fail, so they are registered empty (the README's recipe).
- torchvision 0.28 no longer has ``torchvision.io.VideoReader``, which LeRobot's ``pyav``
  video backend calls, and PyPI's torchcodec (LeRobot's other backend) is a CUDA build. A
  PyAV-backed ``VideoReader`` with the interface of torchvision <= 0.23's ``pyav`` reader
  (``seek(seconds, keyframes_only)``, frames as ``{"data": (C, H, W) uint8, "pts":
  seconds}``) takes its place; everything else (timestamps, tolerance checks, the episode's
  offset in the shared file) is LeRobot's own code.
"""

import json
import sys
import types

for _m in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
    sys.modules[_m] = types.ModuleType(_m)

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402


class _PyAVVideoReader:
    """torchvision.io.VideoReader(path, "video") as torchvision <= 0.23 ran it with PyAV."""

    def __init__(self, path: str, stream: str = "video"):
        self.container = av.open(path)
        self._stream = self.container.streams.video[0]
        self._frames = None

    def seek(self, time_s: float, keyframes_only: bool = False) -> "_PyAVVideoReader":
        offset = int(round(time_s / self._stream.time_base))
        self.container.seek(offset, stream=self._stream, any_frame=not keyframes_only)
        self._frames = self.container.decode(self._stream)
        return self

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._frames is None:
            self._frames = self.container.decode(self._stream)
        frame = next(self._frames)
        data = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
        return {"data": data, "pts": float(frame.pts * frame.time_base)}


if not hasattr(torchvision.io, "VideoReader"):
    torchvision.io.VideoReader = _PyAVVideoReader

from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402


def write(root: str) -> None:
    """Two episodes (5 and 8 frames, two tasks): state, an AV1 camera, a PNG camera, actions."""
    features = {
        "observation.state": {"dtype": "float32", "shape": (3,), "names": ["q0", "q1", "q2"]},
        "observation.images.wrist": {
            "dtype": "video",
            "shape": (48, 64, 3),
            "names": ["height", "width", "channels"],
        },
        "observation.images.top": {
            "dtype": "image",
            "shape": (24, 32, 3),
            "names": ["height", "width", "channels"],
        },
        "action": {"dtype": "float32", "shape": (2,), "names": ["vx", "wz"]},
    }
    ds = LeRobotDataset.create("local/native", fps=15, root=root, features=features)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64]
    for e, n in enumerate([5, 8]):
        for t in range(n):
            img = np.stack([128 + 90 * np.sin(xx / 9 + t / 4 + c) for c in range(3)], -1)
            ds.add_frame(
                {
                    "observation.state": rng.normal(size=3).astype(np.float32),
                    "observation.images.wrist": img.clip(0, 255).astype(np.uint8),
                    "observation.images.top": np.full((24, 32, 3), 10 * t + e, np.uint8),
                    "action": np.array([e, t], np.float32),
                    "task": f"task {e}",
                }
            )
        ds.save_episode()
    ds.finalize()
    print(json.dumps({"root": root}))


def read(root: str, out: str) -> None:
    ds = LeRobotDataset("local/il_ros_export", root=root, video_backend="pyav")
    cams = ds.meta.camera_keys
    items = [ds[i] for i in range(len(ds))]
    arrays = {"action": torch.stack([it["action"] for it in items]).numpy()}
    arrays["episode_index"] = np.array([int(it["episode_index"]) for it in items])
    for cam in cams:
        # (C, H, W) float in [0, 1] -> (H, W, C) uint8 levels, as the source stores them
        frames = torch.stack([it[cam] for it in items]).permute(0, 2, 3, 1).numpy()
        arrays[cam] = np.round(frames * 255).astype(np.uint8)
    np.savez(out, **arrays)
    eps = ds.meta.episodes
    # What ACT / diffusion training asks of a dataset: action chunks and observation history.
    delta = {"action": [i / ds.fps for i in range(4)]}
    delta.update({c: [-1 / ds.fps, 0.0] for c in cams})
    chunked = LeRobotDataset(
        "local/il_ros_export", root=root, video_backend="pyav", delta_timestamps=delta
    )
    item = chunked[1]
    print(
        json.dumps(
            {
                "num_episodes": ds.num_episodes,
                "num_frames": ds.num_frames,
                "fps": ds.fps,
                "episode_lengths": [int(eps[i]["length"]) for i in range(len(eps))],
                "camera_keys": cams,
                "camera_shapes": {c: list(items[0][c].shape) for c in cams},
                "features": sorted(ds.features),
                "item_keys": sorted(items[0]),
                "task": items[0]["task"],
                "stats_keys": sorted(ds.meta.stats or {}),
                "codebase_version": ds.meta.info["codebase_version"],
                "delta_shapes": {k: list(item[k].shape) for k in delta},
                "delta_action_is_pad": item["action_is_pad"].tolist(),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        read(sys.argv[2], sys.argv[3])
