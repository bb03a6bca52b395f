#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build the CUDA backend, run the GPU test
# suite (every CUDA kernel against its CPU twin, collectives on the GPU),
# LeNet-5 on the GPU, and the benchmarks. Usage: scripts/gpu-check.sh [OUT_DIR]
# cuDNN may live in a Python wheel (nvidia-cudnn) that ships only
# libcudnn.so.9; a link farm in build-gpu-deps/ gives meson the names it needs.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-check-out}
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export DTRAIN_DATA=${DTRAIN_DATA:-$PWD/data}
opts=(-Dcuda=enabled)
wheel=$(python3 -c "import nvidia.cudnn as m; print(m.__path__[0])" 2>/dev/null || true)
if [ -n "$wheel" ] && [ ! -e /usr/include/cudnn.h ] && [ ! -e /usr/local/cuda/include/cudnn.h ]; then
  farm=$PWD/build-gpu-deps/cudnn
  mkdir -p "$farm/lib"
  ln -sfn "$wheel/include" "$farm/include"
  for f in "$wheel"/lib/libcudnn*.so.*; do
    b=$(basename "$f"); ln -sf "$f" "$farm/lib/$b"; ln -sf "$f" "$farm/lib/${b%%.so.*}.so"
  done
  opts+=(-Dcudnn_dir="$farm")
  export LD_LIBRARY_PATH="$wheel/lib:${LD_LIBRARY_PATH:-}"
fi
nvidia-smi -L | tee "$out/gpu.txt"
[ -d build-gpu ] || meson setup build-gpu "${opts[@]}" >"$out/setup.log" 2>&1 || { tail -30 "$out/setup.log"; exit 1; }
ninja -C build-gpu >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
meson test -C build-gpu --suite gpu --suite kernels --suite parallel --print-errorlogs 2>&1 | tee "$out/test.log" | tail -25
build-gpu/tests/test_kernels --backend cuda >"$out/kernels_cuda.txt" 2>&1; tail -3 "$out/kernels_cuda.txt"
bench/lenet5.sh "$PWD/build-gpu" cuda 2>&1 | tee "$out/bench_lenet5.txt"
mpiexec -n 1 build-gpu/bench/comm --backend cuda --comm nccl --max 1G >"$out/bench_comm_nccl.txt" 2>&1; tail -4 "$out/bench_comm_nccl.txt"
