#!/usr/bin/env bash
# dtrain --print-memory (the per-rank memory plan, made without a device)
# against the table real runs print after their first step, rank by rank:
# parameters, gradients, optimizer state and activations to the byte for
# GPT under dp with ZeRO 0-3, tp with sequence parallelism, pp under 1F1B
# and GPipe (the last stage's stash, the tied table's exchange buffer),
# bf16 with recompute, gradients reduced in bf16, and LeNet-5 (its
# activations at the evaluation batch). ZeRO-3's gather slots are planned at their largest possible size
# (at least the real, within 0.1%), the ZeRO-2 gradient pool within 10%.
# Then the micro-batch search, GPT-1.6B planned on this machine (which
# could not hold it), and bad input.
. "$(dirname "$0")/e2e_common.sh"
need_wos
need_mnist
D="$BUILD/dtrain"
cfg="$SRC/configs/gpt-tiny.ini"
common=(data.dir="$TMP/wos" train.seq_len=32 data.test_limit=16 log.tensorboard=false
        train.threads=1 train.max_steps=1)

# plan_matches NAME NP DP OVERRIDES...: a one-step run on NP ranks and the
# plan of the same layout (parallel.dp=DP given, as one process must)
plan_matches() {
  local name=$1 np=$2 dp=$3
  shift 3
  layout_run "$name" "$np" "$@" || return 1
  "$D" --print-memory "$cfg" "${common[@]}" parallel.dp="$dp" "$@" >"$TMP/$name.plan" 2>&1 ||
    { echo "   plan: exit $?"; cat "$TMP/$name.plan"; return 1; }
  python3 - "$TMP/$name.log" "$TMP/$name.plan" <<'PY'
import re, sys
real, plan = open(sys.argv[1]).read(), open(sys.argv[2]).read()
zero = int(re.search(r"memory per rank \(bytes\): zero=(\d+)", real).group(1))
rows = re.search(r"memory per rank.*\n.*\n((?: +\d+(?: +\d+)+\n)+)", real).group(1)
R = {int(v[0]): [int(x) for x in v[1:]] for v in map(str.split, rows.splitlines())}
rows = re.search(r"memory plan per rank.*\n.*\n((?: +\d+ +\d+ +\d+(?: +[\d.]+)+\n)+)", plan)
P = {int(v[0]): [float(x) for x in v[3:8]] for v in map(str.split, rows.group(1).splitlines())}
dp = int(re.search(r"dp (\d+) x", plan).group(1))
ok = bool(P) and set(P) <= set(R)
names = ["params", "grads", "optimizer", "activations", "grad scratch"]
for r, p in sorted(P.items()):
    real_row = R.get(r, [])
    for i, name in enumerate(names):
        if i >= len(real_row):  # the real table shows the scratch only under ZeRO-2/3
            continue
        a, b = real_row[i], p[i]
        if name == "params" and zero >= 3:
            good = a <= b <= a * 1.001
        elif name == "grad scratch" and dp > 1:
            good = abs(b - a) <= 0.1 * a
        else:
            good = a == b
        if not good:
            print(f"   rank {r} {name}: real {a}, plan {b:.0f}")
        ok &= good
print(f"   {len(P)} rank(s) of the plan against the run's table")
sys.exit(0 if ok else 1)
PY
}

check "one process, fp32" plan_matches one 1 1
wide=(model.n_layer=4 model.n_embd=256 parallel.bucket_mb=1)
for z in 1 2 3; do
  check "dp=2 zero=$z" plan_matches d2z$z 2 2 parallel.zero=$z "${wide[@]}"
done
# gradients reduced in bf16: ZeRO-1's bf16 copy of the flat gradient in the
# grads column, ZeRO-2's copies of the pool buffers in the scratch
for z in 1 2; do
  check "dp=2 zero=$z reduce_dtype=bf16" plan_matches d2z${z}w 2 2 parallel.zero=$z \
    parallel.reduce_dtype=bf16 "${wide[@]}"
