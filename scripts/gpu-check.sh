#!/usr/bin/env bash
# Every GPU check and benchmark of the project, stage by stage, each with its
# own time limit and a PASS / FAIL / SKIP line with its time, then a summary.
#
# Usage: scripts/gpu-check.sh [--dry-run] [all|tests|bench|transformer]   (default all)
#   all:   everything below, most important first, inside one time budget
#          (GPU_CHECK_BUDGET seconds, default 540): a session's device time
#          is 15 minutes in all, machine start included, so the whole check
#          is ONE device call. Each stage gets min(its limit, what is left);
#          stages that would get under 30 s are skipped with "no time left".
#          Order: preflight, CUDA build, the meson `gpu` suite (kernels_cuda,
#          gpt_hf_cuda, transformer_cuda: every kernel and model on the GPU
#          against its CPU twin or the HF fixture, fp32 and bf16), LeNet-5 on
#          the GPU (bench/lenet5.sh cuda, must reach 99%), bench/roofline
#          (copy GB/s, bf16 GEMM TFLOP/s) with bench/gpt_floor.py at those
#          rates, bench/gpt.sh
#          gpt-124m in bf16 and in fp32 (mb 16 x 1024), gpt-124m-wos in bf16
#          for train.max_time_s=90 with its final validation loss,
#          gpt-124m under log.profile (time per kernel slot), dp
#          equivalence on the GPU (LeNet, comm=mpi, np 2 zero 1 and np 4
#          zero 3 sharing the one GPU, 20 steps against one process),
#          tensor parallelism likewise (GPT-tiny tp=2 and dp=2 tp=2),
#          bench/comm with NCCL at np 1 and MPI at np 2, and last gpt-1.6b
#          (the largest micro-batch that fits).
#   tests: only the correctness stages; bench: only the benchmarks.
#   transformer: only issue 5's BLEU bar, for a session of its own:
#          bench/transformer.sh with GPU_CHECK_TF_MINUTES (default 2.5) of
#          training for dtrain and for PyTorch's nn.Transformer each (BPE
#          prep, both trainings and both beam-4 translations of the test
#          set fit the budget); needs DTRAIN_DATA/wmt-zh-en (17 MB) carried
#          instead of mnist/, wos/ and gpt2-tokenizer/. Its table comes back
#          as transformer-bench.txt.
#   --dry-run prints the stages and their limits and runs nothing.
#
# Output: one line per stage on stdout, the last lines a summary table.
# Under $OUT (the device tool returns what is written there; default
# gpu-check-out/): summary-MODE.txt, logs-MODE.tar.gz (every stage's log),
# gpt-bench.txt, gpt-profile.txt. The tool returns at most 8 files, so logs go
# in one tarball.
#
# Data: DTRAIN_DATA (default .device-carry/ when it holds mnist/, else data/)
# must hold mnist/ (the four IDX files), wos/ and gpt2-tokenizer/. The device
# machine has no network, so copy them into the git-ignored .device-carry/
# here and carry that folder (about 17 MB), with Debian's OpenBLAS packages
# (12.5 MB) in case the device image has no BLAS (not yet seen either way;
# they are unpacked only where no cblas.h is found):
#   mkdir -p .device-carry/debs && cp -r ../shared/data/{mnist,wos,gpt2-tokenizer} .device-carry/
#   (cd .device-carry/debs && apt-get download libopenblas0-pthread libopenblas-pthread-dev libgfortran5)
# then, from the device tool, one call:
#   run(command="scripts/gpu-check.sh", carry=[".device-carry"], timeout_s=600)
# A rerun while the machine is still warm (30 s) reuses build-gpu/.
#
# Build: build-gpu/ (GPU_BUILD overrides) with -Dcuda=enabled. cuDNN may live
# in a Python wheel (nvidia-cudnn) that ships only libcudnn.so.9; a link farm
# in build-gpu-deps/ gives meson the names it needs. The build needs meson,
# ninja, nvcc, an MPI (mpicc, mpiexec), HDF5, OpenBLAS and NCCL; preflight
# names any that is missing and then every later stage is skipped. Not yet
# seen on the device image: whether its OS has the MPI, HDF5 and OpenBLAS
# development packages (its recipe lists CUDA, PyTorch, CMake, ninja).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dry=0 mode=all
for a in "$@"; do
  case $a in
    --dry-run) dry=1 ;;
    tests|bench|all|transformer) mode=$a ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: scripts/gpu-check.sh [--dry-run] [tests|bench|all|transformer]" >&2; exit 2 ;;
  esac
done
out=${OUT:-$root/gpu-check-out}
build=${GPU_BUILD:-$root/build-gpu}
if [ -z "${DTRAIN_DATA:-}" ]; then
  if [ -d "$root/.device-carry/mnist" ] || [ -d "$root/.device-carry/wmt-zh-en" ]; then
    DTRAIN_DATA=$root/.device-carry
  else
    DTRAIN_DATA=$root/data
  fi
fi
export DTRAIN_DATA root build mode
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
logs=$work/logs; mkdir -p "$logs"
export work logs
[ $dry = 1 ] || mkdir -p "$out"

# OpenBLAS where the device image has none (its recipe names CUDA, PyTorch,
# CMake and ninja, not a BLAS): Debian 12's packages carried as .debs in
# .device-carry/debs/ (see Data above) are unpacked into
# build-gpu-deps/openblas, with an openblas.pc of our own, and the compiler,
# pkg-config and the loader are pointed there. Only the CPU twin of the
# tests uses it; the GPU path never calls a CPU GEMM.
# the link farms st_build makes for wheels' NCCL and cuDNN, for every
# stage's programs (harmless where they are not made)
export LD_LIBRARY_PATH=$root/build-gpu-deps/nccl/lib:$root/build-gpu-deps/cudnn/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
have_cblas() {
  [ -e /usr/include/cblas.h ] || ls /usr/include/*/cblas.h >/dev/null 2>&1 ||
    pkg-config --exists openblas 2>/dev/null
}
if [ $dry = 0 ] && ! have_cblas && ls "$root"/.device-carry/debs/libopenblas*.deb >/dev/null 2>&1; then
  ob=$root/build-gpu-deps/openblas
  rm -rf "$ob" && mkdir -p "$ob/x" "$ob/include" "$ob/lib/pkgconfig"
  for f in "$root"/.device-carry/debs/*.deb; do
    if command -v dpkg >/dev/null; then dpkg -x "$f" "$ob/x"
    else (cd "$ob" && ar p "$f" data.tar.xz | tar -xJ -C x); fi
  done
  cp -a "$ob"/x/usr/include/x86_64-linux-gnu/openblas-pthread/. "$ob/include/"
  cp -a "$ob"/x/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas*.so* "$ob/lib/"
  cp -a "$ob"/x/usr/lib/x86_64-linux-gnu/libgfortran.so.5* "$ob/lib/" 2>/dev/null
  printf 'prefix=%s\nName: openblas\nDescription: OpenBLAS (carried)\nVersion: 0.3.21\nLibs: -L${prefix}/lib -lopenblas\nCflags: -I${prefix}/include\n' \
    "$ob" >"$ob/lib/pkgconfig/openblas.pc"
  export PKG_CONFIG_PATH=$ob/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  export CPATH=$ob/include${CPATH:+:$CPATH} LIBRARY_PATH=$ob/lib${LIBRARY_PATH:+:$LIBRARY_PATH}
  export LD_LIBRARY_PATH=$ob/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  echo "# OpenBLAS: none on this machine; using the carried Debian packages ($ob)"
fi
summary=$out/summary-$mode.txt
t_all=$(date +%s)
budget=${GPU_CHECK_BUDGET:-540}
deadline=$((t_all + budget))
have_gpu=0 built=0 npass=0 nfail=0 nskip=0
rows=()

# stage NAME LIMIT_S FUNCTION DESCRIPTION: runs FUNCTION in a child bash under
# `timeout`, its output to $logs/NAME.log. The function exits 0 (PASS),
# 77 (SKIP) or anything else (FAIL), and may write one line to
# $logs/NAME.detail for the summary.
stage() {
  local name=$1 limit=$2 fn=$3 desc=$4 need=${5:-}
  if [ $dry = 1 ]; then
    printf '  %-16s limit %4s s  %s\n' "$name" "$limit" "$desc"; return
  fi
  local verdict detail="" t0 t1 rc left=$((deadline - $(date +%s) - 10))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 30 ]; then verdict=SKIP detail="no time left in the ${budget} s budget"
  elif [ "$need" = gpu ] && [ $have_gpu = 0 ]; then verdict=SKIP detail="no GPU"
  elif [ "$need" = gpu ] && [ $built = 0 ]; then verdict=SKIP detail="no CUDA build"
  else
    t0=$(date +%s.%N)
    timeout -k 15 "$limit" bash -c "set -uo pipefail; $(declare -f have_cblas losses_close "$fn"); $fn" >"$logs/$name.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    [ -s "$logs/$name.detail" ] && detail=$(head -1 "$logs/$name.detail")
    case $rc in
      0) verdict=PASS ;;
      77) verdict=SKIP; [ -n "$detail" ] || detail=$(grep -m1 -i "skip" "$logs/$name.log" | cut -c1-100) ;;
      124|137) verdict=FAIL detail="timed out after $limit s${detail:+; $detail}" ;;
      *) verdict=FAIL detail="exit $rc${detail:+; $detail}" ;;
    esac
  fi
  local secs
  secs=$(awk -v a="${t0:-0}" -v b="${t1:-0}" 'BEGIN{printf "%.1f", b-a}')
  case $verdict in PASS) npass=$((npass+1)) ;; FAIL) nfail=$((nfail+1)) ;; *) nskip=$((nskip+1)) ;; esac
  local row
  row=$(printf '%-4s  %-16s %7s s  %s' "$verdict" "$name" "$secs" "$detail")
  rows+=("$row")
  echo "$row"
  if [ $verdict = FAIL ]; then sed 's/^/      | /' "$logs/$name.log" | tail -15; fi
  return 0
}

# ---- stages (each runs in its own bash: only exported variables and have_cblas are seen) ----

st_preflight() {
  local miss=() t
  for t in meson ninja nvcc mpicc mpiexec python3 timeout; do
    command -v $t >/dev/null || { [ $t = nvcc ] && [ -x /usr/local/cuda/bin/nvcc ]; } || miss+=($t)
  done
  # meson finds MPI, HDF5 and OpenBLAS without it too (compiler wrappers,
  # h5cc, the library search path), so it is only reported
  command -v pkg-config >/dev/null || echo "note: no pkg-config"
  pkg-config --exists hdf5 2>/dev/null || [ -e /usr/include/hdf5/serial/hdf5.h ] || [ -e /usr/include/hdf5.h ] || miss+=(hdf5-dev)
  have_cblas || [ -e "${CPATH%%:*}/cblas.h" ] || miss+=("openblas-dev (or carry .device-carry/debs)")
  local d
  local need=(mnist wos gpt2-tokenizer)
  [ "$mode" = transformer ] && need=(wmt-zh-en)
  for d in "${need[@]}"; do [ -d "$DTRAIN_DATA/$d" ] || miss+=("DTRAIN_DATA/$d"); done
  echo "DTRAIN_DATA=$DTRAIN_DATA"
  nvidia-smi -L 2>&1 || true
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  (command -v nvcc >/dev/null && nvcc --version || /usr/local/cuda/bin/nvcc --version) 2>&1 | tail -2
  meson --version 2>&1; mpiexec --version 2>&1 | head -1
  if [ ${#miss[@]} -gt 0 ]; then echo "missing: ${miss[*]}" | tee "$logs/preflight.detail"; exit 1; fi
  if ! nvidia-smi -L >/dev/null 2>&1; then echo "skip: no GPU (nvidia-smi -L fails)" | tee "$logs/preflight.detail"; exit 77; fi
  nvidia-smi --query-gpu=name --format=csv,noheader | head -1 >"$logs/preflight.detail"
}

st_build() {
  export PATH=$PATH:/usr/local/cuda/bin
  local opts=(-Dcuda=enabled -Demu=disabled)  # the CPU emulation tests are CI's
  # wheel_farm NAME: cuDNN and NCCL may live only in a Python wheel
  # (nvidia.NAME) that ships lib/libNAME.so.N; where the system has no
  # NAME.h, a link farm in build-gpu-deps/NAME gives meson include/ and the
  # unversioned names, through -DNAME_dir
  wheel_farm() {
    local name=$1 wheel farm f b
    wheel=$(python3 -c "import nvidia.$name as m; print(m.__path__[0])" 2>/dev/null) || return 0
    [ -e "$wheel/include/$name.h" ] || return 0
    [ -e "/usr/include/$name.h" ] || [ -e "/usr/local/cuda/include/$name.h" ] && return 0
    farm=$root/build-gpu-deps/$name
    mkdir -p "$farm/lib"
    ln -sfn "$wheel/include" "$farm/include"
    for f in "$wheel"/lib/lib"$name"*.so.*; do
      b=$(basename "$f"); ln -sf "$f" "$farm/lib/$b"; ln -sf "$f" "$farm/lib/${b%%.so.*}.so"
    done
    opts+=(-D"$name"_dir="$farm")
  }
  wheel_farm nccl
  wheel_farm cudnn
  if [ ! -f "$build/build.ninja" ]; then meson setup "$build" "${opts[@]}" || exit 1; fi
  ninja -C "$build" || exit 1
  "$build/dtrain" --version
  "$build/dtrain" --version | grep -q "CUDA backend built" || { echo "dtrain built without CUDA" | tee "$logs/build.detail"; exit 1; }
}

st_gpu_suite() {
  meson test -C "$build" --suite gpu --no-rebuild --print-errorlogs --num-processes 1 2>&1
  local rc=$?
  # meson's summary: "Ok: N", "Fail: N", "Skipped: N" ...
  local ok fail skip
  ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$build/meson-logs/testlog.txt" | tail -1)
  fail=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$build/meson-logs/testlog.txt" | tail -1)
  skip=$(sed -n 's/^Skipped: *\([0-9]*\).*/\1/p' "$build/meson-logs/testlog.txt" | tail -1)
  grep -E "^ *[0-9]+/[0-9]+ .*(OK|FAIL|SKIP|TIMEOUT)" "$build/meson-logs/testlog.txt" | tail -10
  echo "ok ${ok:-?}, fail ${fail:-?}, skipped ${skip:-?}" >"$logs/gpu_suite.detail"
  # which fused GEMMs real cuBLASLt takes: DTRAIN_GEMM=lt stops at the first
  # one it refuses (informational; auto falls back to the unfused kernels)
  DTRAIN_GEMM=lt timeout 120 "$build/tests/test_kernels" --backend cuda >"$logs/kernels_lt.log" 2>&1 &&
    echo "DTRAIN_GEMM=lt: $(tail -1 "$logs/kernels_lt.log")" >>"$logs/gpu_suite.detail" ||
    echo "DTRAIN_GEMM=lt: $(grep -m1 -o 'cuBLASLt has no algorithm.*' "$logs/kernels_lt.log" || tail -1 "$logs/kernels_lt.log")" >>"$logs/gpu_suite.detail"
  [ "$rc" = 0 ] || exit 1
  [ "${ok:-0}" -gt 0 ] || exit 77
}

# LeNet-5 on the GPU: the course config (batch 64) must reach 99%; then the
# large-batch row for the issue's "99% in under 1 s" (batch 512, lr 0.012:
# 8x fewer steps and launches; on the CPU, seeds 1234, 7 and 99 first passed
# 99% at epochs 6, 7 and 8 and ended at 99.15, 99.07 and 99.05%)
st_lenet_gpu() {
  "$root/bench/lenet5.sh" "$build" cuda | tee "$work/lenet.txt" || exit 1
  "$root/bench/lenet5.sh" "$build" cuda train.batch_size=512 optim.lr=0.012 \
    optim.warmup_steps=30 | tee -a "$work/lenet.txt" || exit 1
  # the device rows: "  cuda   DESC  epochs  t99_s  images/s  final_acc%"
  awk '$1 == "cuda" {acc[n++]=$NF; d = d (n > 1 ? "; batch 512: " : "") "t99 " $(NF-2) " s, " $(NF-1) " img/s, final " $NF}
       END {print d > ENVIRON["logs"] "/lenet_gpu.detail"; sub("%","",acc[0]); exit !(acc[0] + 0 >= 99.0)}' "$work/lenet.txt"
}

st_comm_nccl() {
  mpiexec -n 1 "$build/bench/comm" --backend cuda --comm nccl --max 1G || exit 1
}

st_comm_mpi() {
  mpiexec --oversubscribe -n 2 "$build/bench/comm" --backend cuda --comm mpi --max 256M || exit 1
  # the data-parallel reductions at ZeRO 0-3, fp32 and bf16 (the to_bf16 /
  # from_bf16 kernels on the device), on exact data; NCCL refuses the shared GPU
  mpiexec --oversubscribe -n 2 "$build/tests/test_dp_reduce" || exit 1
}

# losses_close REF RUN LABEL: the two runs' per-step train losses agree
# within 1e-4 relative (prints the worst)
losses_close() {
  python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" "$3" <<'PY'
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["split"] == "train"}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
if not a or set(a) != set(b):
    print(f"{sys.argv[3]}: steps differ"); sys.exit(1)
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
print(f"{sys.argv[3]}: {len(a)} steps, worst relative loss difference {worst:.2e} (limit 1e-4)")
sys.exit(0 if worst <= 1e-4 else 1)
PY
}

# LeNet-5 data parallel on the GPU: one process against dp 2 (zero 1) and
# dp 4 (zero 3), the ranks sharing the GPU over comm=mpi (NCCL refuses two
# ranks on one GPU), in 0.05 MB gradient buckets (several per step; ZeRO-3's
# lent from the bucket pool). 20 steps of per-step losses within 1e-4 relative: the
# CPU test holds 1e-5, but here each rank's micro-batch is 1/dp of the
# batch, so cuBLAS picks GEMMs of another M and sums in another order.
st_dp_gpu() {
  "$build/dtrain-prep" mnist "$DTRAIN_DATA/mnist" "$work/mnist" >/dev/null || exit 1
  local common=(data.dir="$work/mnist" data.train_limit=2000 data.test_limit=400
    train.device=cuda train.batch_size=40 train.max_steps=20 log.every=1
    log.tensorboard=false optim.warmup_steps=5 optim.grad_clip=1.0 checkpoint.every=0
    parallel.bucket_mb=0.05)
  local cfg=$root/configs/lenet5-mnist.ini bad=0 np zero
  "$build/dtrain" "$cfg" "${common[@]}" log.dir="$work/dp-ref" >"$work/dp-ref.log" 2>&1 ||
    { tail -5 "$work/dp-ref.log"; exit 1; }
  for np in 2 4; do
    zero=$([ $np = 2 ] && echo 1 || echo 3)
    mpirun --oversubscribe --bind-to none -np $np "$build/dtrain" "$cfg" "${common[@]}" \
      parallel.dp=$np parallel.zero=$zero parallel.comm=mpi log.dir="$work/dp$np" \
      >"$work/dp$np.log" 2>&1 || { echo "dp=$np zero=$zero: exit $?"; tail -5 "$work/dp$np.log"; bad=1; continue; }
    losses_close "$work/dp-ref" "$work/dp$np" "dp=$np zero=$zero" || bad=1
  done
  grep -h "worst relative" "$logs/dp_gpu.log" 2>/dev/null | sed 's/, worst relative loss difference/: worst/; s/ (limit 1e-4)//' | paste -sd';' >"$logs/dp_gpu.detail"
  exit $bad
}

