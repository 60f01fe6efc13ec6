"""``il-core view``: an episode as a Rerun recording that Rerun's own reader loads."""

import re

import numpy as np
import pytest

from il_core.data import DatasetWriter
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec
from tests.helpers import il_core_json

rr = pytest.importorskip(
    "rerun", reason="rerun-sdk is not installed (requirements-dev.txt has it on Python 3.11+)"
)
from rerun.chunk import RrdReader  # noqa: E402


@pytest.fixture
def data(tmp_path):
    spec = DatasetSpec(
        {"front": FeatureSpec("image", (24, 32, 3)), "joints": FeatureSpec("vector", (3,))},
        ActionSpec("continuous", dim=2),
        20.0,
        extras={"intervention": FeatureSpec("vector", (1,))},
    )
    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "demos", spec) as w:
        for length, success in ((7, True), (11, False)):
            w.start_episode()
            for t in range(length):
                w.add_step(
                    {
                        "front": rng.integers(0, 255, (24, 32, 3), dtype=np.uint8),
                        "joints": np.full(3, t, np.float32),
                    },
                    np.array([t, -t], np.float32),
                    t / 20.0,
                    {"intervention": np.array([t % 2], np.float32)},
                )
            w.end_episode(success=success)
    return tmp_path / "demos"


def _rows(path):
    """``{entity: rows}`` from the summary of Rerun's own RRD reader."""
    text = RrdReader(path).store().summary()
    return {m[1]: int(m[2]) for m in re.finditer(r"^(/\S+) rows=(\d+)", text, re.M)}


def test_view_writes_every_stream_of_the_episode_on_its_timeline(tmp_path, data):
    result = il_core_json(
        "view", data, "--episode", -1, "--out", tmp_path / "ep.rrd", "--no-spawn"
    )
    assert result["episode"] == 1 and result["steps"] == 11 and result["success"] is False
    assert result["spawned"] is False
    rows = _rows(tmp_path / "ep.rrd")
    for entity in ("/cameras/front", "/observations/joints", "/action", "/extras/intervention"):
        assert rows.get(entity) == 11, (entity, rows)
    assert rows.get("/episode") == 1, rows
    summary = RrdReader(tmp_path / "ep.rrd").store().summary()
    line = next(ln for ln in summary.splitlines() if ln.startswith("/cameras/front "))
    assert "timelines=['log_time', 'step', 'time']" in line, line


def test_view_refuses_an_episode_that_does_not_exist(tmp_path, data):
    from il_core.config import ConfigError
    from il_core.view import view_episode

    with pytest.raises(ConfigError, match=r"no episode 2; the dataset has 2 \(0\.\.1\)"):
        view_episode(data, 2, tmp_path / "x.rrd", spawn=False)
