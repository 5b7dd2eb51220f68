#!/usr/bin/env bash
# The README's demo command, verbatim, in the checkout: it makes .venv with the base install only
# (no extras), as on a new user's machine, so the demo must need nothing more.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO"
command=$(readme_command demo)
echo "+ $command"
bash -eo pipefail -c "$command"
test -s outputs/demo/report.html