done
check "zero=1 reduce_dtype=bf16: grads are 6 bytes a parameter" python3 - "$TMP/d2z1w.log" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
n = int(re.search(r"zero=1, (\d+) parameters", t).group(1))
g = int(re.search(r"\n +0 +\d+ +(\d+) ", t).group(1))
sys.exit(0 if g == 6 * n and "reduce_dtype = bf16: grads holds" in t else 1)
PY
check "tp=2 sequence parallel" plan_matches t2 2 1 parallel.tp=2 parallel.sequence_parallel=true
check "pp=2 gpipe (the last stage's stash)" plan_matches p2g 2 1 parallel.pp=2 \
  parallel.pp_schedule=gpipe
check "pp=2 dp=2 zero=1 (the tied table's exchange buffer)" plan_matches p2d2 4 2 \
  parallel.pp=2 parallel.zero=1
check "tp=2 pp=2 zero=3, flops split" plan_matches t2p2z3 4 1 parallel.tp=2 parallel.pp=2 \
  parallel.zero=3 model.n_layer=3 parallel.pp_split=flops
check "bf16, recompute=mlp" plan_matches bf 1 1 train.precision=bf16 train.recompute=mlp
check "bf16 plans the rounded weight copy, 4 bytes a parameter on the CPU" python3 - \
  "$TMP/bf.plan" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
v = re.search(r"\n +0 +0 +0 +(\d+)(?: +\d+){4} +(\d+) +[\d.]+\n", t)
sys.exit(0 if v and int(v.group(2)) == int(v.group(1)) else 1)
PY
cfg="$SRC/configs/lenet5-mnist.ini"
common=(data.dir="$TMP/mnist" train.max_steps=1 train.device=cpu log.tensorboard=false
        train.threads=1 train.eval_batch_size=500)
check "lenet5" plan_matches lenet 1 1
check "lenet5 dp=2 zero=2" plan_matches lenet2 2 2 parallel.zero=2

# the search: each micro-batch's total is that micro-batch's own plan, and
# the largest that fits is the last row within the limit
cfg="$SRC/configs/gpt-tiny.ini"
common=(train.seq_len=32 train.batch_size=16 train.device=cpu)
search() {
  "$D" --print-memory "$cfg" "${common[@]}" train.micro_batch_size=4 >"$TMP/mb4.plan" || return 1
  # micro-batch 4's total and a byte (fp32 on the CPU, ZeRO-0: the first
  # four columns), as GiB
  local gib
  gib=$(awk '$1 == 0 && $2 == 0 && $3 == 0 {printf "%.12f", ($4 + $5 + $6 + $7 + 1) / 2^30}' \
    "$TMP/mb4.plan")
  "$D" --print-memory="$gib" "$cfg" "${common[@]}" >"$TMP/search.txt" || return 1
  python3 - "$TMP/search.txt" "$gib" <<'PY'
import re, sys
t, gib = open(sys.argv[1]).read(), float(sys.argv[2])
rows = [(int(a), float(b), c) for a, b, c in
        re.findall(r"micro_batch_size +(\d+) +([\d.]+) GiB +(fits|does not fit)", t)]
best = int(re.search(r"largest micro_batch_size that fits: (\d+)", t).group(1))
print(f"   rows {rows}, largest {best}, limit {gib}")
ok = [m for m, _, _ in rows] == [1, 2, 4, 8] and best == 4
ok &= all(c == "fits" for _, _, c in rows[:3]) and rows[3][2] == "does not fit"
ok &= all(a[1] < b[1] for a, b in zip(rows, rows[1:]))
ok &= abs(rows[2][1] - gib) < 0.005
sys.exit(0 if ok else 1)
PY
}
check "--print-memory=GIB: the largest micro-batch within GIB" search
# the table of other settings at the config's micro-batch (dp=2): each
# entry is the plan of that setting, and recompute saves; more ZeRO
# may (at dp=2 ZeRO-2's gradient pool holds GPT-tiny's token table whole)
settings() {
  local big=(train.seq_len=128 model.n_embd=256 model.n_head=4 model.n_layer=4
             train.batch_size=32 train.micro_batch_size=16 train.device=cpu parallel.dp=2)
  "$D" --print-memory=1 "$cfg" "${big[@]}" >"$TMP/settings.txt" || return 1
  "$D" --print-memory "$cfg" "${big[@]}" parallel.zero=2 train.recompute=mlp \
    >"$TMP/z2mlp.plan" || return 1
  python3 - "$TMP/settings.txt" "$TMP/z2mlp.plan" <<'PY'
import re, sys
t, other = open(sys.argv[1]).read(), open(sys.argv[2]).read()
rows = {int(z): [float(x) for x in v.split()]
        for z, v in re.findall(r"\n +zero=(\d) +([\d. ]+?)\s*(?=\n)", t.replace("*", " "))}
total = lambda s: float(re.search(r"\n +0 +0 +0 .* ([\d.]+)\n", s).group(1))
print(f"   {rows}; own total {total(t)}, zero=2 recompute=mlp {total(other)}")
ok = sorted(rows) == [0, 1, 2, 3] and all(len(v) == 3 for v in rows.values())
ok = ok and abs(rows[0][0] - total(t)) < 0.006 and abs(rows[2][1] - total(other)) < 0.006
ok = ok and all(v[0] > v[1] > v[2] for v in rows.values())
sys.exit(0 if ok else 1)
PY
}
check "--print-memory=GIB: ZeRO stages and recompute modes at the config's micro-batch" settings

