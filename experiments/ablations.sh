#!/usr/bin/env bash
# The ChartQA ablations of the paper as sweeps.
#
#   experiments/ablations.sh [stage] [overrides...]     stage defaults to pipeline
set -euo pipefail
stage="${1:-pipeline}"
shift || true
cd "$(dirname "$0")/.."

# every ChartQA experiment file (main run, baselines, ablations)
python -m "mmgen.${stage}" -m '+experiment=glob(chartqa_*)' "$@"
# in-context examples swept on top of the main run (same as chartqa_3icl / chartqa_5icl)
python -m "mmgen.${stage}" -m +experiment=chartqa_mmgen icl=1,3,5 "$@"
