#!/usr/bin/env bash
# A plain install, as from a package index: build a wheel, install it (not editable) in a fresh
# venv, then run the demo and a user's own experiment from a folder outside the checkout; then
# the same after `pip install .` from the checkout. Each must find the config tree shipped
# inside the package, not the checkout's conf/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
dist=$CI_WORK/dist
venv=$CI_WORK/venv-wheel
outside=$CI_WORK/outside

"$REPO/.venv/bin/pip" wheel -q --no-deps -w "$dist" "$REPO"
python3 -m zipfile -l "$dist"/mmgen-*.whl | grep "mmgen/conf/config.yaml"  # conf/ is shipped
python3 -m venv "$venv"
. "$venv/bin/activate"
pip install -q torch==2.14.1 torchvision==0.29.1
pip install -q "$dist"/mmgen-*.whl

mkdir -p "$outside/my_conf/experiment"
cd "$outside"
# the user's own experiment, in their folder, reached through Hydra's search path
cat > my_conf/experiment/my_demo.yaml <<'YAML'
# @package _global_
# Run: python -m mmgen.pipeline +experiment=my_demo 'hydra.searchpath=[file://my_conf]'
defaults:
  - /experiment/demo          # start from the packaged offline demo
  - override /icl: "3"        # three in-context examples per prompt

name: my_demo                 # outputs land in outputs/my_demo/
total_gen: 60                 # generated items wanted
YAML

run_from_outside() {  # $1: how mmgen was installed
  local site conf
  site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  conf=$(python -c 'import mmgen; print(mmgen.CONF_DIR)')
  if [ "$conf" != "$site/mmgen/conf" ]; then
    echo "ci: after $1, mmgen reads its config from $conf, not from the package ($site/mmgen/conf)"
    return 1
  fi
  rm -rf outputs/demo outputs/my_demo
  python -m mmgen.pipeline +experiment=demo
  test -s outputs/demo/report.html
  python -m mmgen.pipeline +experiment=my_demo 'hydra.searchpath=[file://my_conf]'
  test -s outputs/my_demo/report.html
  echo "ci: $1: demo and a user's experiment ran from $outside"
}
run_from_outside "the wheel"
pip install -q --no-deps --force-reinstall "$REPO"
run_from_outside "pip install ."
