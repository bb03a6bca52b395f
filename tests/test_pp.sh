#!/usr/bin/env bash
# Pipeline parallelism (GPT: blocks split over stages, 1F1B schedule, the
# token table tied between the first and the last stage) against one
# process: a 4-block GPT-tiny as pp = 2, 3 and 4 (the blocks cut to balance
# the stages' flops: 3+1, 1+2+1, 1+1+1+1, the LM head being worth 60 of
# GPT-tiny's blocks) and as pp = 2 cut evenly (2+2), with
# fewer micro-batches than stages, with one micro-batch a step, as pp = 2 x
# dp = 2 at ZeRO 0-3 (and with the optimizer offloaded to the host) and as
# pp = 2 x tp = 2 x dp = 2, with dropout and recompute, and in bf16, gives
# the same per-step losses as one process
# with the same global batch (within 1e-5 relative, 1e-3 in bf16) and the
# same validation loss; a checkpoint saved by pp = 2 x dp = 2 holds each
# tensor once (the token table in the first stage's files only) and resumes
# as one process, as pp = 4 and as pp = 2 x tp = 2 with the same losses;
# layouts the model cannot take are errors naming the keys.
. "$(dirname "$0")/e2e_common.sh"
need_wos
D="$BUILD/dtrain"
cfg="$SRC/configs/gpt-tiny.ini"
export OMPI_MCA_mpi_yield_when_idle=1
MPIRUN=(mpirun --oversubscribe --bind-to none)
common=(data.dir="$TMP/wos" model.n_layer=4 train.seq_len=32 train.batch_size=8
        data.test_limit=16 log.every=1 log.tensorboard=false train.threads=1)
MICRO=2 STEPS=10 # layout_run's defaults here: 4 micro-batches a step, 10 steps

check "one process" layout_run ref 1
check "pp=2 exits 0" layout_run pp2 2 parallel.pp=2
check "pp=2 says so, with its bubble (1 of 5 slots)" \
  grep -q "pipeline parallel: 2 stages over mpi; 4 micro-batches a step, so each stage idles 20%" \
  "$TMP/pp2.log"
# held: the model line's count of rank 0's parameters against the table's
held() {
  python3 - "$TMP/$1.log" "$2" "$3" <<'PY'
import re, sys
log, cut, blocks = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = re.search(r"model: gpt, (\d+) parameters \(pp \d+ stages of (\S+) blocks: rank 0 holds "
              r"(\d+)\)", open(log).read())
if not m:
    print("   no model line"); sys.exit(1)
C, V, T = 64, 50257, 128  # GPT-tiny: the embeddings, then blocks of 12 C^2 + 13 C
want = V * C + T * C + blocks * (12 * C * C + 13 * C)
print(f"   cut {m.group(2)}; rank 0 holds {m.group(3)} of {m.group(1)} (the embeddings and "
      f"{blocks} block{'s' * (blocks != 1)}: {want})")
sys.exit(0 if m.group(2) == cut and int(m.group(3)) == want else 1)
PY
}
check "pp=2: the stages hold 3+1 blocks, rank 0 the embeddings and 3" held pp2 3+1 3
"${MPIRUN[@]}" -np 2 "$D" --print-layout "$cfg" "${common[@]}" parallel.pp=2 >"$TMP/layout.log" 2>&1
check "--print-layout names each stage's blocks" \
  grep -q "pp 1   block 3, ln_f and the LM head" "$TMP/layout.log"
check "pp=2 matches one process" losses_close "$TMP/ref" "$TMP/pp2"
check "pp=2 cut evenly exits 0" layout_run pp2e 2 parallel.pp=2 parallel.pp_split=even
check "pp=2 cut evenly: 2+2 blocks" held pp2e 2+2 2
check "pp=2 cut evenly matches one process" losses_close "$TMP/ref" "$TMP/pp2e"
check "pp=3 exits 0" layout_run pp3 3 parallel.pp=3
check "pp=3: the stages hold 1+2+1 blocks" held pp3 1+2+1 1
check "pp=3 matches one process" losses_close "$TMP/ref" "$TMP/pp3"
check "pp=4 exits 0" layout_run pp4 4 parallel.pp=4
check "pp=4 matches one process" losses_close "$TMP/ref" "$TMP/pp4"
# 2 micro-batches a step through 4 stages (the schedule has no steady
# phase), and 1 through 2
MICRO=4 check "one process, micro-batch 4" layout_run ref_m4 1
MICRO=4 check "pp=4 with 2 micro-batches a step exits 0" layout_run pp4m4 4 parallel.pp=4
check "... and is told it has fewer micro-batches than stages" \
  grep -q "note: fewer micro-batches a step than stages" "$TMP/pp4m4.log"
