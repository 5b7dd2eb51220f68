#!/usr/bin/env bash
# Install Debian's Chromium for the report's headless-browser test.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q chromium
