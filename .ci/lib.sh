# Shared by .ci/run and its step scripts (sourced, not run): where things are, and small helpers.
# REPO is the checkout; CI_WORK a scratch folder outside it (venvs, the wheel, a user's folder).

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
CI_WORK=${CI_WORK:-${TMPDIR:-/tmp}/mmgen-ci}
mkdir -p "$CI_WORK"
BROWSERS=(chromium chromium-browser google-chrome google-chrome-stable)

# readme_command NAME: the commands in README.md's fenced block that follows `<!-- ci: NAME -->`,
# so CI runs exactly what a reader copies
readme_command() {
  local command
  command=$(awk -v marker="<!-- ci: $1 -->" '
    index($0, marker) == 1 { found = 1; next }
    found && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }' "$REPO/README.md")
  if [ -z "$command" ]; then
    echo "README.md has no command block after '<!-- ci: $1 -->'" >&2
    return 1
  fi
  printf '%s\n' "$command"
}

# path_without_browser: $PATH, with each folder holding a browser replaced by a folder of links
# to everything else in it (a browser can't be taken off PATH by dropping /usr/bin)
path_without_browser() {
  local folder entry name browser farm kept="" has_browser
  local -a folders
  IFS=: read -r -a folders <<< "$PATH"
  for folder in "${folders[@]}"; do
    has_browser=""
    for browser in "${BROWSERS[@]}"; do
      [ -e "$folder/$browser" ] && has_browser=1
    done
    if [ -n "$has_browser" ]; then
      farm=$(mktemp -d "$CI_WORK/path-without-browser.XXXXXX")
      for entry in "$folder"/*; do
        name=${entry##*/}
        [[ " ${BROWSERS[*]} " == *" $name "* ]] || ln -s "$entry" "$farm/$name"
      done
      folder=$farm
    fi
    kept=${kept:+$kept:}$folder
  done
  printf '%s\n' "$kept"
}

# expect_in FILE TEXT WHY: fail unless FILE holds TEXT
expect_in() {
  if ! grep -qF -- "$2" "$1"; then
    echo "ci: expected '$2' in $1: $3" >&2
    return 1
  fi
}
