#!/usr/bin/env bash
# Installs the Debian 12 packages that building, testing and benchmarking
# hyperswitch need, if any is missing (root, or sudo, needed then).
set -euo pipefail

pkgs=(build-essential cmake pkg-config libuv1-dev liburcu-dev check valgrind)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
((${#missing[@]})) || exit 0

echo "installing: ${missing[*]}"
sudo=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "run as root to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
