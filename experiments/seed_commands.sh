#!/usr/bin/env bash
# Reproduce the seed README's command list (prompt generation, then data generation, for every
# run it lists) as one Hydra multirun. Each job writes outputs/multirun/<name>/<overrides>/.
#
#   experiments/seed_commands.sh                  # partition -> retrieve -> prompts -> generate
#   experiments/seed_commands.sh prompts          # stop after the prompts (the seed's step 2)
#   experiments/seed_commands.sh pipeline         # everything, filter and report included
#   experiments/seed_commands.sh generate hydra/launcher=joblib   # jobs in parallel
set -euo pipefail
stage="${1:-generate}"
shift || true
cd "$(dirname "$0")/.."

# the seed's commands, in its README's order (see experiments/README.md for the mapping)
SEED_EXPERIMENTS=spatial_map_mmgen,spatial_map_generic,spatial_map_vqa_task_desc,spatial_map_descript_task_desc,ai2d_vqa_task_desc,ai2d_descript_task_desc,chartqa_vqa_task_desc,chartqa_descript_task_desc,chartqa_no_partition,chartqa_imbalanced_refset,chartqa_3icl,chartqa_5icl,chartqa_1cap,chartqa_3cap,chartqa_5cap

exec python -m "mmgen.${stage}" -m "+experiment=${SEED_EXPERIMENTS}" "$@"
