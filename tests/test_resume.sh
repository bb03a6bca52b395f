#!/usr/bin/env bash
# Checkpoint/resume equality: a run stopped at any point and resumed gives the
# same losses, bit for bit, as the uninterrupted run (CPU backend).
. "$(dirname "$0")/e2e_common.sh"
need_mnist
D="$BUILD/dtrain"
common=(data.dir="$TMP/mnist" data.train_limit=2000 data.test_limit=500 train.device=cpu
        train.batch_size=50 train.micro_batch_size=25 train.max_steps=100 log.every=1
        log.tensorboard=false train.threads=1 optim.warmup_steps=10)
cfg="$SRC/configs/lenet5-mnist.ini"

# A: uninterrupted, checkpoints at 30, 60, 90, 100
"$D" "$cfg" "${common[@]}" log.dir="$TMP/a" checkpoint.every=30 checkpoint.keep=0 >"$TMP/a.log" 2>&1
check "uninterrupted run exits 0" test $? -eq 0
check "step directories written" test -d "$TMP/a/checkpoints/step_00000030" -a -d "$TMP/a/checkpoints/step_00000100"
check "LATEST names the last" grep -qx step_00000100 "$TMP/a/checkpoints/LATEST"
check "no .tmp left behind" test -z "$(ls -d "$TMP"/a/checkpoints/*.tmp 2>/dev/null)"
jsonl_field "$TMP/a/metrics.jsonl" train loss >"$TMP/a.loss"
jsonl_field "$TMP/a/metrics.jsonl" test loss >"$TMP/a.test"
check "100 train rows" test "$(wc -l <"$TMP/a.loss")" -eq 100

# B: resume from step 30 (mid-epoch: 40 steps per epoch) in a fresh run dir
"$D" "$cfg" "${common[@]}" log.dir="$TMP/b" checkpoint.every=0 \
  checkpoint.resume="$TMP/a/checkpoints/step_00000030" >"$TMP/b.log" 2>&1
check "resumed run exits 0" test $? -eq 0
check "resumed run says so" grep -q "resumed from .*step 30" "$TMP/b.log"
jsonl_field "$TMP/b/metrics.jsonl" train loss >"$TMP/b.loss"
check "resume from 30: steps 31..100 identical" diff <(awk '$1>30' "$TMP/a.loss") "$TMP/b.loss"
jsonl_field "$TMP/b/metrics.jsonl" test loss >"$TMP/b.test"
check "resume from 30: test losses after it identical" diff <(awk '$1>30' "$TMP/a.test") "$TMP/b.test"

# A2: A with checkpoint.async=true (the files written by a thread while
# training goes on): the same losses, the same rank files byte for byte,
# each save committed after its writing overlapped training; and its step
# 60 resumes to A's losses. Then with dp=2 (each rank its own thread, the
# commit once both are written): the uninterrupted run and its resume from
# step 60 agree bit for bit.
"$D" "$cfg" "${common[@]}" log.dir="$TMP/a2" checkpoint.every=30 checkpoint.keep=0 \
  checkpoint.async=true >"$TMP/a2.log" 2>&1
check "async saves: run exits 0" test $? -eq 0
jsonl_field "$TMP/a2/metrics.jsonl" train loss >"$TMP/a2.loss"
check "async saves: the same losses as A" diff "$TMP/a.loss" "$TMP/a2.loss"
same_files() {
  for st in 30 60 90 100; do
    cmp -s "$TMP/a/checkpoints/step_$(printf %08d $st)/rank00000.h5" \
      "$TMP/a2/checkpoints/step_$(printf %08d $st)/rank00000.h5" || return 1
  done
}
check "async saves: rank files of steps 30, 60, 90, 100 byte for byte A's" same_files
check "async saves: LATEST names the last" grep -qx step_00000100 "$TMP/a2/checkpoints/LATEST"
check "async saves: 3 written in the background, the last at the end" \
  test "$(grep -c 'written in the background while [0-9]* training steps* ran' "$TMP/a2.log")" -eq 3
