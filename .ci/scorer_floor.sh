#!/usr/bin/env bash
# The scorer tests at the oldest versions the `filter` extra allows: every `>=` floor in
# pyproject.toml's `filter` extra is installed exactly (transformers, peft), in a throwaway venv
# that takes everything else (torch, pytest, mmgen) from the checkout's .venv, so nothing is
# installed twice. About a minute. Usage: bash .ci/scorer_floor.sh  (after .ci/run made .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
base_venv=${MMGEN_BASE_VENV:-.venv}
floor_venv=${MMGEN_FLOOR_VENV:-${TMPDIR:-/tmp}/mmgen-scorer-floor}

# "transformers>=4.56" -> "transformers==4.56": the declared floor is the version tested
pins=$("$base_venv/bin/python" - <<'EOF'
import re
text = open("pyproject.toml", encoding="utf-8").read()
extra = re.search(r"^filter = \[(.*?)\]", text, re.MULTILINE).group(1)
print(" ".join(re.sub(r">=", "==", req) for req in re.findall(r'"([^"]+)"', extra)))
EOF
)
echo "scorer floor: $pins"

rm -rf "$floor_venv"
python3 -m venv "$floor_venv"
site_of() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
# the floor venv's own site-packages come first on sys.path, the base venv's after them
site_of "$base_venv" > "$(site_of "$floor_venv")/_mmgen_base_venv.pth"
# (pip's notes on the base venv's other packages wanting newer versions are kept in the log)
if ! "$floor_venv/bin/pip" install -q --disable-pip-version-check $pins \
    > "$floor_venv/pip.log" 2>&1; then
  cat "$floor_venv/pip.log"
  exit 1
fi
"$floor_venv/bin/python" - $pins <<'EOF'
import sys
from importlib.metadata import version

from packaging.version import Version

for pin in sys.argv[1:]:
    name, wanted = pin.split("==")
    assert Version(version(name)) == Version(wanted), f"{name} {version(name)} != floor {wanted}"
print("testing at", ", ".join(f"{pin.split('==')[0]} {version(pin.split('==')[0])}"
                              for pin in sys.argv[1:]))
EOF
"$floor_venv/bin/python" -m pytest tests/test_scoring.py -q -p no:cacheprovider
