#!/usr/bin/env bash
# Run the test suite the way `make test` / `make test-fast` do:
#
#   scripts/pytest_phases.sh WORKERS [MARKER_EXPRESSION] [-- PYTEST_ARGS...]
#
# With WORKERS >= 2 and no PYTEST_ARGS, in two phases:
#   1. the tests that start no ROS process (-m "not ros and not launch"), WORKERS pytest
#      processes side by side (pytest-xdist): training, rendering and dataset tests are
#      CPU-bound and independent (each has its own tmp_path), so two processes use the two
#      cores of the CI machine that one process leaves half idle;
#   2. the ROS and launch tests (-m "ros or launch"), one at a time: they measure DDS
#      delivery, control rates and process start-up, which must not compete with training.
# With WORKERS 0 or 1, or any PYTEST_ARGS (a file, -k, ...), one plain pytest run.
# MARKER_EXPRESSION (e.g. "not expensive") narrows every phase. Exit status: 0 when every
# phase passed; a phase that collects no test at all (exit code 5) fails, as an empty
# suite must never pass.
set -uo pipefail

workers=${1:?usage: pytest_phases.sh WORKERS [MARKER_EXPRESSION] [-- PYTEST_ARGS...]}
shift
marker=""
if [ $# -gt 0 ] && [ "$1" != "--" ]; then marker=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi

run() {  # run MARKER [ARGS...]: one pytest invocation; prints what it runs
  local m=$1; shift
  local args=()
  if [ -n "$m" ]; then args=(-m "$m"); fi
  echo "+ python -m pytest ${args[*]:+-m '$m'} $*"
  local rc=0
  python -m pytest "${args[@]}" "$@" || rc=$?
  if [ $rc -eq 5 ]; then echo "error: pytest collected no tests (exit code 5)" >&2; fi
  return $rc
}

join() {  # join A B: "(A) and (B)", or whichever is not empty
  if [ -n "$1" ] && [ -n "$2" ]; then echo "($1) and ($2)"; else echo "$1$2"; fi
}

if [ $# -gt 0 ] || [ "$workers" -lt 2 ]; then
  run "$marker" "$@"
  exit $?
fi
failed=""
start=$SECONDS
# --durations: the slowest tests of each phase in the log, where the suite's time budget
# (45 minutes in CI) is spent.
run "$(join "$marker" "not ros and not launch")" -n "$workers" --durations=15 || failed="$failed no-ros(exit-$?)"
echo "== tests without ROS processes ($workers workers): $((SECONDS - start)) s"
step=$SECONDS
run "$(join "$marker" "ros or launch")" --durations=15 || failed="$failed ros(exit-$?)"
echo "== ROS and launch tests (one at a time): $((SECONDS - step)) s"
if [ -n "$failed" ]; then
  echo "pytest phases FAILED:$failed" >&2
  exit 1
fi
