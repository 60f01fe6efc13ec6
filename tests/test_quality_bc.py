"""Quality bars of issue 2: behaviour cloning from 10 scripted-expert episodes.

Trained for real with the shipped configs, the same ones the README tour and `make demo` use.
"""

import pytest

from il_core.collect import collect
from il_core.config import load_yaml
from il_core.evaluate import evaluate
from il_core.train import train

pytestmark = pytest.mark.expensive


def _loop(tmp_path, env_id, name, eval_episodes):
    data = tmp_path / "data"
    collect(env_id, "auto", 10, 0, data)
    summary = train(
        [data], tmp_path / "bc", load_yaml(f"config/bc_{name}.yaml"), seed=0, progress=False
    )
    return summary, evaluate(summary["checkpoint"], env_id, eval_episodes, seed=1000)


def test_bc_mountaincar_success_at_least_95_percent(tmp_path):
    _, result = _loop(tmp_path, "MountainCar-v0", "mountaincar", 100)
    assert result["episodes"] == 100
    assert result["success_rate"] >= 0.95, result


def test_bc_cartpole_mean_return_at_least_475(tmp_path):
    _, result = _loop(tmp_path, "CartPole-v1", "cartpole", 50)
    assert result["episodes"] == 50
    assert result["mean_return"] >= 475, result