"$D" "$cfg" "${common[@]}" log.dir="$TMP/b2" checkpoint.every=0 \
  checkpoint.resume="$TMP/a2/checkpoints/step_00000060" >"$TMP/b2.log" 2>&1
jsonl_field "$TMP/b2/metrics.jsonl" train loss >"$TMP/b2.loss"
check "async saves: resume from 60 gives A's steps 61..100" \
  diff <(awk '$1>60' "$TMP/a.loss") "$TMP/b2.loss"
mp=(mpirun --oversubscribe --bind-to none -np 2)
OMPI_MCA_mpi_yield_when_idle=1 "${mp[@]}" "$D" "$cfg" "${common[@]}" parallel.dp=2 \
  log.dir="$TMP/d2" checkpoint.every=30 checkpoint.keep=0 checkpoint.async=true \
  >"$TMP/d2.log" 2>&1
check "async saves, dp=2: run exits 0" test $? -eq 0
check "async saves, dp=2: two rank files a step" \
  test -f "$TMP/d2/checkpoints/step_00000060/rank00001.h5"
OMPI_MCA_mpi_yield_when_idle=1 "${mp[@]}" "$D" "$cfg" "${common[@]}" parallel.dp=2 \
  log.dir="$TMP/d2r" checkpoint.every=0 checkpoint.resume="$TMP/d2/checkpoints/step_00000060" \
  >"$TMP/d2r.log" 2>&1
jsonl_field "$TMP/d2/metrics.jsonl" train loss >"$TMP/d2.loss"
jsonl_field "$TMP/d2r/metrics.jsonl" train loss >"$TMP/d2r.loss"
check "async saves, dp=2: resume from 60 gives the run's steps 61..100" \
  diff <(awk '$1>60' "$TMP/d2.loss") "$TMP/d2r.loss"

# term_after ROWS NAME OVERRIDES...: A's run into $TMP/NAME (log
# $TMP/NAME.1.log), sent SIGTERM once it has logged ROWS steps; sets rc
term_after() {
  local rows=$1 name=$2
  shift 2
  "$D" "$cfg" "${common[@]}" log.dir="$TMP/$name" "$@" >"$TMP/$name.1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do
    [ "$(wc -l <"$TMP/$name/metrics.jsonl" 2>/dev/null || echo 0)" -ge "$rows" ] && break
    sleep 0.05
  done
  kill -TERM $pid
  wait $pid
  rc=$?
}