# GPT-tiny tensor parallel on the GPU: tp=2 (heads, MLP units and the
# vocabulary split; the CUDA kernels at the parts' widths) and dp=2 tp=2
# zero=1 against one process, the ranks sharing the GPU over comm=mpi, in
# fp32, 20 steps of 2 micro-batches within 1e-4 relative (as st_dp_gpu).
st_tp_gpu() {
  "$build/dtrain-prep" wos "$DTRAIN_DATA/wos" "$work/tp-wos" >/dev/null || exit 1
  local common=(data.dir="$work/tp-wos" train.device=cuda train.precision=fp32
    train.seq_len=32 train.batch_size=8 train.micro_batch_size=4 data.test_limit=16
    train.max_steps=20 log.every=1 log.tensorboard=false checkpoint.every=0)
  local cfg=$root/configs/gpt-tiny.ini bad=0 lay np
  "$build/dtrain" "$cfg" "${common[@]}" log.dir="$work/tp-ref" >"$work/tp-ref.log" 2>&1 ||
    { tail -5 "$work/tp-ref.log"; exit 1; }
  # dp tp pp [sp]; pipeline stages of GPT-tiny's 2 blocks, 2 micro-batches a
  # step; sp: sequence parallelism (parallel.sequence_parallel)
  for lay in "1 2 1" "2 2 1" "1 1 2" "1 2 2" "1 2 1 sp" "1 2 2 sp"; do
    set -- $lay
    np=$(($1 * $2 * $3))
    local run="$work/tp-d$1t$2p$3${4:-}"
    mpirun --oversubscribe --bind-to none -np $np "$build/dtrain" "$cfg" "${common[@]}" \
      parallel.dp=$1 parallel.tp=$2 parallel.pp=$3 parallel.zero=1 parallel.comm=mpi \
      parallel.sequence_parallel=$([ -n "${4:-}" ] && echo true || echo false) \
      log.dir="$run" >"$run.log" 2>&1 ||
      { echo "dp=$1 tp=$2 pp=$3 ${4:-}: exit $?"; tail -5 "$run.log"; bad=1; continue; }
    losses_close "$work/tp-ref" "$run" "dp=$1 tp=$2 pp=$3 ${4:-}" || bad=1
  done
  grep -h "worst relative" "$logs/tp_gpu.log" 2>/dev/null | sed 's/, worst relative loss difference/: worst/; s/ (limit 1e-4)//' | paste -sd';' >"$logs/tp_gpu.detail"
  exit $bad
}