check "pp=4 with 2 micro-batches a step matches one process" \
  losses_close "$TMP/ref_m4" "$TMP/pp4m4"
MICRO=8 check "one process, micro-batch 8" layout_run ref_m8 1
MICRO=8 check "pp=2 with 1 micro-batch a step exits 0" layout_run pp2m8 2 parallel.pp=2
check "pp=2 with 1 micro-batch a step matches one process" \
  losses_close "$TMP/ref_m8" "$TMP/pp2m8"
for zero in 0 1 2 3; do
  check "pp=2 dp=2 zero=$zero exits 0" layout_run p2d2z$zero 4 parallel.pp=2 parallel.dp=2 \
    parallel.zero=$zero
  check "pp=2 dp=2 zero=$zero matches one process" losses_close "$TMP/ref" "$TMP/p2d2z$zero"
done
# the optimizer on the host: the tied table's gradients are summed before
# they go there
# GPipe's order (parallel.pp_schedule = gpipe): all forwards, then all
# backwards; the same losses, each stage but the last keeping all M = 4
# micro-batches' activations (1F1B: pp - s), the last stage the M input
# gradients it sends back once the stage before has done its forwards
check "pp=2 gpipe exits 0" layout_run pp2g 2 parallel.pp=2 parallel.pp_schedule=gpipe
check "pp=2 gpipe says so" grep -q "each stage idles 20% of it in the GPipe bubble" "$TMP/pp2g.log"
check "pp=2 gpipe matches one process" losses_close "$TMP/ref" "$TMP/pp2g"
check "pp=4 gpipe exits 0" layout_run pp4g 4 parallel.pp=4 parallel.pp_schedule=gpipe
check "pp=4 gpipe matches one process" losses_close "$TMP/ref" "$TMP/pp4g"
check "pp=2 dp=2 zero=2 gpipe exits 0" layout_run p2d2g 4 parallel.pp=2 parallel.dp=2 \
  parallel.zero=2 parallel.pp_schedule=gpipe
check "pp=2 dp=2 zero=2 gpipe matches one process" losses_close "$TMP/ref" "$TMP/p2d2g"
python3 - "$TMP/pp2.log" "$TMP/pp2g.log" <<'PY'
import re, sys
def act(path):  # every rank's activation bytes in the start-up table
    t = open(path).read()
    return [int(m.group(1)) for m in
            re.finditer(r"^ +\d+ +\d+ +\d+ +\d+ +(\d+)$", t, re.M)]
a, g = act(sys.argv[1]), act(sys.argv[2])
stash = 4 * 2 * 32 * 64 * 4  # M x micro-batch x seq_len x n_embd floats
print(f"   activations 1f1b {a}, gpipe {g}; the last stage's stash {stash} bytes")
# stage 0: 4 slots against 2; the last stage: 1 slot each, and the stash
sys.exit(0 if len(a) == len(g) == 2 and g[0] > a[0] and g[1] - a[1] == stash else 1)
PY
check "gpipe: stage 0 keeps more activations, the last stage M input gradients more" \
  test $? -eq 0

# log.profile times the schedule's exchanges and the data-parallel
# communication: the first stage of M = 2 micro-batches sends M outputs and
# receives M gradients in M+1 calls (the steady state pairs a send with a
# receive), waits once a step for its buckets (ZeRO-1 reduces after the
# last micro-batch) and all-gathers its parameters once
check "pp=2 dp=2 zero=1 log.profile exits 0" layout_run p2prof 4 parallel.pp=2 parallel.dp=2 \
  parallel.zero=1 log.profile=true
