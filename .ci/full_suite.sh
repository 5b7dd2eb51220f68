#!/usr/bin/env bash
# Every test, slow ones included, with everything present: the seed's real task files (from
# ../shared/reference beside the checkout), Chromium, and CI set so that nothing may skip for
# want of them. Uses the checkout's .venv made by readme_tests.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO"
reference=${MMGEN_SEED_REFERENCE_DIR:-$REPO/../shared/reference}
if [ ! -d "$reference" ]; then
  echo "ci: no seed reference folder at $reference; set MMGEN_SEED_REFERENCE_DIR to it" >&2
  exit 1
fi
export MMGEN_SEED_REFERENCE_DIR=$(cd "$reference" && pwd) CI=1
. .venv/bin/activate
pytest -m "slow or not slow" -rs 2>&1 | tee "$CI_WORK/full_suite.log"
