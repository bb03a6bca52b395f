#!/usr/bin/env bash
# dtrain itself with train.device=cuda on the emulated CUDA backend
# (tests/emu: every CUDA kernel source run on the CPU, cuBLAS by OpenBLAS):
# the trainer's GPU paths (device buffers, pinned staging for MPI, the bf16
# matmul and attention kernels, checkpoints from device memory) against the
# same runs on the CPU backend, and dp/tp/pp/sp layouts over the emulated NCCL.
# GPT-tiny and LeNet-5 for a few steps each.
# This is no GPU test: the GPU checks stay in scripts/gpu-check.sh.
. "$(dirname "$0")/e2e_common.sh"
E="$BUILD/tests/dtrain_emu"
[ -x "$E" ] || { echo "no tests/dtrain_emu (needs a C++20 compiler); skipping"; exit 77; }
export ASAN_OPTIONS=detect_leaks=0 OMPI_MCA_mpi_yield_when_idle=1
need_wos
need_mnist
gpt="$SRC/configs/gpt-tiny.ini"
common=(data.dir="$TMP/wos" train.seq_len=16 train.batch_size=4 train.micro_batch_size=2
        data.test_limit=8 log.every=1 log.tensorboard=false train.threads=1
        parallel.comm=mpi train.max_steps=4)

# worst relative per-step train loss difference of two runs, at most $3
close() {
  python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" "$3" <<'PY'
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["split"] == "train"}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a) if a and set(a) == set(b) else float("inf")
print(f"   {len(a)} steps, worst relative loss difference {worst:.2e} (limit {sys.argv[3]})")
sys.exit(0 if worst <= float(sys.argv[3]) else 1)
PY
}

for dev in cpu cuda; do
  "$E" "$gpt" "${common[@]}" train.device=$dev checkpoint.every=2 checkpoint.keep=0 \
    log.dir="$TMP/g-$dev" >"$TMP/g-$dev.log" 2>&1
  check "GPT-tiny 4 steps on $dev exits 0" test $? -eq 0
done
check "the emulated device is the one used" grep -q "CPU emulation of CUDA" "$TMP/g-cuda.log"
close "$TMP/g-cpu" "$TMP/g-cuda" 1e-5
check "GPT-tiny: cuda losses within 1e-5 of the CPU's" test $? -eq 0

"$E" "$gpt" "${common[@]}" train.device=cuda \
  checkpoint.resume="$TMP/g-cuda/checkpoints/step_00000002" log.dir="$TMP/g-res" \
  >"$TMP/g-res.log" 2>&1
check "GPT-tiny resumes on cuda from step 2" test $? -eq 0
jsonl_field "$TMP/g-cuda/metrics.jsonl" train loss | awk '$1 > 2' >"$TMP/a.loss"
jsonl_field "$TMP/g-res/metrics.jsonl" train loss >"$TMP/b.loss"
check "GPT-tiny cuda resume: steps 3..4 bit-identical" diff "$TMP/a.loss" "$TMP/b.loss"

# bf16: the CPU rounds the matmul operands only, the GPU kernels also
# attention's P and dS, so the two agree to bf16 accuracy
for dev in cpu cuda; do
  "$E" "$gpt" "${common[@]}" train.device=$dev train.precision=bf16 log.dir="$TMP/b-$dev" \
    >"$TMP/b-$dev.log" 2>&1
  check "GPT-tiny bf16 on $dev exits 0" test $? -eq 0
done
close "$TMP/b-cpu" "$TMP/b-cuda" 1e-2
check "GPT-tiny bf16: cuda losses within 1% of the CPU's" test $? -eq 0

# train.precision=auto: bf16 on the GPU, fp32 on the CPU, bit for bit, and
# the run directory's config.ini records which
for dev in cpu cuda; do
  want=$([ $dev = cuda ] && echo b || echo g)
  prec=$([ $dev = cuda ] && echo bf16 || echo fp32)
  "$E" "$gpt" "${common[@]}" train.device=$dev train.precision=auto log.dir="$TMP/a-$dev" \
    >"$TMP/a-$dev.log" 2>&1
  jsonl_field "$TMP/a-$dev/metrics.jsonl" train loss >"$TMP/a-$dev.loss"
  jsonl_field "$TMP/$want-$dev/metrics.jsonl" train loss >"$TMP/$want-$dev.loss"
  check "GPT-tiny train.precision=auto on $dev: the $prec run's losses, config.ini says so" \
    bash -c "[ -s '$TMP/a-$dev.loss' ] && cmp -s '$TMP/a-$dev.loss' '$TMP/$want-$dev.loss' &&
             grep -q '^precision = $prec' '$TMP/a-$dev/config.ini'"
done

common1=("${common[@]/train.micro_batch_size=2/train.micro_batch_size=1}")
mpirun --oversubscribe --bind-to none -np 2 "$E" "$gpt" "${common1[@]}" train.device=cuda \
  parallel.dp=2 parallel.zero=3 log.dir="$TMP/g-dp2" \
  >"$TMP/g-dp2.log" 2>&1
