#!/usr/bin/env bash
# Installs what mixserve needs to build and test, only what is missing.
# Debian packages through apt-get, npm packages from package.json (lock file) through npm ci.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(cmake ninja-build ccache g++ pkg-config libboost-dev libboost-system-dev
      nlohmann-json3-dev libcli11-dev prometheus-cpp-dev libgtest-dev libgmock-dev
      openmpi-bin)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js: any install that brings npm will do (Debian's nodejs + npm, or NodeSource's nodejs).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm packages: references for the tokenizer and chat templates, and the OpenAI SDK for e2e tests.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi
