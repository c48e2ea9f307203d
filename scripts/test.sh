#!/usr/bin/env bash
# The project's test command. Two steps: the main suite, then the Triton kernels under the
# interpreter (TRITON_INTERPRET must be set before triton is imported, so they get their own process).
# Extra arguments go to both pytest runs. pytest's exit code 5 (no tests ran) counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

run() {
  "$@"; local rc=$?
  if [ $rc -eq 5 ]; then echo "error: no tests were collected by: $*"; return 1; fi
  return $rc
}

echo "== tests: main suite"
run $PY -m pytest -m "not triton" "$@" || exit 1
echo "== tests: Triton kernels (TRITON_INTERPRET=1 unless a GPU is present)"
if ! $PY -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then export TRITON_INTERPRET=1; fi
run $PY -m pytest -m triton "$@" || exit 1
