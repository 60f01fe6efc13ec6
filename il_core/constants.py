"""Named keys of batches, windows and checkpoints, so no string literal is scattered around.

A training window (one sample of a batch) is a dict with these keys:

- ``OBS``: ``{obs_key: array}`` with a leading history axis, vectors ``(k, D)`` float32 and
  images ``(k, H, W, C)`` uint8. Batched: ``(B, k, ...)``.
- ``OBS_MASK``: ``(k,)`` bool, False where the history reaches before the episode start and
  the frame was padded by repeating the first one.
- ``ACTION``: ``(h, D)`` float32 (continuous) or ``(h,)`` int64 (discrete).
- ``ACTION_MASK``: ``(h,)`` bool, False where the chunk runs past the episode end and the
  action was padded by repeating the last one.
- ``EXTRAS``: ``{extra_key: (h, D)}`` per-step extras aligned with the action chunk.
"""

OBS = "obs"
OBS_MASK = "obs_mask"
ACTION = "action"
ACTION_MASK = "action_mask"
EXTRAS = "extras"
TIMESTAMP = "timestamp"
EPISODE_INDEX = "episode_index"
FRAME_INDEX = "frame_index"

# Checkpoint dictionary keys (see il_core.checkpoint).
CKPT_FORMAT = "format"
CKPT_FORMAT_VERSION = 1
