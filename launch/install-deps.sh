#!/usr/bin/env bash
# Installs what dtrain needs to build and test on Debian/Ubuntu (when root or
# with sudo), and the Python packages the tests use. Safe to run again.
set -euo pipefail
pkgs=(build-essential pkg-config meson ninja-build libopenmpi-dev openmpi-bin libhdf5-dev
      libopenblas-dev zlib1g-dev python3 python3-pip)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ "${1:-}" = "--test" ]; then
  here=$(cd "$(dirname "$0")/.." && pwd)
  if ! python3 -c "import tensorboard" 2>/dev/null; then
    python3 -m pip install -q -r "$here/requirements-test.txt" 2>/dev/null ||
      python3 -m pip install -q --break-system-packages -r "$here/requirements-test.txt"
  fi
fi
if [ "${1:-}" = "--test" ] && [ "$(id -u)" = 0 ]; then
  # tests/test_slurm.sh starts a one-node Slurm cluster here (root only).
  slurm_missing=()
  for p in slurm-wlm munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || slurm_missing+=("$p")
  done
  if [ ${#slurm_missing[@]} -gt 0 ]; then
    echo "installing: ${slurm_missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${slurm_missing[@]}"
  fi
fi