# C: the same run as A stopped by SIGTERM part-way (it saves at the step it
# is on, as checkpointing is enabled), then resumed with resume=auto: the continuation equals A.
term_after 5 c checkpoint.every=1000
check "SIGTERM exits 143 after saving" test $rc -eq 143
check "SIGTERM saved a checkpoint" test -f "$TMP/c/checkpoints/LATEST"
last=$(cat "$TMP/c/checkpoints/LATEST" 2>/dev/null || echo step_0)
n=${last#step_}; n=$((10#$n))
echo "stopped at step $n"
"$D" "$cfg" "${common[@]}" log.dir="$TMP/c" checkpoint.every=1000 >"$TMP/c2.log" 2>&1
check "auto-resume exits 0" test $? -eq 0
check "auto-resume picked up LATEST" grep -q "resumed from .*$last" "$TMP/c2.log"
jsonl_field "$TMP/c/metrics.jsonl" train loss | awk -v n="$n" 'NR>n' >"$TMP/c.loss"
check "resume after SIGTERM at step $n: steps $((n+1))..100 identical" \
  diff <(awk -v n="$n" '$1>n' "$TMP/a.loss") <(awk -v n="$n" '$1>n' "$TMP/c.loss")

# C2: as C, with async saves every 3 steps, so the signal finds one being
# written or waiting for its commit: it is finished, the step's own save is
# written, and the continuation equals A
term_after 7 c3 checkpoint.every=3 checkpoint.async=true
check "async saves: SIGTERM exits 143 after saving" test $rc -eq 143
last=$(cat "$TMP/c3/checkpoints/LATEST" 2>/dev/null || echo step_0)
n=${last#step_}; n=$((10#$n))
check "async saves: SIGTERM's save is the step it stopped at ($n)" \
  grep -q "stopped by signal 15 at step $n\$" "$TMP/c3.1.log"
check "async saves: no .tmp left behind" test -z "$(ls -d "$TMP"/c3/checkpoints/*.tmp 2>/dev/null)"
"$D" "$cfg" "${common[@]}" log.dir="$TMP/c3" checkpoint.every=3 checkpoint.async=true \
  >"$TMP/c4.log" 2>&1
check "async saves: auto-resume exits 0" test $? -eq 0
check "async saves: resume after SIGTERM at step $n: steps $((n+1))..100 identical" \
  diff <(awk -v n="$n" '$1>n' "$TMP/a.loss") \
    <(jsonl_field "$TMP/c3/metrics.jsonl" train loss | awk -v n="$n" 'NR>n' | awk -v n="$n" '$1>n')

# B: checkpoint.keep_best. Evaluations every 5 steps; a checkpoint at each
# one that raises the test accuracy, BEST naming the best, kept while
# checkpoint.keep = 1 prunes the rest to the newest; checkpoint.resume=best
# resumes it; a resumed run goes on from the best it had (a new best must
# beat it); with async saves and over two data-parallel ranks (rank 0
# decides) the same; keep_best = loss picks the lowest test loss.
kb=()
for a in "${common[@]}"; do [ "$a" = train.max_steps=100 ] || kb+=("$a"); done
kb+=(train.eval_every=5 checkpoint.every=25 checkpoint.keep=1)
# best_of RUN METRIC: the step of the evaluation with the best METRIC (the
# first, as a tie does not replace it), from metrics.jsonl
best_of() {
  python3 - "$1/metrics.jsonl" "$2" <<'PY'
import json, sys
rows = [r for r in map(json.loads, open(sys.argv[1])) if r["split"] == "test"]
key, sign = sys.argv[2], (-1 if sys.argv[2] == "loss" else 1)
best = None
for r in rows:
    if best is None or sign * r[key] > sign * best[key]:
        best = r
print(f"step_{best['step']:08d}")
PY
}
# kept RUN: the step directories left, space-separated
kept() { (cd "$1/checkpoints" && ls -d step_* | tr '\n' ' '); }
"$D" "$cfg" "${kb[@]}" optim.lr=0.01 train.max_steps=60 checkpoint.keep_best=accuracy \
  log.dir="$TMP/kb" >"$TMP/kb.log" 2>&1
check "keep_best=accuracy run exits 0" test $? -eq 0
want=$(best_of "$TMP/kb" accuracy)
check "BEST names the evaluation with the best accuracy ($want)" \
  grep -qx "$want" "$TMP/kb/checkpoints/BEST"
check "LATEST still names the last step" grep -qx step_00000060 "$TMP/kb/checkpoints/LATEST"
check "keep=1 leaves the newest and BEST's ($(kept "$TMP/kb"))" \
  test "$(kept "$TMP/kb")" = "$(printf '%s\n' "$want" step_00000060 | sort -u | tr '\n' ' ')"
n=$(grep -c '^best: test accuracy' "$TMP/kb.log")
check "a checkpoint is saved at each of the $n improvements, and said so" \
  test "$n" -gt 1 -a "$(grep -c 'BEST names it' "$TMP/kb.log")" -eq "$n"
# dtrain --eval: the checkpoint BEST names, evaluated alone, gives the row
# its training run logged at that step (the same weights and test windows)
"$D" --eval "$cfg" "${kb[@]}" optim.lr=0.01 train.max_steps=60 log.dir="$TMP/kb" \
  checkpoint.resume=best >"$TMP/kb-eval.log" 2>&1
check "dtrain --eval of BEST exits 0" test $? -eq 0
check "... its row equals the training run's at $want" python3 - "$TMP/kb/metrics.jsonl" \
  "$TMP/kb/eval/metrics.jsonl" "$want" <<'PY'
import json, sys
step = int(sys.argv[3].split("_")[1])
run = [r for r in map(json.loads, open(sys.argv[1])) if r["split"] == "test" and r["step"] == step]
ev = [json.loads(l) for l in open(sys.argv[2])]
ok = len(run) == 1 and len(ev) == 1 and ev[0]["step"] == step and \
     ev[0]["accuracy"] == run[0]["accuracy"] and abs(ev[0]["loss"] - run[0]["loss"]) <= 1e-6
print(f"   step {step}: accuracy {ev[0]['accuracy']} vs {run[0]['accuracy']}, loss "
      f"{ev[0]['loss']} vs {run[0]['loss']}")
sys.exit(0 if ok else 1)
PY
"$D" --eval "$cfg" "${kb[@]}" log.dir="$TMP/kb-none" >"$TMP/kb-none.log" 2>&1
check "dtrain --eval without a checkpoint evaluates the initial weights, and says so" \
  grep -q "evaluating the seeded initial weights (no checkpoint" "$TMP/kb-none.log"
# a run resumed from step 60 to 80: its new bests are the evaluations that
# beat the best of steps 1-60 (which the checkpoint carries) and each other
best60=$(python3 -c "import json, sys; print(max(r['accuracy'] for r in map(json.loads,
  open(sys.argv[1])) if r['split'] == 'test' and r['step'] <= 60))" "$TMP/kb/metrics.jsonl")
