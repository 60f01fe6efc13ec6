"""il_core.augment: label correction (hand-computed), batch transform, images, training."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from il_core.augment import (
    AugmentConfig,
    Augmenter,
    ImageAugmentConfig,
    SideViewConfig,
    augment_images,
    correct_actions,
    policy_spec,
    steering_offset_from_geometry,
)
from il_core.checkpoint import load_policy
from il_core.config import ConfigError, from_dict
from il_core.constants import ACTION, ACTION_MASK, OBS, OBS_MASK
from il_core.data import DatasetWriter, EpisodeDataset
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec
from il_core.train import resolve_augment, train

STEER = ActionSpec("continuous", dim=2, low=(-0.5, 0.0), high=(0.5, 2.0))
CLASSES = ActionSpec("discrete", num_classes=3, names=("left", "straight", "right"))
CAMS = ("cam_left", "cam_center", "cam_right")
# Each camera's frames are filled with one value, so a batch shows which camera a sample
# came from.
FILL = {"cam_left": 10, "cam_center": 20, "cam_right": 30}


def three_camera_spec(action: ActionSpec = STEER) -> DatasetSpec:
    obs = {"speed": FeatureSpec("vector", (1,))}
    obs.update({k: FeatureSpec("image", (8, 8, 3), codec="png") for k in CAMS})
    return DatasetSpec(obs, action, 10.0, metadata={"env_id": "toy"})


def side_cfg(**over) -> SideViewConfig:
    raw = {
        "center": "cam_center",
        "cameras": [
            {"key": "cam_left", "steering_offset": -0.1},
            {"key": "cam_right", "steering_offset": 0.1},
        ],
    }
    raw.update(over)
    return from_dict(SideViewConfig, raw)


# ---------------------------------------------------------------- label correction


def test_offset_from_lateral_offset_hand_computed():
    # d = 0.5 m left, L = 2 m: target at (2, -0.5), kappa = 2 (-0.5) / 4.25 = -4/17 1/m.
    assert steering_offset_from_geometry(0.5, 0.0, 2.0) == pytest.approx(-4 / 17)
    # As a steering angle with W = 0.5 m: atan(0.5 * -4/17) = atan(-2/17) = -0.117109 rad.
    assert steering_offset_from_geometry(0.5, 0.0, 2.0, wheelbase=0.5) == pytest.approx(
        -0.117109, abs=1e-6
    )
    # Mirror camera, mirror correction; the centre camera needs none.
    assert steering_offset_from_geometry(-0.5, 0.0, 2.0, 0.5) == pytest.approx(0.117109, abs=1e-6)
    assert steering_offset_from_geometry(0.0, 0.0, 2.0, 0.5) == 0.0


def test_offset_from_yaw_and_scale_hand_computed():
    # Yaw only: the target is at distance L, bearing -psi, so kappa = -2 sin(psi) / L.
    assert steering_offset_from_geometry(0.0, 0.1, 2.0) == pytest.approx(-math.sin(0.1))
    assert steering_offset_from_geometry(0.0, 0.1, 2.0, wheelbase=1.0) == pytest.approx(
        -0.0995037, abs=1e-6
    )
    # Steering normalised by max_steer = 0.5 rad, and + = right (CarRacing): scale -2.
    assert steering_offset_from_geometry(0.5, 0.0, 2.0, 0.5, steering_scale=-2.0) == (
        pytest.approx(0.234218, abs=1e-6)
    )
    # Offset and yaw together: x' = 2 cos .1 - .5 sin .1, y' = -2 sin .1 - .5 cos .1.
    x = 2 * math.cos(0.1) - 0.5 * math.sin(0.1)
    y = -2 * math.sin(0.1) - 0.5 * math.cos(0.1)
    assert steering_offset_from_geometry(0.5, 0.1, 2.0) == pytest.approx(2 * y / (x * x + y * y))
    with pytest.raises(ValueError, match="recovery_distance"):
        steering_offset_from_geometry(0.5, 0.0, 0.0)


def test_continuous_correction_adds_to_steering_and_clips():
    acts = np.array([[0.1, 1.5], [0.45, 1.5], [-0.5, 1.0]], np.float32)
    out = correct_actions(acts, STEER, steering_offset=0.1, steering_index=0)
    np.testing.assert_allclose(out, [[0.2, 1.5], [0.5, 1.5], [-0.4, 1.0]], atol=1e-7)
    assert out.dtype == np.float32 and acts[0, 0] == np.float32(0.1)  # input untouched
    # Action chunks (B, h, D) are corrected step by step.
    chunk = np.zeros((2, 3, 2), np.float32)
    np.testing.assert_allclose(
        correct_actions(chunk, STEER, steering_offset=-0.2)[..., 0], np.full((2, 3), -0.2)
    )
    with pytest.raises(ValueError, match="steering_offset only"):
        correct_actions(acts, STEER, steering_offset=0.1, class_map=(0, 1))
    with pytest.raises(ValueError, match="steering_index"):
        correct_actions(acts, STEER, steering_offset=0.1, steering_index=2)


def test_discrete_correction_maps_classes():
    # Left camera: steer more to the right: left -> straight, straight -> right, right stays.
    acts = np.array([[0, 1, 2], [2, 0, 1]], np.int64)
    out = correct_actions(acts, CLASSES, class_map=(1, 2, 2))
    np.testing.assert_array_equal(out, [[1, 2, 2], [2, 1, 2]])
    assert out.dtype == np.int64
    np.testing.assert_array_equal(
        correct_actions(acts[0], CLASSES, class_map=(0, 0, 1)), [0, 0, 1]
    )
    with pytest.raises(ValueError, match="class_map"):
        correct_actions(acts, CLASSES, class_map=(1, 2))
    with pytest.raises(ValueError, match="class_map only"):
        correct_actions(acts, CLASSES, steering_offset=0.1)


# ---------------------------------------------------------------- config


def test_config_validation_names_the_problem():
    with pytest.raises(ConfigError, match="exactly one of"):
        side_cfg(cameras=[{"key": "cam_left", "steering_offset": 0.1, "lateral_offset": 0.2}])
    with pytest.raises(ConfigError, match="recovery_distance"):
        side_cfg(cameras=[{"key": "cam_left", "lateral_offset": 0.2}])
    with pytest.raises(ConfigError, match="differ from the centre"):
        side_cfg(cameras=[{"key": "cam_center", "steering_offset": 0.1}])
    with pytest.raises(ConfigError, match="unknown keys"):
        from_dict(AugmentConfig, {"side_views": {"center": "c", "camras": []}})
    with pytest.raises(ConfigError, match=r"config.image: shift must be >= 0"):
        from_dict(AugmentConfig, {"image": {"shift": -1}})
    raw = {"augment": {"side_views": {"center": "cam_center", "cameras": [{"key": "cam_x"}]}}}
    with pytest.raises(ConfigError, match="cfg.yaml: augment"):
        resolve_augment(raw, "cfg.yaml")
    assert resolve_augment({"train": {}}) is None


def test_augmenter_rejects_cameras_and_corrections_that_do_not_fit():
    spec = three_camera_spec()
    bad_key = side_cfg(center="cam_front")
    with pytest.raises(ConfigError, match="'cam_front' is not a camera"):
        Augmenter(AugmentConfig(side_views=bad_key), spec)
    maps = side_cfg(cameras=[{"key": "cam_left", "class_map": [1, 2, 2]}])
    with pytest.raises(ConfigError, match="class_map is for discrete"):
        Augmenter(AugmentConfig(side_views=maps), spec)
    with pytest.raises(ConfigError, match="need a class_map"):
        Augmenter(AugmentConfig(side_views=side_cfg()), three_camera_spec(CLASSES))
    short = side_cfg(cameras=[{"key": "cam_left", "class_map": [1, 2]}])
    with pytest.raises(ConfigError, match="needs 3 entries"):
        Augmenter(AugmentConfig(side_views=short), three_camera_spec(CLASSES))
    with pytest.raises(ConfigError, match="steering_index 5"):
        Augmenter(AugmentConfig(side_views=side_cfg(steering_index=5)), spec)
    with pytest.raises(ConfigError, match="not cameras the policy sees"):
        Augmenter(
            AugmentConfig(side_views=side_cfg(), image=ImageAugmentConfig(keys=("cam_left",))),
            spec,
        )


def test_derived_offsets_use_the_geometry():
    cfg = side_cfg(
        cameras=[
            {"key": "cam_left", "lateral_offset": 0.5},
            {"key": "cam_right", "lateral_offset": -0.5, "yaw": 0.0},
        ],
        recovery_distance=2.0,
        wheelbase=0.5,
    )
    aug = Augmenter(AugmentConfig(side_views=cfg), three_camera_spec())
    assert aug.steering_offsets == pytest.approx(
        {"cam_left": -0.117109, "cam_right": 0.117109}, abs=1e-6
    )


def test_policy_spec_keeps_only_the_centre_camera():
    spec = policy_spec(three_camera_spec(), side_cfg())
    assert list(spec.observations) == ["speed", "cam_center"]
    assert spec.action == STEER
    assert spec.metadata["side_views"]["cameras"] == ["cam_left", "cam_right"]
    assert spec.metadata["env_id"] == "toy"


# ---------------------------------------------------------------- batch transform


def window_batch(rng: np.random.Generator, action: ActionSpec, b: int = 64, h: int = 3) -> dict:
    obs = {"speed": rng.normal(size=(b, 1, 1)).astype(np.float32)}
    obs.update({k: np.full((b, 1, 8, 8, 3), FILL[k], np.uint8) for k in CAMS})
    if action.kind == "discrete":
        act = rng.integers(0, 3, (b, h)).astype(np.int64)
    else:
        steer = rng.uniform(-0.3, 0.3, (b, h))
        act = np.stack([steer, np.full((b, h), 1.5)], axis=-1).astype(np.float32)
    return {
        OBS: obs,
        OBS_MASK: np.ones((b, 1), bool),
        ACTION: act,
        ACTION_MASK: np.ones((b, h), bool),
    }


def test_train_batch_swaps_in_side_frames_with_corrected_labels(rng):
    aug = Augmenter(AugmentConfig(side_views=side_cfg()), three_camera_spec(), seed=3)
    batch = window_batch(rng, STEER, b=600)
    out = aug.train_batch(batch, step=7)
    assert sorted(out[OBS]) == ["cam_center", "speed"]
    seen = out[OBS]["cam_center"][:, 0, 0, 0, 0]
    expected_offset = {10: -0.1, 20: 0.0, 30: 0.1}
    for value, offset in expected_offset.items():
        rows = seen == value
        assert 150 < rows.sum() < 250  # equal weights: about a third each
        np.testing.assert_allclose(
            out[ACTION][rows, :, 0], np.clip(batch[ACTION][rows, :, 0] + offset, -0.5, 0.5)
        )
        np.testing.assert_array_equal(out[ACTION][rows, :, 1], batch[ACTION][rows, :, 1])
    np.testing.assert_array_equal(out[OBS]["speed"], batch[OBS]["speed"])
    # The input batch is not modified, and a step's draw is reproducible.
    assert (batch[OBS]["cam_center"] == 20).all()
    again = aug.train_batch(batch, step=7)
    np.testing.assert_array_equal(again[ACTION], out[ACTION])
    other = aug.train_batch(batch, step=8)
    assert not np.array_equal(other[OBS]["cam_center"], out[OBS]["cam_center"])


def test_weights_and_discrete_class_maps(rng):
    cfg = side_cfg(
        cameras=[
            {"key": "cam_left", "class_map": [1, 2, 2], "weight": 1.0},
            {"key": "cam_right", "class_map": [0, 0, 1], "weight": 0.0},
        ],
        center_weight=3.0,
    )
    aug = Augmenter(AugmentConfig(side_views=cfg), three_camera_spec(CLASSES))
    batch = window_batch(rng, CLASSES, b=800)
    out = aug.train_batch(batch, step=0)
    seen = out[OBS]["cam_center"][:, 0, 0, 0, 0]
    assert not (seen == 30).any()  # weight 0: never drawn
    assert 150 < (seen == 10).sum() < 250  # 1 / (3 + 1) of 800
    left = seen == 10
    np.testing.assert_array_equal(out[ACTION][left], np.array([1, 2, 2])[batch[ACTION][left]])
    np.testing.assert_array_equal(out[ACTION][~left], batch[ACTION][~left])


def test_eval_batch_is_the_centre_camera_unchanged(rng):
    cfg = AugmentConfig(side_views=side_cfg(), image=ImageAugmentConfig(shift=2, brightness=0.5))
    aug = Augmenter(cfg, three_camera_spec())
    batch = window_batch(rng, STEER)
    out = aug.eval_batch(batch)
    assert sorted(out[OBS]) == ["cam_center", "speed"]
    np.testing.assert_array_equal(out[OBS]["cam_center"], batch[OBS]["cam_center"])
    np.testing.assert_array_equal(out[ACTION], batch[ACTION])


def test_action_stats_are_those_of_the_label_mixture(rng):
    aug = Augmenter(AugmentConfig(side_views=side_cfg()), three_camera_spec())
    batch = window_batch(rng, STEER, b=20000, h=1)
    acts = batch[ACTION][:, 0]
    stats = {
        "action": {
            "mean": acts.mean(0),
            "std": acts.std(0),
            "min": acts.min(0),
            "max": acts.max(0),
        }
    }
    got = aug.adjust_stats(stats)["action"]
    mixed = aug.train_batch(batch, step=0)[ACTION][:, 0]
    np.testing.assert_allclose(got["mean"], mixed.mean(0), atol=5e-3)
    np.testing.assert_allclose(got["std"], mixed.std(0), rtol=2e-2)
    np.testing.assert_allclose(got["min"], [-0.4, 1.5], atol=1e-3)  # -0.3 - 0.1
    np.testing.assert_allclose(got["max"], [0.4, 1.5], atol=1e-3)
    assert stats["action"]["mean"][0] == acts.mean(0)[0]  # input untouched


def test_discrete_counts_are_remapped():
    cfg = side_cfg(
        cameras=[
            {"key": "cam_left", "class_map": [1, 2, 2]},
            {"key": "cam_right", "class_map": [0, 0, 1]},
        ]
    )
    aug = Augmenter(AugmentConfig(side_views=cfg), three_camera_spec(CLASSES))
    got = aug.adjust_stats({"action": {"counts": np.array([30, 60, 30])}})
    # Thirds: centre (30, 60, 30) + left (0, 30, 90) + right (90, 30, 0), each / 3.
    np.testing.assert_array_equal(got["action"]["counts"], [40, 40, 40])


# ---------------------------------------------------------------- images


def test_shift_translates_with_replicated_borders(rng):
    ramp = np.arange(6 * 6, dtype=np.uint8).reshape(1, 1, 6, 6, 1)
    frames = np.concatenate([ramp, ramp + 100], axis=1).repeat(50, axis=0)  # (50, 2, 6, 6, 1)
    out = augment_images(frames, ImageAugmentConfig(shift=2), rng)
    assert out.shape == frames.shape and out.dtype == np.uint8
    shifts = set()
    for b in range(50):
        # Recover the shift from the top-left pixel, then check every pixel of both frames.
        found = None
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                rows = np.clip(np.arange(6) + dy, 0, 5)
                cols = np.clip(np.arange(6) + dx, 0, 5)
                if np.array_equal(out[b, 0, :, :, 0], ramp[0, 0][np.ix_(rows, cols)][..., 0]):
                    found = (dy, dx)
        assert found is not None
        shifts.add(found)
        np.testing.assert_array_equal(out[b, 1], out[b, 0] + 100)  # same shift for k frames
    assert len(shifts) > 10
    assert frames[0, 0, 0, 0, 0] == 0  # input untouched


def test_colour_jitter_is_per_sample_and_bounded(rng):
    frames = rng.integers(40, 200, (32, 2, 8, 8, 3), dtype=np.uint8)
    cfg = ImageAugmentConfig(brightness=0.3, contrast=0.3, saturation=0.3)
    out = augment_images(frames, cfg, rng)
    assert out.dtype == np.uint8 and out.shape == frames.shape
    ratio = out.astype(np.float64).mean(axis=(1, 2, 3, 4)) / frames.mean(axis=(1, 2, 3, 4))
    assert ratio.min() < 0.9 and ratio.max() > 1.1 and ratio.std() > 0.05
    # Brightness alone is a pure per-sample gain, identical for the k frames of a sample.
    bright = augment_images(frames, ImageAugmentConfig(brightness=0.3), rng).astype(float)
    gain = bright.sum(axis=(2, 3, 4)) / frames.sum(axis=(2, 3, 4))
    np.testing.assert_allclose(gain[:, 0], gain[:, 1], rtol=0.02)
    # Nothing switched on: an unchanged copy.
    same = augment_images(frames, ImageAugmentConfig(), rng)
    np.testing.assert_array_equal(same, frames)
    assert same is not frames


def test_image_augmentation_applies_to_training_batches_only(rng):
    aug = Augmenter(AugmentConfig(image=ImageAugmentConfig(brightness=0.5)), three_camera_spec())
    batch = window_batch(rng, STEER)
    trained = aug.train_batch(batch, step=1)
    assert sorted(trained[OBS]) == sorted(batch[OBS])  # no side views: every key stays
    assert not np.array_equal(trained[OBS]["cam_center"], batch[OBS]["cam_center"])
    np.testing.assert_array_equal(trained[ACTION], batch[ACTION])
    assert aug.eval_batch(batch) is batch
    assert aug.policy_spec == three_camera_spec()


# ---------------------------------------------------------------- training


def write_three_camera_dataset(root: Path, episodes: int = 3, steps: int = 30) -> None:
    spec = three_camera_spec()
    rng = np.random.default_rng(0)
    with DatasetWriter(root, spec) as w:
        for _ in range(episodes):
            w.start_episode()
            for t in range(steps):
                obs = {"speed": np.array([1.5], np.float32)}
                obs.update({k: np.full((8, 8, 3), FILL[k], np.uint8) for k in CAMS})
                w.add_step(obs, np.array([rng.uniform(-0.2, 0.2), 1.5], np.float32), t / 10)
            w.end_episode(success=True)


FAST_IMAGE_POLICY = {
    "hidden_dims": [16],
    "image_encoder": {"channels": [4], "strides": [2], "feature_dim": 8},
}


def test_training_with_side_views_builds_a_centre_camera_policy(tmp_path):
    data = tmp_path / "data"
    write_three_camera_dataset(data)
    raw = {
        "policy": FAST_IMAGE_POLICY,
        "train": {"steps": 6, "batch_size": 16, "log_every": 3, "val_every": 3},
        "augment": {
            "side_views": {
                "center": "cam_center",
                "cameras": [
                    {"key": "cam_left", "steering_offset": -0.1},
                    {"key": "cam_right", "steering_offset": 0.1},
                ],
            },
            "image": {"shift": 1, "brightness": 0.1},
        },
    }
    summary = train([data], tmp_path / "run", raw, seed=0, progress=False)
    assert summary["val_loss"] is not None and np.isfinite(summary["val_loss"])
    policy = load_policy(summary["checkpoint"])
    assert sorted(policy.spec.observations) == ["cam_center", "speed"]
    # The normaliser was fitted to the corrected-label mixture: wider steering spread.
    ds = EpisodeDataset(data)
    plain_std = float(ds.stats()["action"]["std"][0])
    assert float(policy.normalizer.action_scale[0]) > plain_std
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["augment"]["side_views"]["center"] == "cam_center"
    # It acts on the centre camera alone.
    action = policy.select_action(
        {"speed": np.array([1.5], np.float32), "cam_center": np.zeros((8, 8, 3), np.uint8)}
    )
    assert action.shape == (2,)


def test_training_without_augment_section_is_unchanged(tmp_path):
    data = tmp_path / "data"
    write_three_camera_dataset(data, episodes=2, steps=10)
    raw = {"policy": FAST_IMAGE_POLICY, "train": {"steps": 2, "batch_size": 8, "val_every": 0}}
    summary = train([data], tmp_path / "run", raw, seed=0, progress=False)
    assert sorted(load_policy(summary["checkpoint"]).spec.observations) == [*sorted(CAMS), "speed"]
    assert "augment" not in yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
