#!/usr/bin/env bash
# Quick start on a fresh Debian/Ubuntu machine: install what is missing, build,
# prepare MNIST and train LeNet-5 (GPU if there is one, else CPU).
# MNIST's IDX files are read from $DTRAIN_DATA/mnist (default: data/mnist;
# scripts/download_mnist.sh fetches them where there is internet).
set -euo pipefail
cd "$(dirname "$0")/.."
launch/install-deps.sh
export DTRAIN_DATA="${DTRAIN_DATA:-data}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -d build ] || meson setup build
ninja -C build
build/dtrain-prep mnist "$DTRAIN_DATA/mnist" data/mnist-h5
build/dtrain configs/lenet5-mnist.ini "$@"
