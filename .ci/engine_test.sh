#!/usr/bin/env bash
# CI: the sharded pool embedding on a real cluster engine. Starts a one-node Slurm (as root, no
# systemd; .ci/slurm-up.sh), runs tests/test_engine_slurm.py (two shard jobs through
# hydra-submitit-launcher, then a plain merge run that must equal the unsharded one), and stops
# Slurm again unless it was already running. Run it with the project's venv active.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "engine_test: starting Slurm needs root (it runs its daemons without systemd)" >&2
  exit 1
fi
if ! sinfo -h -o %t 2>/dev/null | grep -qE 'idle|mix|alloc'; then
  trap 'bash .ci/slurm-down.sh' EXIT
  timeout 600 bash .ci/slurm-up.sh
fi
# without accounting a job that dies before writing its result leaves submitit waiting for ever:
# the test bounds each command itself, and timeout bounds the whole
MMGEN_ENGINE_TEST=1 timeout 1500 "${PYTHON:-python}" -m pytest tests/test_engine_slurm.py -q \
  -p no:cacheprovider