"$D" "$cfg" "${kb[@]}" optim.lr=0.01 train.max_steps=80 checkpoint.keep_best=accuracy \
  log.dir="$TMP/kb2" checkpoint.resume="$TMP/kb/checkpoints/step_00000060" >"$TMP/kb2.log" 2>&1
check "resumed run exits 0" grep -q "resumed from .*step_00000060" "$TMP/kb2.log"
check "the resumed run's new bests beat the saved one ($best60)" python3 - \
  "$TMP/kb2.log" "$TMP/kb2/metrics.jsonl" "$best60" <<'PY'
import json, re, sys
log, prev = open(sys.argv[1]).read(), float(sys.argv[3])
said = [(int(s), float(v))
        for v, s in re.findall(r"^best: test accuracy ([\d.]+) at step (\d+)", log, re.M)]
# what they must be: each evaluation of steps 61-80 above every one before it
want = []
for r in map(json.loads, open(sys.argv[2])):
    if r["split"] == "test" and r["step"] > 60 and r["accuracy"] > prev:
        prev = r["accuracy"]
        want.append(r["step"])
print(f"   new bests at steps {[s for s, _ in said]}, want {want}")
sys.exit(0 if [s for s, _ in said] == want else 1)
PY
# the same with the weights all but frozen (lr 1e-12): steps 65 and 70 score
# what step 60 did, never above the carried best, so no new best at all (a
# run that forgot the best would call step 65's its first)
"$D" "$cfg" "${kb[@]}" train.max_steps=70 checkpoint.keep_best=accuracy optim.lr=1e-12 \
  optim.min_lr=0 log.dir="$TMP/kb3" checkpoint.resume="$TMP/kb/checkpoints/step_00000060" \
  >"$TMP/kb3.log" 2>&1
check "frozen after resuming: 2 evaluations, no new best" \
  test "$(grep -c '^eval  step' "$TMP/kb3.log")" -eq 2 -a "$(grep -c '^best:' "$TMP/kb3.log")" -eq 0
