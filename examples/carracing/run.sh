#!/usr/bin/env bash
# Behaviour cloning from pixels on CarRacing-v3: collect scripted-driver demonstrations,
# train config/carracing_bc.yaml, evaluate. Run from the repository root, inside the venv,
# after `pip install "gymnasium[box2d]"`. See examples/carracing/README.md.
#   EPISODES=10 EVAL_EPISODES=10 OUT=runs/carracing examples/carracing/run.sh
set -euo pipefail
EPISODES=${EPISODES:-10}
EVAL_EPISODES=${EVAL_EPISODES:-10}
OUT=${OUT:-runs/carracing}

python -c "import Box2D" 2>/dev/null || {
  echo 'CarRacing-v3 needs Box2D: pip install "gymnasium[box2d]"' >&2
  exit 2
}
il-core collect --env CarRacing-v3 --expert carracing_pursuit --episodes "$EPISODES" \
  --seed 0 --out "$OUT/data"
il-core train --data "$OUT/data" --config config/carracing_bc.yaml --seed 0 --out "$OUT/bc"
il-core eval --checkpoint "$OUT/bc/policy.pt" --env CarRacing-v3 --episodes "$EVAL_EPISODES" \
  --seed 1000 --video "$OUT/rollout.mp4"