st_roofline() {
  "$build/bench/roofline" | tee "$work/roofline.txt" || exit 1
  local opts
  opts=$(sed -n 's/^# bench\/gpt_floor.py //p' "$work/roofline.txt")
  python3 "$root/bench/gpt_floor.py" gpt-124m gpt-1.6b $opts | tee "$logs/gpt_floor.txt"
  { echo "$opts"; grep '^# .*predicted' "$logs/gpt_floor.txt"; } >"$logs/roofline.detail"
}

st_gpt_124m() {
  PRECISION=bf16 OUT_LOGDIR=$logs OUT_CSV=$work/gpt.csv "$root/bench/gpt.sh" "$build" gpt-124m:16 | tee -a "$work/gpt-bench.txt"
  local rc=${PIPESTATUS[0]}
  awk '$1 == "gpt-124m" {print "bf16: " $6 " tok/s, " $7 " ms/step, MFU " $8 "%, peak " $9 " GiB"}' "$work/gpt-bench.txt" | tail -1 >"$logs/gpt_124m.detail"
  # the fused bias/GELU GEMMs warn once when cuBLASLt refuses them
  grep -h "cuBLASLt has no algorithm" "$logs"/gpt-gpt-124m-*.log 2>/dev/null | head -1 |
    sed 's/^/UNFUSED: /' >>"$logs/gpt_124m.detail"
  exit "$rc"
}

st_gpt_124m_fp32() {
  PRECISION=fp32 STEPS=8 OUT_LOGDIR=$logs OUT_CSV=$work/gpt.csv "$root/bench/gpt.sh" "$build" gpt-124m:16 | tee -a "$work/gpt-bench.txt"
  local rc=${PIPESTATUS[0]}
  awk '$1 == "gpt-124m" {print "fp32: " $6 " tok/s, " $7 " ms/step, MFU " $8 "%, peak " $9 " GiB"}' "$work/gpt-bench.txt" | tail -1 >"$logs/gpt_124m_fp32.detail"
  exit "$rc"
}

st_gpt_1_6b() {
  PRECISION=bf16 STEPS=8 WARMUP=2 OUT_LOGDIR=$logs OUT_CSV=$work/gpt.csv "$root/bench/gpt.sh" "$build" gpt-1.6b | tee -a "$work/gpt-bench.txt"
  local rc=${PIPESTATUS[0]}
  awk '$1 == "gpt-1.6b" {print "mb " $3 ": " $6 " tok/s, " $7 " ms/step, MFU " $8 "%, peak " $9 " GiB (planned " $11 ")"}' "$work/gpt-bench.txt" >"$logs/gpt_1_6b.detail"
  exit "$rc"
}

# configs/gpt-124m-wos.ini (the course lab's task) in bf16 for 90 s of
# training, then its validation loss.
st_gpt_wos() {
  "$build/dtrain-prep" wos "$DTRAIN_DATA/wos" "$work/wos-tokens" >/dev/null || exit 1
  "$build/dtrain" "$root/configs/gpt-124m-wos.ini" data.dir="$work/wos-tokens" \
    train.device=cuda train.precision=bf16 train.max_time_s=90 checkpoint.every=0 log.tensorboard=false \
    log.dir="$work/wos-run" || exit 1
  python3 - "$work/wos-run/metrics.jsonl" >"$logs/gpt_wos.detail" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tr = [r for r in rows if r["split"] == "train"]
va = [r for r in rows if r["split"] == "val"]
first, last = tr[0], tr[-1]
print(f"{last['step']} steps, train loss {first['loss']:.3f} -> {last['loss']:.3f}, "
      f"final val loss {va[-1]['loss']:.4f}, {last['tokens_per_s']:.0f} tok/s")
PY
  cat "$logs/gpt_wos.detail"
}

