"""Quality bars of issue 5 on the multimodal reach simulator (seeded, trained for real).

Same data (100 scripted-expert demonstrations, seeds 0..99, left or right of the obstacle
with equal probability), same history (k = 2), chunking (h = 16, 4 executed) and training
budget (2000 steps of batch 64) for every policy: the shipped config/<policy>_multimodal.yaml.
Evaluation: 100 episodes from seed 1000, torch seeded, through the executor used by
``il-core eval`` (sim.multimodal.evaluate_modes reports which side each success took).
"""

import pytest
import torch

from il_core.checkpoint import load_policy
from il_core.collect import collect
from il_core.config import load_yaml
from il_core.train import train
from sim.multimodal import evaluate_modes

pytestmark = pytest.mark.expensive

ENV = "il_ros/MultimodalReach-v0"


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("multimodal") / "data"
    summary = collect(ENV, "auto", 100, 0, out)
    assert summary["success_rate"] == 1.0
    return out


def _train_and_evaluate(demos, out, name: str) -> dict:
    cfg = load_yaml(f"config/{name}_multimodal.yaml")
    summary = train([demos], out, cfg, seed=0, progress=False)
    policy = load_policy(summary["checkpoint"])
    torch.manual_seed(0)
    result = evaluate_modes(policy, episodes=100, seed=1000)
    print(name, result)  # the figures of docs/benchmarks.md (pytest -s shows them)
    return result


@pytest.mark.parametrize("name", ["diffusion", "mog", "act", "ar"])
def test_expressive_policies_reach_the_goal_and_use_both_sides(demos, tmp_path, name):
    result = _train_and_evaluate(demos, tmp_path / name, name)
    assert result["success_rate"] >= 0.9, result
    assert result["min_side_share"] >= 0.25, result


def test_mse_behaviour_cloning_averages_the_sides_into_the_obstacle(demos, tmp_path):
    result = _train_and_evaluate(demos, tmp_path / "bc", "bc")
    assert result["success_rate"] <= 0.6, result