# train.early_stop: the step-60 checkpoint carries how many evaluations
# have passed since the best (at step 50: those of 55 and 60); frozen
# after resuming, with early_stop = 3 the run stops at the next evaluation
# that makes 3 (a run that forgot the count would go on two more)
since=$(python3 -c "import json, sys
rows = [r for r in map(json.loads, open(sys.argv[1])) if r['split'] == 'test' and r['step'] <= 60]
best = max(rows, key=lambda r: (r['accuracy'], -r['step']))['step']
print(sum(r['step'] > best for r in rows))" "$TMP/kb/metrics.jsonl")
stop=$((60 + 5 * (3 - since)))
"$D" "$cfg" "${kb[@]}" train.max_steps=80 checkpoint.keep_best=accuracy optim.lr=1e-12 \
  optim.min_lr=0 train.early_stop=3 log.dir="$TMP/kb4" \
  checkpoint.resume="$TMP/kb/checkpoints/step_00000060" >"$TMP/kb4.log" 2>&1
rc=$?
last=$(python3 -c "import json, sys
print(max(r['step'] for r in map(json.loads, open(sys.argv[1])) if r['split'] == 'train'))" \
  "$TMP/kb4/metrics.jsonl")
check "train.early_stop=3 after $since evaluations without a best: exit 0, stops at step $stop" \
  bash -c "[ $rc -eq 0 ] && [ '$last' = $stop ] &&
           grep -q '^stopping at step $stop: train.early_stop = 3 evaluations' '$TMP/kb4.log'"
check "... with the last step's checkpoint" grep -qx "step_$(printf %08d $stop)" \
  "$TMP/kb4/checkpoints/LATEST"
# (after the runs above, which need step 60: this one's saves prune it)
"$D" "$cfg" "${kb[@]}" optim.lr=0.01 train.max_steps=61 checkpoint.keep_best=accuracy \
  log.dir="$TMP/kb" checkpoint.resume=best >"$TMP/kb-best.log" 2>&1
check "checkpoint.resume=best exits 0" test $? -eq 0
check "... from the step BEST names" grep -q "resumed from .*/$want at step" "$TMP/kb-best.log"
"$D" "$cfg" "${kb[@]}" optim.lr=0.01 train.max_steps=60 checkpoint.keep_best=accuracy \
  checkpoint.async=true \
  log.dir="$TMP/kba" >"$TMP/kba.log" 2>&1
check "async saves: keep_best run exits 0" test $? -eq 0
check "async saves: BEST names the same step" grep -qx "$want" "$TMP/kba/checkpoints/BEST"
"$D" "$cfg" "${kb[@]}" optim.lr=0.01 train.max_steps=61 log.dir="$TMP/kba2" \
  checkpoint.resume="$TMP/kba/checkpoints/BEST" >"$TMP/kba2.log" 2>&1
check "checkpoint.resume=DIR/BEST resumes the step it names" \
  grep -q "resumed from .*/$want at step" "$TMP/kba2.log"
OMPI_MCA_mpi_yield_when_idle=1 "${mp[@]}" "$D" "$cfg" "${kb[@]}" optim.lr=0.01 \
  train.max_steps=60 checkpoint.keep_best=loss parallel.dp=2 log.dir="$TMP/kbl" >"$TMP/kbl.log" 2>&1
check "dp=2 keep_best=loss exits 0" test $? -eq 0
want=$(best_of "$TMP/kbl" loss)
check "dp=2: BEST names the evaluation with the lowest test loss ($want)" \
  grep -qx "$want" "$TMP/kbl/checkpoints/BEST"

# D: the same run twice gives the same losses (determinism)
"$D" "$cfg" "${common[@]}" log.dir="$TMP/d" train.max_steps=20 checkpoint.every=0 >/dev/null 2>&1
jsonl_field "$TMP/d/metrics.jsonl" train loss >"$TMP/d.loss"
"$D" "$cfg" "${common[@]}" log.dir="$TMP/e" train.max_steps=20 checkpoint.every=0 >/dev/null 2>&1
jsonl_field "$TMP/e/metrics.jsonl" train loss >"$TMP/e.loss"
check "same seed, same losses" diff "$TMP/d.loss" "$TMP/e.loss"
finish