# Where gpt-124m's step goes: [log] profile times every kernel call of
# steps 2..6 (bf16, micro-batch 16 x 1024, one micro-batch a step) alone;
# the table (time, share, TFLOP/s per kernel slot) comes back as
# gpt-profile.txt.
st_gpt_profile() {
  local tok=$work/wos-tokens
  [ -f "$tok/train.h5" ] || "$build/dtrain-prep" wos "$DTRAIN_DATA/wos" "$tok" >/dev/null || exit 1
  "$build/dtrain" "$root/configs/gpt-124m.ini" data.dir="$tok" train.device=cuda \
    train.precision=bf16 train.batch_size=16 train.max_steps=6 data.test_limit=16 \
    log.profile=true checkpoint.every=0 log.tensorboard=false log.dir="$work/prof" || exit 1
  cp "$work/prof/profile.txt" "$logs/gpt_profile.txt"
  # the first profiled steps as a timeline (log.trace_steps), for Perfetto
  [ -f "$work/prof/trace.json" ] && cp "$work/prof/trace.json" "$logs/gpt_trace.json"
  # the output layer again with packed 50257-element rows (model.pad_vocab_to
  # = 1): what the padding to 50304 is worth
  "$build/dtrain" "$root/configs/gpt-124m.ini" data.dir="$tok" train.device=cuda \
    train.precision=bf16 train.batch_size=16 train.max_steps=4 data.test_limit=16 \
    model.pad_vocab_to=1 log.profile=true checkpoint.every=0 log.tensorboard=false \
    log.dir="$work/prof-packed" >"$logs/gpt_profile_packed.log" 2>&1 &&
    cp "$work/prof-packed/profile.txt" "$logs/gpt_profile_packed.txt"
  # one line: the wall time per step and the three costliest slots; then the
  # output layer's ms/step padded and packed
  { sed -n 's/^profile: .* \([0-9.]* ms\/step\) wall.*/\1: /p' \
      "$work/prof/profile.txt" | tr -d '\n'
    sed -n '3,5p' "$work/prof/profile.txt" | awk '{printf "%s %s; ", $1, $4}'
    for f in "$work/prof/profile.txt" "$work/prof-packed/profile.txt"; do
      [ -f "$f" ] && awk -v w="$([ "$f" = "$work/prof/profile.txt" ] && echo padded || echo packed)" \
        '$1 ~ /^lm_head_(forward|backward)$/ {s = s " " $1 " " $3} END {printf "%s:%s ms; ", w, s}' "$f"
    done
    echo; } >"$logs/gpt_profile.detail"
}

# Issue 5's bar: dtrain's transformer-wmt19 against PyTorch's nn.Transformer
# on the same shards and budget, test BLEU with beam 4 (bench/transformer.sh)
st_transformer() {
  local m=${GPU_CHECK_TF_MINUTES:-2.5}
  BENCH_PREP=$work/wmt19 BENCH_WORK=$work/tbench "$root/bench/transformer.sh" "$build" "$m" |
    tee "$work/transformer-bench.txt"
  local rc=${PIPESTATUS[0]}
  cp "$work/transformer-bench.txt" "$logs/" 2>/dev/null
  awk -F'|' '/^\| (dtrain|pytorch)/ {for (i = 2; i <= 8; i++) gsub(/^ +| +$/, "", $i)
             printf "%s: %s tok/s, BLEU %s; ", $2, $6, $8}' \
    "$work/transformer-bench.txt" >"$logs/transformer.detail"
  exit "$rc"
}

# ---- the plan ----
echo "# scripts/gpu-check.sh $mode$([ $dry = 1 ] && echo ' (dry run)'), $(date -u '+%Y-%m-%d %H:%M UTC'), DTRAIN_DATA=$DTRAIN_DATA"
stage preflight 60 st_preflight "tools, data folders, nvidia-smi"
if [ $dry = 0 ]; then
  case ${rows[-1]} in PASS*) have_gpu=1 ;; esac
fi
if [ $have_gpu = 1 ] || [ $dry = 1 ]; then
  stage build 420 st_build "meson setup $(basename "$build") -Dcuda=enabled (cuDNN from the wheel) + ninja"
  [ $dry = 1 ] || case ${rows[-1]} in PASS*) built=1 ;; esac
