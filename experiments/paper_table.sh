#!/usr/bin/env bash
# Every experiment of the catalogue except the demo: the seed's commands plus the main runs
# (chartqa_mmgen, ai2d_mmgen) and the small-reference-set ablation.
#
#   experiments/paper_table.sh [stage] [overrides...]     stage defaults to pipeline
set -euo pipefail
stage="${1:-pipeline}"
shift || true
cd "$(dirname "$0")/.."
exec python -m "mmgen.${stage}" -m "+experiment=glob(*,exclude=demo)" "$@"
