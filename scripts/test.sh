#!/usr/bin/env bash
# The project's test command. Two steps: the main suite, then the Triton kernels under the
# interpreter (TRITON_INTERPRET must be set before triton is imported, so they get their own process).
# Extra arguments go to both pytest runs; a marker expression given with -m EXPR is combined with each
# step's own marker (pytest keeps only the last -m, so passing it through would undo the split).
# pytest's exit code 5 (no tests ran) counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

user_marker=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -m) user_marker="$2"; shift 2 ;;
    -m*) user_marker="${1#-m}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

marker() {  # marker STEP_EXPR -> STEP_EXPR combined with the user's -m expression
  if [ -n "$user_marker" ]; then echo "($1) and ($user_marker)"; else echo "$1"; fi
}

run() {
  "$@"; local rc=$?
  if [ $rc -eq 5 ]; then
    # With the user's own -m one step may legitimately select nothing (e.g. -m gpu has no Triton test).
    if [ -n "$user_marker" ]; then echo "note: this step selected no tests"; return 0; fi
    echo "error: no tests were collected by: $*"; return 1
  fi
  return $rc
}

echo "== tests: main suite"
run $PY -m pytest -m "$(marker "not triton")" ${args[@]+"${args[@]}"} || exit 1
echo "== tests: Triton kernels (TRITON_INTERPRET=1 unless a GPU is present)"
if ! $PY -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then export TRITON_INTERPRET=1; fi
run $PY -m pytest -m "$(marker "triton")" ${args[@]+"${args[@]}"} || exit 1