else
  rows+=("$(printf '%-4s  %-16s %7s s  %s' SKIP build 0.0 "preflight did not pass")"); nskip=$((nskip+1))
  echo "${rows[-1]}"
fi
# most important first: the budget may end the list early
t=$([ $mode = all ] || [ $mode = tests ] && echo 1 || echo 0)
b=$([ $mode = all ] || [ $mode = bench ] && echo 1 || echo 0)
[ $mode = transformer ] && stage transformer 520 st_transformer "bench/transformer.sh ${GPU_CHECK_TF_MINUTES:-2.5} min each: dtrain vs PyTorch nn.Transformer, test BLEU (beam 4)" gpu
[ $t = 1 ] && stage gpu_suite 180 st_gpu_suite "meson test --suite gpu (kernels_cuda, gpt_hf_cuda, transformer_cuda)" gpu
[ $t = 1 ] && stage lenet_gpu 120 st_lenet_gpu "bench/lenet5.sh cuda: LeNet-5 10 epochs, >= 99% test accuracy; batch 512 row" gpu
[ $b = 1 ] && stage roofline 45 st_roofline "bench/roofline (1 GiB copy, bf16 GEMMs) and bench/gpt_floor.py at the measured rates" gpu
[ $b = 1 ] && stage gpt_124m 120 st_gpt_124m "bench/gpt.sh gpt-124m:16 bf16 (T 1024, 12 steps, 3 warm-up)" gpu
[ $b = 1 ] && stage gpt_wos 150 st_gpt_wos "configs/gpt-124m-wos.ini bf16, train.max_time_s=90, final val loss" gpu
[ $b = 1 ] && stage gpt_profile 110 st_gpt_profile "gpt-124m bf16 log.profile=true: time per kernel slot, steps 2..6; output layer padded vs packed" gpu
[ $t = 1 ] && stage dp_gpu 120 st_dp_gpu "LeNet dp=2 zero=1, dp=4 zero=3 (comm=mpi, one GPU) vs one process, 20 steps" gpu
[ $t = 1 ] && stage tp_gpu 150 st_tp_gpu "GPT-tiny tp=2, dp=2 tp=2, pp=2, tp=2 pp=2, with sp, zero=1 (comm=mpi, one GPU) vs one process, 20 steps" gpu
[ $b = 1 ] && stage gpt_124m_fp32 90 st_gpt_124m_fp32 "bench/gpt.sh gpt-124m:16 fp32 (8 steps)" gpu
[ $t = 1 ] && stage comm_nccl_np1 90 st_comm_nccl "mpiexec -n 1 bench/comm --backend cuda --comm nccl --max 1G" gpu
[ $t = 1 ] && stage comm_mpi_np2 90 st_comm_mpi "mpiexec -n 2 bench/comm --backend cuda --comm mpi --max 256M; tests/test_dp_reduce" gpu
[ $b = 1 ] && stage gpt_1_6b 180 st_gpt_1_6b "bench/gpt.sh gpt-1.6b bf16 (largest of mb 16,12,8,4,2,1 that fits; 8 steps)" gpu
[ $dry = 1 ] && exit 0

total=$(( $(date +%s) - t_all ))
{
  echo "# gpu-check $mode: $npass passed, $nfail failed, $nskip skipped, ${total} s"
  echo "# $(head -1 "$logs/preflight.detail" 2>/dev/null), $(date -u '+%Y-%m-%d %H:%M UTC')"
  printf '%s\n' "${rows[@]}"
  if [ -s "$work/gpt-bench.txt" ]; then echo; cat "$work/gpt-bench.txt"; fi
} >"$summary"
[ -s "$work/gpt-bench.txt" ] && cp "$work/gpt-bench.txt" "$out/gpt-bench.txt"
[ -s "$logs/gpt_profile.txt" ] && cp "$logs/gpt_profile.txt" "$out/gpt-profile.txt"
[ -s "$logs/gpt_trace.json" ] && gzip -c "$logs/gpt_trace.json" >"$out/gpt-trace.json.gz"
[ -s "$work/transformer-bench.txt" ] && cp "$work/transformer-bench.txt" "$out/transformer-bench.txt"
[ -s "$work/lenet.txt" ] && cp "$work/lenet.txt" "$logs/lenet-table.txt"
tar -czf "$out/logs-$mode.tar.gz" -C "$work" logs 2>/dev/null
echo
echo "================ summary ($summary) ================"
cat "$summary"
[ $nfail = 0 ]
