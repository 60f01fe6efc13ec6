#!/usr/bin/env bash
# The main job (`make demo`):
# 1. the full loop over ROS 2 in simulation (python -m il_ros.demo): simulated robot +
#    scripted teleop + recorder record 25 demonstrations over DDS, BC trains on them, the
#    inference node drives the simulated robot for 20 episodes; prints the success rate;
# 2. the library loop without ROS, collect -> train -> evaluate, for MountainCar-v0 and
#    CartPole-v1 from 10 scripted-expert episodes each.
# Output goes to runs/demo/ (datasets, checkpoints, node logs, metrics, plots, GIFs).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/demo}
rm -rf "$OUT"
mkdir -p "$OUT"

run() { echo "+ $*" >&2; "$@"; }

echo "=== ROS 2 loop: record -> train -> drive ===" >&2
run python -m il_ros.demo --out "$OUT/ros_loop" | tee "$OUT/ros_loop.json"

for task in "MountainCar-v0 mountaincar 100" "CartPole-v1 cartpole 50"; do
  set -- $task
  env=$1 name=$2 eval_eps=$3
  echo "=== $env ===" >&2
  mkdir -p "$OUT/$name"
  run il-core collect --env "$env" --expert auto --episodes 10 --seed 0 --out "$OUT/$name/data" \
    | tee "$OUT/$name/collect.json"
  run il-core train --data "$OUT/$name/data" --config "config/bc_$name.yaml" --seed 0 \
    --out "$OUT/$name/bc" | tee "$OUT/$name/train.json"
  run il-core eval --checkpoint "$OUT/$name/bc/policy.pt" --env "$env" --episodes "$eval_eps" \
    --seed 1000 --plot "$OUT/$name/eval.png" --video "$OUT/$name/rollout.gif" \
    | tee "$OUT/$name/eval.json"
done

python - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
ros = json.loads((out / "ros_loop.json").read_text())
print(f"\nROS 2 loop (PointReach sim robot over DDS): {ros['recorded_episodes']} demos "
      f"recorded, inference node success {100 * ros['success_rate']:.0f}% over "
      f"{ros['eval_episodes']} episodes")
print("\nBehaviour cloning from 10 expert episodes (il_core + gymnasium, no ROS):")
for name, env in (("mountaincar", "MountainCar-v0"), ("cartpole", "CartPole-v1")):
    r = json.loads((out / name / "eval.json").read_text())
    sr = "n/a" if r["success_rate"] is None else f"{100 * r['success_rate']:.0f}%"
    print(f"  {env:15s} episodes={r['episodes']:3d}  mean return={r['mean_return']:8.1f}"
          f"  success={sr}")
print(f"plots and GIFs in {out}/")
PY
