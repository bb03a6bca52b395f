#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs `meson test`.
# MNIST is read from $DTRAIN_DATA/mnist (default: data/ in the checkout).
# Extra arguments go to meson test (e.g. --suite kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
launch/install-deps.sh --test
export DTRAIN_DATA="${DTRAIN_DATA:-$PWD/data}"
case "$DTRAIN_DATA" in /*) ;; *) DTRAIN_DATA="$PWD/$DTRAIN_DATA" ;; esac
# Open MPI refuses to run as root unless told it may (containers, CI).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -d build ] || meson setup build
ninja -C build
meson test -C build --print-errorlogs --num-processes 2 "$@"