# GPT-1.6B: 1,557,611,200 parameters (GPT-2 XL's count, the LM head tied),
# planned in seconds with nothing allocated
big() {
  "$D" --print-memory "$SRC/configs/gpt-1.6b.ini" parallel.dp=4 >"$TMP/big.txt" 2>&1 &&
    python3 - "$TMP/big.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
v = [int(x) for x in re.search(r"\n +0 +0 +0 +(\d+) +(\d+) +(\d+)", t).groups()]
n = 1557611200
print(f"   params {v[0]}, grads {v[1]}, optimizer {v[2]} bytes")
# ZeRO-1 over 4 ranks: fp32 weights and gradients whole, Adam's two states a quarter
sys.exit(0 if v[0] == 4 * n and v[1] == 4 * n and v[2] == 2 * 4 * -(-n // 4) else 1)
PY
}
check "gpt-1.6b: ZeRO-1 over dp=4, the parameter count of GPT-2 XL" big
check "transformer-tiny plans" sh -c "'$D' --print-memory '$SRC/configs/transformer-tiny.ini' \
  | grep -q '^ *0  *0  *0 '"

# a run that does not fit (here in 1.5 GB of address space) names the
# keys that size it and the plan
oom() {
  (ulimit -v 1500000
   "$D" "$cfg" data.dir="$TMP/wos" train.seq_len=128 train.batch_size=64 \
     train.micro_batch_size=64 model.n_embd=512 model.n_head=8 train.threads=1 \
     train.max_steps=1 log.dir="$TMP/oom" >"$TMP/oom.log" 2>&1)
  local rc=$?
  grep -q "out of host memory.*micro_batch_size.*dtrain --print-memory=GIB" "$TMP/oom.log" &&
    [ $rc -eq 2 ] || { echo "   exit $rc"; tail -3 "$TMP/oom.log"; return 1; }
}
check "out of memory: exit 2, the keys and --print-memory named" oom

# bad input: exit 2 with the key named
bad_run() { # bad_run PATTERN ARGS...: exit 2 and PATTERN on stderr
  local pat=$1
  shift
  "$D" "$@" >"$TMP/bad.out" 2>"$TMP/bad.err"
  local rc=$?
  grep -q -- "$pat" "$TMP/bad.err" && [ $rc -eq 2 ] ||
    { echo "   exit $rc"; cat "$TMP/bad.err"; return 1; }
}
check "--print-memory=abc exits 2" bad_run "expected --print-memory or --print-memory=GIB" \
  --print-memory=abc "$cfg"
check "tp=2 in one process without parallel.dp exits 2" bad_run "parallel.dp=N" \
  --print-memory "$cfg" parallel.tp=2
check "tp=3 with 4 heads exits 2 naming the keys" bad_run "\[parallel\] tp = 3" \
  --print-memory "$cfg" parallel.tp=3 parallel.dp=1
check "a batch dp does not divide exits 2" bad_run "not divisible by parallel.dp = 3" \
  --print-memory "$cfg" parallel.dp=3
finish
