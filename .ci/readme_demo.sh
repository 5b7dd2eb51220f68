#!/usr/bin/env bash
# The README's demo command, verbatim, in the checkout (its venv is already there: quick).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO"
command=$(readme_command demo)
echo "+ $command"
bash -eo pipefail -c "$command"
test -s outputs/demo/report.html
