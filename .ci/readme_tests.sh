#!/usr/bin/env bash
# The README's test command, verbatim, as on a new user's machine: no seed reference files, no
# browser on PATH, CI unset. The tests that need those must be skipped, each saying how to get
# what it needs, and nothing may fail. It adds the extras to the checkout's .venv (later steps
# reuse it) and records what it skipped ($CI_WORK/skipped.txt) for full_suite.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO"
command=$(readme_command test)
log=$CI_WORK/readme_tests.log
: > "$CI_WORK/skipped.txt"
echo "+ $command"
env -u CI -u MMGEN_SEED_REFERENCE_DIR PATH="$(path_without_browser)" \
  PYTHONPATH="$REPO/.ci${PYTHONPATH:+:$PYTHONPATH}" MMGEN_CI_SKIPPED="$CI_WORK/skipped.txt" \
  PYTEST_ADDOPTS="-p record_skips -rfEs --durations=10" \
  bash -eo pipefail -c "$command" 2>&1 | tee "$log"
expect_in "$log" "MMGEN_SEED_REFERENCE_DIR is unset" "the seed's real task files are skipped"
expect_in "$log" "no chromium on PATH: install it with" "the browser test is skipped"
