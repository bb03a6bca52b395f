#!/usr/bin/env bash
# Data parallelism against one process: dp = 2, 4 x zero = 0, 1, 2, 3 give the
# same per-step losses as one process with the same global batch (within
# 1e-5 relative, 20 steps), with and without gradient accumulation; and a
# checkpoint saved by dp=4 zero=3 resumes as dp=2 zero=1 and as one process;
# the optimizer offloaded to the host gives the same losses; gradients
# reduced in bf16 stay close.
. "$(dirname "$0")/e2e_common.sh"
need_mnist
D="$BUILD/dtrain"
cfg="$SRC/configs/lenet5-mnist.ini"
export OMPI_MCA_mpi_yield_when_idle=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(mpirun --oversubscribe --bind-to none)
common=(data.dir="$TMP/mnist" data.train_limit=2000 data.test_limit=400 train.device=cpu
        train.batch_size=40 train.max_steps=20 log.every=1 log.tensorboard=false
        train.threads=1 optim.warmup_steps=5 optim.grad_clip=1.0 parallel.bucket_mb=0.05)

# close A B [MAX [MIN]]: per-step train losses agree within MAX (1e-5)
# relative, and (MIN given) differ by more than MIN somewhere
close() {
  python3 - "$1" "$2" "${3:-1e-5}" "${4:--1}" <<'PY'
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["split"] == "train"}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
hi, lo = float(sys.argv[3]), float(sys.argv[4])
if not a or set(a) != set(b):
    print(f"   steps differ: {sorted(a)[:3]}... vs {sorted(b)[:3]}..."); sys.exit(1)
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
print(f"   {len(a)} steps, worst relative difference {worst:.2e} (within {hi:g}"
      + (f", above {lo:g})" if lo >= 0 else ")"))
sys.exit(0 if lo < worst <= hi else 1)
PY
}

"$D" "$cfg" "${common[@]}" checkpoint.every=0 log.dir="$TMP/ref" >"$TMP/ref.log" 2>&1
check "one process" test $? -eq 0
"$D" "$cfg" "${common[@]}" checkpoint.every=0 log.dir="$TMP/ref-acc" train.micro_batch_size=10 >/dev/null 2>&1
check "one process, 4 micro-batches of accumulation, same losses" close "$TMP/ref/metrics.jsonl" "$TMP/ref-acc/metrics.jsonl"
# ZeRO-2/3 on one rank: nothing is reduced, so the micro-batches' gradients
# must add up in place (they once started afresh, keeping only the last)
for zero in 2 3; do
  "$D" "$cfg" "${common[@]}" checkpoint.every=0 log.dir="$TMP/ref-acc-z$zero" train.micro_batch_size=10 \
    parallel.zero=$zero >/dev/null 2>&1
  check "one process at zero=$zero with 4 micro-batches, same losses" close "$TMP/ref/metrics.jsonl" \
    "$TMP/ref-acc-z$zero/metrics.jsonl"
done

for dp in 2 4; do
  for zero in 0 1 2 3; do
    for micro in 0 5; do
      run="$TMP/dp$dp-z$zero-m$micro"
      "${MPIRUN[@]}" -np $dp "$D" "$cfg" "${common[@]}" checkpoint.every=0 log.dir="$run" parallel.dp=$dp \
        parallel.zero=$zero train.micro_batch_size=$micro >"$run.log" 2>&1
      rc=$?
      if [ $rc -ne 0 ]; then bad "dp=$dp zero=$zero micro=$micro: exit $rc"; tail -5 "$run.log"; continue; fi
      check "dp=$dp zero=$zero micro=$micro matches one process" close "$TMP/ref/metrics.jsonl" "$run/metrics.jsonl"
      if [ $zero = 3 ]; then
        check "dp=$dp zero=3 micro=$micro prefetched layers" grep -qE "zero-3: [1-9][0-9]* layer gathers were prefetched" "$run.log"
      fi
    done
  done
done

run="$TMP/offload"
"${MPIRUN[@]}" -np 2 "$D" "$cfg" "${common[@]}" checkpoint.every=0 log.dir="$run" parallel.dp=2 \
  parallel.zero=1 optim.offload=cpu >"$run.log" 2>&1
check "dp=2 zero=1 optim.offload=cpu matches one process" close "$TMP/ref/metrics.jsonl" "$run/metrics.jsonl"

# gradients reduced in bf16 (parallel.reduce_dtype): each bucket rounded
# once a step under ZeRO-0/1, once a micro-batch under ZeRO-2/3, so the
# losses stay within 3% of one process's but are not its (the exact sums
# are tests/test_dp_reduce.c's)
for zero in 1 2; do
  run="$TMP/bf16-z$zero"
  "${MPIRUN[@]}" -np 2 "$D" "$cfg" "${common[@]}" checkpoint.every=0 log.dir="$run" parallel.dp=2 \
    parallel.zero=$zero train.micro_batch_size=5 parallel.reduce_dtype=bf16 >"$run.log" 2>&1
  check "dp=2 zero=$zero reduce_dtype=bf16 exits 0" test $? -eq 0
  check "dp=2 zero=$zero reduce_dtype=bf16 stays close to one process" \
    close "$TMP/ref/metrics.jsonl" "$run/metrics.jsonl" 3e-2 1e-5