check "... rank 0's profile: 3 pipeline exchanges, 1 bucket wait, 1 parameter all-gather" \
  bash -c "grep -Eq '^  comm pp send/recv +3\.0 ' '$TMP/p2prof/profile.txt' &&
           grep -Eq '^  comm dp bucket wait +1\.0 ' '$TMP/p2prof/profile.txt' &&
           grep -Eq '^  comm dp param all-gather +1\.0 ' '$TMP/p2prof/profile.txt'"
# log.trace_steps (3 by default): trace.json holds every rank's timed calls
# of the first 3 profiled steps; each rank a process with 3 step spans one
# after another, every call inside one of them, the ranks' k-th steps
# overlapping (one origin; the steps wait on each other), and rank 0's calls
# per slot 3 times what its table gives a step
check "pp=2 dp=2 log.profile: trace.json, 4 ranks x 3 steps, the table's calls" python3 - \
  "$TMP/p2prof/trace.json" "$TMP/p2prof/profile.txt" <<'PY'
import json, re, sys
from collections import Counter, defaultdict
ev = json.load(open(sys.argv[1]))["traceEvents"]
names = {e["pid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "process_name"}
X = [e for e in ev if e["ph"] == "X"]
spans, calls = defaultdict(list), defaultdict(list)
for e in X:
    (spans if e["tid"] == 1 else calls)[e["pid"]].append(e)
ok = names == {r: f"rank {r}" for r in range(4)} and all(len(spans[r]) == 3 for r in range(4))
for r in range(4):
    s = sorted(spans[r], key=lambda e: e["ts"])
    ok &= all(a["ts"] + a["dur"] <= b["ts"] for a, b in zip(s, s[1:]))
    eps = 1.0  # us: the printed rounding
    ok &= all(any(p["ts"] - eps <= c["ts"] and c["ts"] + c["dur"] <= p["ts"] + p["dur"] + eps
                  for p in s) for c in calls[r])
for k in range(3):
    k_spans = [sorted(spans[r], key=lambda e: e["ts"])[k] for r in range(4)]
    ok &= max(e["ts"] for e in k_spans) < min(e["ts"] + e["dur"] for e in k_spans)
table = {m.group(1).strip(): float(m.group(2)) for m in
         re.finditer(r"^  (\S.*?) +(\d+\.\d) +\d", open(sys.argv[2]).read(), re.M)}
got = Counter(c["name"] for c in calls[0])
ok &= bool(table) and got == {k: round(3 * v) for k, v in table.items()}
print(f"   {len(X)} events; rank 0's calls {dict(got)}")
sys.exit(0 if ok else 1)
PY
# GPipe pairs nothing: M sends, then M receives
check "pp=2 dp=2 zero=1 gpipe log.profile exits 0" layout_run p2gprof 4 parallel.pp=2 \
  parallel.dp=2 parallel.zero=1 log.profile=true parallel.pp_schedule=gpipe
check "... rank 0's profile: 4 pipeline exchanges under gpipe" \
  grep -Eq '^  comm pp send/recv +4\.0 ' "$TMP/p2gprof/profile.txt"
check "pp=2 dp=2 zero=1 optim.offload=cpu exits 0" layout_run p2off 4 parallel.pp=2 \
  parallel.dp=2 parallel.zero=1 optim.offload=cpu
check "pp=2 dp=2 with the optimizer offloaded matches one process" \
  losses_close "$TMP/ref" "$TMP/p2off"
check "pp=2 tp=2 dp=2 zero=1 exits 0" layout_run p2t2d2 8 parallel.pp=2 parallel.tp=2 \
  parallel.dp=2 parallel.zero=1
check "pp=2 tp=2 dp=2 zero=1 matches one process" losses_close "$TMP/ref" "$TMP/p2t2d2"

# dropout: every stage draws the masks of its blocks as one process does;
# recompute: a stage's backward replays from the slot's residual stream
check "one process, dropout 0.1, recompute=block" layout_run refdrop 1 model.dropout=0.1 \
  train.recompute=block
check "pp=2 dropout 0.1 recompute=block exits 0" layout_run p2drop 2 parallel.pp=2 \
  model.dropout=0.1 train.recompute=block
check "pp=2 with dropout and block recompute matches one process" \
  losses_close "$TMP/refdrop" "$TMP/p2drop"
check "one process, recompute=mlp" layout_run refmlp 1 train.recompute=mlp
check "pp=4 recompute=mlp exits 0" layout_run p4mlp 4 parallel.pp=4 train.recompute=mlp
check "pp=4 with MLP recompute matches one process" losses_close "$TMP/refmlp" "$TMP/p4mlp"
check "one process, bf16" layout_run ref16 1 train.precision=bf16
check "pp=2 bf16 exits 0" layout_run p216 2 parallel.pp=2 train.precision=bf16
check "pp=2 bf16 matches one process in bf16 (1e-3)" losses_close "$TMP/ref16" "$TMP/p216" 1e-3

# checkpoints: saved by pp=2 dp=2 zero=1 at step 10, resumed in other layouts
STEPS=20 check "pp=2 dp=2 zero=1 with a checkpoint at step 10" layout_run save 4 parallel.pp=2 \
  parallel.dp=2 parallel.zero=1 checkpoint.every=10 checkpoint.keep=0
CK="$TMP/save/checkpoints/step_00000010"
python3 - "$CK" <<'PY'
import sys, h5py
# rank = pp_rank * dp + dp_rank: ranks 0, 1 are the first stage, 2, 3 the last
names = {}
for r in range(4):
    seen = set()
    # rank 3's ZeRO shard is all of the last stage's copy of wte: it saves nothing
    g = h5py.File(f"{sys.argv[1]}/rank{r:05d}.h5", "r").get("params")
    if g: g.visititems(lambda n, o: seen.add(n) if isinstance(o, h5py.Dataset) else None)
    names[r] = seen
first, last = names[0] | names[1], names[2] | names[3]
# the stages hold 3+1 blocks
want_first = {"wte.weight", "wpe.weight"} | {n for n in first if n.startswith(("h.0.", "h.1.",
                                                                               "h.2."))}
ok = (first == want_first and len(want_first) == 2 + 3 * 12
      and {n.split(".")[1] for n in last if n.startswith("h.")} == {"3"}
      and "ln_f.weight" in last and not first & last and "wte.weight" not in last)
print(f"   first stage's files: {len(first)} tensors, last's: {len(last)}; "
      f"wte.weight in the last's: {'wte.weight' in last}")
sys.exit(0 if ok else 1)
PY
check "rank files hold their stage's tensors, the tied token table once" test $? -eq 0
for lay in "1 1 1 1" "4 4 1 1" "4 2 1 2"; do
  set -- $lay
  name="res-pp$2-dp$3-tp$4"
  STEPS=20 check "resume as pp=$2 dp=$3 tp=$4 exits 0" layout_run "$name" "$1" parallel.pp=$2 \
    parallel.dp=$3 parallel.tp=$4 checkpoint.resume="$CK"
  check "resume as pp=$2 dp=$3 tp=$4 continues with the same losses" \
    losses_close "$TMP/save" "$TMP/$name" 1e-5 11
done
check "the resumed run names the layout it was saved in" \
  grep -q "saved by dp=2 tp=1 pp=2 zero=1 on 4 ranks" "$TMP/res-pp1-dp1-tp1.log"

# layouts the model cannot take
"${MPIRUN[@]}" -np 5 "$D" "$cfg" "${common[@]}" train.max_steps=1 parallel.pp=5 \
  log.dir="$TMP/bad5" >"$TMP/bad5.log" 2>&1
check "pp=5 with 4 blocks exits 2" test $? -eq 2
check "... naming parallel.pp and model.n_layer" \
  grep -q "\[parallel\] pp = 5 is more than \[model\] n_layer = 4" "$TMP/bad5.log"
if [ -d "$DATA/mnist" ]; then
  "$BUILD/dtrain-prep" mnist "$DATA/mnist" "$TMP/mnist" >/dev/null
  "${MPIRUN[@]}" -np 2 "$D" "$SRC/configs/lenet5-mnist.ini" data.dir="$TMP/mnist" \
    parallel.pp=2 train.threads=1 log.dir="$TMP/badl" >"$TMP/badl.log" 2>&1
  check "pp=2 on LeNet-5 exits 2" test $? -eq 2
  check "... saying pipeline parallelism is built for gpt only" \
    grep -q "pipeline parallelism is built for gpt only" "$TMP/badl.log"
fi
finish