check "GPT-tiny dp=2 zero=3 on cuda (MPI through pinned buffers) exits 0" test $? -eq 0
close "$TMP/g-cuda" "$TMP/g-dp2" 1e-5
check "GPT-tiny dp=2 zero=3 on cuda matches one process" test $? -eq 0
# the same over parallel/comm_nccl.c, on the emulated NCCL (each rank its
# own emulated GPU), with ZeRO-2's reduce-scatter of the gradient buckets
# (small ones: backward's bucket buffers lent and lent again)
nccl=("${common1[@]/parallel.comm=mpi/parallel.comm=nccl}")
mpirun --oversubscribe --bind-to none -np 2 "$E" "$gpt" "${nccl[@]}" train.device=cuda \
  parallel.dp=2 parallel.zero=2 parallel.bucket_mb=0.02 log.dir="$TMP/g-nccl" >"$TMP/g-nccl.log" 2>&1
check "GPT-tiny dp=2 zero=2 on cuda over NCCL exits 0" \
  bash -c "[ $? -eq 0 ] && grep -q 'data parallel: 2 ranks over nccl' '$TMP/g-nccl.log'"
close "$TMP/g-cuda" "$TMP/g-nccl" 1e-5
check "GPT-tiny dp=2 zero=2 over NCCL matches one process" test $? -eq 0
# nccl_layout NAME REF LIMIT SAYS OVERRIDES...: GPT-tiny on cuda on 2 ranks over
# the emulated NCCL, whose log says SAYS, within LIMIT of the run REF
nccl_layout() {
  local name=$1 ref=$2 lim=$3 says=$4
  shift 4
  mpirun --oversubscribe --bind-to none -np 2 "$E" "$gpt" "${nccl[@]}" train.device=cuda "$@" \
    log.dir="$TMP/$name" >"$TMP/$name.log" 2>&1
  check "GPT-tiny $* on cuda over NCCL exits 0" \
    bash -c "[ $? -eq 0 ] && grep -q '$says' '$TMP/$name.log'"
  close "$TMP/$ref" "$TMP/$name" "$lim"
  check "GPT-tiny $* over NCCL matches one process (within $lim)" test $? -eq 0
}
# tensor parallelism on the CUDA kernels (each rank 2 of the 4 heads and
# half the MLP units: attention and GEMMs at the parts' widths), its
# all-reduces over the emulated NCCL; in bf16 (the parts' bf16 logits, their
# gradient in place, 25128 and 25129 ids wide) within 1% of one process in bf16
tp_says="tensor parallel: 2 ranks over nccl"
nccl_layout g-tp2 g-cuda 1e-5 "$tp_says" parallel.tp=2
nccl_layout b-tp2 b-cuda 1e-2 "$tp_says" parallel.tp=2 train.precision=bf16
# sequence parallelism: each rank's rows of the residual stream, the bf16
# LayerNorm outputs all-gathered and the row-parallel outputs
# reduce-scattered by the emulated NCCL
nccl_layout b-sp2 b-cuda 1e-2 "$tp_says, sequence parallel" parallel.tp=2 \
  parallel.sequence_parallel=true train.precision=bf16
# pipeline parallelism on the CUDA backend: two stages of one block, four
# micro-batches a step in the 1F1B order, activations and gradients passed
# by the emulated NCCL's grouped send and receive, the tied token table's
# gradient summed between the stages
pp_says="pipeline parallel: 2 stages over nccl"
nccl_layout g-pp2 g-cuda 1e-5 "$pp_says" parallel.pp=2
nccl_layout b-pp2 b-cuda 1e-2 "$pp_says" parallel.pp=2 train.precision=bf16
# gradients reduced in bf16 over NCCL: each bucket rounded by the to_bf16
# kernel, reduce-scattered as ncclBfloat16, widened into the shard; bf16
# training within 1% of one process in bf16
nccl_layout b-w16 b-cuda 1e-2 "data parallel: 2 ranks over nccl" parallel.dp=2 parallel.zero=2 \
  parallel.bucket_mb=0.02 parallel.reduce_dtype=bf16 train.precision=bf16
# GPipe's order: the last stage's input gradients kept in device memory
# (a device-to-device copy each) and sent back after its forwards
nccl_layout g-pp2g g-cuda 1e-5 "GPipe bubble" parallel.pp=2 parallel.pp_schedule=gpipe

lenet=(data.dir="$TMP/mnist" data.train_limit=400 data.test_limit=100 train.batch_size=40
       train.max_steps=10 log.every=1 log.tensorboard=false checkpoint.every=0 train.threads=1
       parallel.comm=mpi)
for dev in cpu cuda; do
  "$E" "$SRC/configs/lenet5-mnist.ini" "${lenet[@]}" train.device=$dev log.dir="$TMP/l-$dev" \
    >"$TMP/l-$dev.log" 2>&1
  check "LeNet-5 10 steps on $dev exits 0" test $? -eq 0
done
close "$TMP/l-cpu" "$TMP/l-cuda" 1e-5
check "LeNet-5: cuda losses within 1e-5 of the CPU's" test $? -eq 0

# the backend's environment switches: a bad value is a clear error (exit 2)
for var in DTRAIN_GEMM DTRAIN_ATTENTION; do
  env $var=bogus "$E" "$SRC/configs/lenet5-mnist.ini" "${lenet[@]}" train.device=cuda \
    log.dir="$TMP/bad-$var" >"$TMP/bad-$var.log" 2>&1
  check "$var=bogus exits 2" test $? -eq 2
  check "$var=bogus is named with the values it takes" grep -q "$var=bogus: expected one of" \
    "$TMP/bad-$var.log"
done
finish