done

# the memory table follows the ZeRO paper: params 4P (ZeRO-3 4P/Nd plus the
# two layers being gathered), grads 4P (ZeRO-2/3 4P/Nd), optimizer 8P
# (ZeRO>=1 8P/Nd) for fp32 Adam; ZeRO-2/3 rows also give the bucket buffers
# backward writes (0.05 MB buckets here: fc1's 48000 weights fill one alone)
python3 - "$TMP"/dp4-z*-m0.log <<'PY'
import re, sys
bad = 0
for path in sys.argv[1:]:
    text = open(path).read()
    zero = int(re.search(r"zero=(\d), (\d+) parameters", text).group(1))
    P = int(re.search(r"zero=\d, (\d+) parameters", text).group(1))
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)(?:\s+(\d+))?$", text, re.M)
    assert len(rows) == 4, path
    shards = [(P + 3) // 4] * 3 + [P - 3 * ((P + 3) // 4)]
    largest_layer = 400 * 120 + 120  # fc1 weight and bias, gathered together
    for r, p, g, o, a, scratch in rows:
        # ZeRO-2/3 also give the bucket buffers: fc1.weight's, and less than
        # the whole model's
        if (scratch != "") != (zero >= 2) or (scratch and not 4 * 48000 <= int(scratch) < 4 * P):
            print(f"   zero={zero} rank {r}: grad scratch {scratch!r}, want [{4 * 48000}, {4 * P})")
            bad += 1
        s = shards[int(r)]
        want = (4 * P, 4 * (s if zero >= 2 else P), 8 * (s if zero >= 1 else P))
        got = (int(p), int(g), int(o))
        if zero == 3:
            ok = 4 * s < got[0] <= 4 * (s + 2 * largest_layer) and got[1:] == want[1:]
        else:
            ok = got == want
        if not ok:
            print(f"   zero={zero} rank {r}: {p} {g} {o}, want {want}"); bad += 1
print(f"   checked {len(sys.argv) - 1} tables")
sys.exit(1 if bad else 0)
PY
check "per-rank memory table matches the ZeRO formulas" test $? -eq 0

# resharding: dp=4 zero=3 saves at step 10; resume as dp=2 zero=1 and as 1 process
save="$TMP/save"
"${MPIRUN[@]}" -np 4 "$D" "$cfg" "${common[@]}" log.dir="$save" parallel.dp=4 parallel.zero=3 \
  checkpoint.every=10 checkpoint.keep=0 >"$save.log" 2>&1
check "dp=4 zero=3 run with checkpoints" test $? -eq 0
check "4 rank files, no gathering on rank 0" test "$(ls "$save/checkpoints/step_00000010"/rank*.h5 | wc -l)" -eq 4
for layout in "2 1" "1 0"; do
  set -- $layout
  run="$TMP/resume-dp$1-z$2"
  "${MPIRUN[@]}" -np $1 "$D" "$cfg" "${common[@]}" log.dir="$run" parallel.dp=$1 parallel.zero=$2 \
    checkpoint.every=0 checkpoint.resume="$save/checkpoints/step_00000010" >"$run.log" 2>&1
  check "resume as dp=$1 zero=$2 exits 0" test $? -eq 0
  python3 - "$save/metrics.jsonl" "$run/metrics.jsonl" <<'PY'
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["split"] == "train"}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
steps = sorted(b)
ok = steps == list(range(11, 21)) and all(abs(a[s] - b[s]) <= 1e-5 * abs(a[s]) for s in steps)
print(f"   steps {steps[0]}..{steps[-1]}, worst {max(abs(a[s]-b[s])/abs(a[s]) for s in steps):.2e}")
sys.exit(0 if ok else 1)
PY
  check "resume as dp=$1 zero=$2 continues with the same losses" test $? -eq 0
done
# out of the box: the configs leave parallel.dp = 0, so `mpirun -np N`
# trains N data-parallel ranks; a job that tp*pp does not divide is refused
"${MPIRUN[@]}" -np 2 "$D" "$cfg" "${common[@]}" checkpoint.every=0 log.dir="$TMP/auto" >"$TMP/auto.log" 2>&1
check "mpirun -np 2 with the config's parallel.dp exits 0" test $? -eq 0
check "... as 2 data-parallel ranks" grep -q "data parallel: 2 ranks" "$TMP/auto.log"
check "... matching one process" close "$TMP/ref/metrics.jsonl" "$TMP/auto/metrics.jsonl"
"${MPIRUN[@]}" -np 3 "$D" --print-layout "$cfg" parallel.pp=2 >"$TMP/auto3.log" 2>&1
check "3 ranks under pp=2 with dp = 0 exit 2" test $? -eq 2
check "... naming the ranks and the keys" grep -q \
  "this job has 3 ranks, which \[parallel\] tp\*pp = 1\*2 = 2 does not divide" "$TMP/auto3.log"
finish
