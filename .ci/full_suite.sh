#!/usr/bin/env bash
# The rest of the suite, with everything present: the seed's real task files (from
# ../shared/reference beside the checkout, or MMGEN_SEED_REFERENCE_DIR), Chromium, and CI set so
# that nothing may skip for want of them. It runs every test the README pass did not: the ones it
# skipped ($CI_WORK/skipped.txt) and the slow ones. The README pass ran all others in this same
# checkout and venv, so together the two passes are the full suite, each test run once where it
# can run. Uses the checkout's .venv made by readme_tests.sh.
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
mapfile -t skipped < <(sort -u "$CI_WORK/skipped.txt")
mapfile -t slow < <(pytest -m slow --collect-only -q | grep "::")
echo "ci: ${#skipped[@]} tests skipped by the README pass, ${#slow[@]} slow tests"
if [ $((${#skipped[@]} + ${#slow[@]})) -eq 0 ]; then
  echo "ci: nothing to run; the README pass should have skipped the seed-file and browser tests" >&2
  exit 1
fi
pytest -m "slow or not slow" -rfEs --durations=10 "${skipped[@]}" "${slow[@]}" 2>&1 \
  | tee "$CI_WORK/full_suite.log"
