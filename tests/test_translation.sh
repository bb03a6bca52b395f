#!/usr/bin/env bash
# The Transformer end to end on the CPU: a tiny model on a slice of WMT19
# zh-en learns (validation loss falls, BLEU rows logged), resumes bit for bit,
# trains the same with dp=2 and 4 (ZeRO 0-3) as in one process, translates with
# greedy and beam search, and rejects bad settings with exit 2.
. "$(dirname "$0")/e2e_common.sh"
if [ ! -d "$DATA/wmt-zh-en" ]; then
  echo "no wmt-zh-en/ in $DATA; skipping"; exit 77
fi
"$BUILD/dtrain-prep" translation "$DATA/wmt-zh-en" "$TMP/wmt" --vocab 1000 --max-len 64 \
  --limit 2000 >"$TMP/prep.log" 2>&1 || { cat "$TMP/prep.log"; echo "prep failed"; exit 1; }
D="$BUILD/dtrain"
cfg="$SRC/configs/transformer-tiny.ini"
export OMPI_MCA_mpi_yield_when_idle=1
# configs/transformer-tiny.ini: vocab_size 1000, block_size 64
common=(data.dir="$TMP/wmt" train.batch_size=32
        train.batch_tokens=1024 train.batch_multiple=4 train.micro_batch_size=8
        log.every=1 log.tensorboard=false train.threads=1 log.bleu_sentences=40)

"$D" "$cfg" "${common[@]}" train.max_steps=60 log.bleu_every=30 log.dir="$TMP/learn" \
  checkpoint.keep_best=bleu >"$TMP/learn.log" 2>&1
rc=$?
check "tiny Transformer trains 60 steps" test $rc -eq 0
[ $rc -eq 0 ] || tail -5 "$TMP/learn.log"
python3 - "$TMP/learn/metrics.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in rows if r["split"] == "train"]
val = [r for r in rows if r["split"] == "val"]
assert all("tokens_per_s" in r for r in train), "train rows lack tokens_per_s"
bleu = [r for r in val if "bleu" in r]
first, last = train[0]["loss"], val[-1]["loss"]
print(f"   first train loss {first:.3f} (ln 1000 = {math.log(1000):.3f}), final val loss {last:.3f}, "
      f"BLEU rows at steps {[r['step'] for r in bleu]}: {[round(r['bleu'], 2) for r in bleu]}")
steps = {r["step"] for r in bleu}
ok = val and last < first - 1.0 and {30, 60} <= steps and all(0 <= r["bleu"] <= 100 for r in bleu)
sys.exit(0 if ok else 1)
PY
check "validation loss falls; BLEU logged at steps 30 and 60" test $? -eq 0
# checkpoint.keep_best=bleu: a checkpoint at the best BLEU (the first, on a tie)
want=$(python3 -c "import json, sys
rows = [r for r in map(json.loads, open(sys.argv[1])) if 'bleu' in r]
print('step_%08d' % max(rows, key=lambda r: (r['bleu'], -r['step']))['step'])" \
  "$TMP/learn/metrics.jsonl")
check "keep_best=bleu: BEST names the best BLEU's step ($want)" \
  grep -qx "$want" "$TMP/learn/checkpoints/BEST"
# dtrain --eval of BEST: its val loss and BLEU, as the run logged them
"$D" --eval "$cfg" "${common[@]}" train.max_steps=60 log.bleu_every=30 log.dir="$TMP/learn" \
  checkpoint.resume=best >"$TMP/learn-eval.log" 2>&1
check "dtrain --eval of the Transformer's BEST: the logged loss and BLEU" python3 - \
  "$TMP/learn/metrics.jsonl" "$TMP/learn/eval/metrics.jsonl" "$want" <<'PY'
import json, sys
step = int(sys.argv[3].split("_")[1])
run = [r for r in map(json.loads, open(sys.argv[1])) if r["split"] == "val" and r["step"] == step]
ev = [json.loads(l) for l in open(sys.argv[2])]
ok = len(run) == 1 and len(ev) == 1 and ev[0]["bleu"] == run[0]["bleu"] and \
     abs(ev[0]["loss"] - run[0]["loss"]) <= 1e-6 * run[0]["loss"]
print(f"   step {step}: BLEU {ev[0].get('bleu')} vs {run[0].get('bleu')}, loss {ev[0]['loss']} "
      f"vs {run[0]['loss']}")
sys.exit(0 if ok else 1)
PY

# resume: checkpoint at 10, resume, steps 11..20 identical to the straight run
"$D" "$cfg" "${common[@]}" train.max_steps=20 checkpoint.every=10 checkpoint.keep=0 \
  log.dir="$TMP/a" >"$TMP/a.log" 2>&1
"$D" "$cfg" "${common[@]}" train.max_steps=20 checkpoint.every=0 \
  checkpoint.resume="$TMP/a/checkpoints/step_00000010" log.dir="$TMP/b" >"$TMP/b.log" 2>&1
check "Transformer resume exits 0" test $? -eq 0
jsonl_field "$TMP/a/metrics.jsonl" train loss | awk '$1>10' >"$TMP/a.loss"
jsonl_field "$TMP/b/metrics.jsonl" train loss >"$TMP/b.loss"
check "Transformer resumed at step 10: steps 11..20 bit-identical" \
  bash -c "[ -s '$TMP/b.loss' ] && diff '$TMP/a.loss' '$TMP/b.loss'"

# data parallel: same losses as one process within 1e-5
# (batch_multiple 4: every batch splits evenly over 2 or 4 ranks)
for c in "2 0" "2 1" "2 2" "2 3" "4 0" "4 1" "4 2" "4 3"; do
  set -- $c
  dp=$1 zero=$2
  run="$TMP/dp$dp-z$zero"
  mpirun --oversubscribe --bind-to none -np $dp "$D" "$cfg" "${common[@]}" train.max_steps=20 \
    checkpoint.every=0 parallel.dp=$dp parallel.zero=$zero log.dir="$run" >"$run.log" 2>&1
  rc=$?
  check "Transformer dp=$dp zero=$zero exits 0" test $rc -eq 0
  [ $rc -eq 0 ] || tail -5 "$run.log"
  python3 - "$TMP/a/metrics.jsonl" "$run/metrics.jsonl" <<'PY'
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["split"] == "train"}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
print(f"   {len(a)} steps, worst relative difference {worst:.3g}")
sys.exit(0 if len(a) == 20 and a.keys() == b.keys() and worst < 1e-5 else 1)
PY
  check "Transformer dp=$dp zero=$zero matches one process" test $? -eq 0
done

# train.precision=bf16 (bf16 GEMM operands and activations, fp32 master
# weights): tracks the fp32 run within 3% at every step, computes BLEU during
# training (the decoder keeps fp32 activations) and its checkpoint translates
"$D" "$cfg" "${common[@]}" train.max_steps=20 train.precision=bf16 checkpoint.every=20 \
  log.bleu_every=20 log.dir="$TMP/bf16" >"$TMP/bf16.log" 2>&1
rc=$?
check "Transformer bf16 exits 0" test $rc -eq 0
[ $rc -eq 0 ] || tail -5 "$TMP/bf16.log"
python3 - "$TMP/a/metrics.jsonl" "$TMP/bf16/metrics.jsonl" <<'PY'
import json, sys
rows = [list(map(json.loads, open(p))) for p in sys.argv[1:]]
a, b = ({r["step"]: r["loss"] for r in x if r["split"] == "train"} for x in rows)
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
bleu = [r["bleu"] for r in rows[1] if r["split"] == "val" and "bleu" in r]
print(f"   {len(a)} steps, worst relative difference to fp32 {worst:.3g}, BLEU rows {bleu}")
sys.exit(0 if len(a) == 20 and a.keys() == b.keys() and 0 < worst < 0.03 and bleu else 1)
PY
check "Transformer bf16 tracks fp32 within 3% and logs BLEU" test $? -eq 0
head -n 4 "$DATA/wmt-zh-en/dev.zh" | "$BUILD/dtrain-translate" "$TMP/bf16/checkpoints" \
  decode.beam=2 >"$TMP/bf16.en" 2>"$TMP/bf16-tr.err"
rc=$?
check "dtrain-translate a bf16-trained checkpoint: 4 lines" \
  bash -c "[ $rc -eq 0 ] && [ \$(wc -l <'$TMP/bf16.en') -eq 4 ]"
[ $rc -eq 0 ] || tail -3 "$TMP/bf16-tr.err"

# dropout: the masks are a function of (train.seed, step, sentence's place in
# the global batch, position), so a resumed run and a dp=2 run drop the same
# elements as the straight single-process one (half common's batches, to keep
# it short: the config rejects a key given twice)
drop=(data.dir="$TMP/wmt" train.batch_size=16 train.batch_tokens=512 train.batch_multiple=4
      train.micro_batch_size=8 log.every=1 log.tensorboard=false train.threads=1
      log.bleu_sentences=4 model.dropout=0.1 train.max_steps=20)
"$D" "$cfg" "${drop[@]}" checkpoint.every=10 checkpoint.keep=0 log.dir="$TMP/da" \
  >"$TMP/da.log" 2>&1
"$D" "$cfg" "${drop[@]}" checkpoint.every=0 checkpoint.resume="$TMP/da/checkpoints/step_00000010" \
  log.dir="$TMP/db" >"$TMP/db.log" 2>&1
check "dropout 0.1: resume exits 0" test $? -eq 0
jsonl_field "$TMP/da/metrics.jsonl" train loss >"$TMP/da.all"
awk '$1>10' "$TMP/da.all" >"$TMP/da.loss"
jsonl_field "$TMP/db/metrics.jsonl" train loss >"$TMP/db.loss"
check "dropout 0.1: resumed at step 10, steps 11..20 bit-identical" \
  bash -c "[ -s '$TMP/db.loss' ] && diff '$TMP/da.loss' '$TMP/db.loss'"
mpirun --oversubscribe --bind-to none -np 2 "$D" "$cfg" "${drop[@]}" checkpoint.every=0 \
  parallel.dp=2 parallel.zero=1 log.dir="$TMP/ddp2" >"$TMP/ddp2.log" 2>&1
rc=$?
check "dropout 0.1: dp=2 zero=1 exits 0" test $rc -eq 0
[ $rc -eq 0 ] || tail -5 "$TMP/ddp2.log"
python3 - "$TMP/da/metrics.jsonl" "$TMP/ddp2/metrics.jsonl" <<'PY'
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["split"] == "train"}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
print(f"   {len(a)} steps, worst relative difference {worst:.3g}")
sys.exit(0 if len(a) == 20 and a.keys() == b.keys() and worst < 1e-5 else 1)
PY
check "dropout 0.1: dp=2 zero=1 matches one process" test $? -eq 0

# translation from the checkpoint: greedy and beam, one line out per line in
head -n 12 "$DATA/wmt-zh-en/dev.zh" >"$TMP/in.zh"
head -n 12 "$DATA/wmt-zh-en/dev.en" >"$TMP/ref.en"
for beam in 1 4; do
  "$BUILD/dtrain-translate" "$TMP/a/checkpoints" decode.beam=$beam --ref "$TMP/ref.en" \
    <"$TMP/in.zh" >"$TMP/out$beam.en" 2>"$TMP/tr$beam.err"
  rc=$?
  check "dtrain-translate beam $beam exits 0" test $rc -eq 0
  [ $rc -eq 0 ] || tail -5 "$TMP/tr$beam.err"
  check "dtrain-translate beam $beam: 12 lines out, BLEU printed" \
    bash -c "[ \$(wc -l <'$TMP/out$beam.en') -eq 12 ] && grep -q '^BLEU = ' '$TMP/tr$beam.err'"
done
sed 's/^/   /' "$TMP/out4.en" | head -2
# a byte-order mark before the first source line changes nothing
{ printf '\xEF\xBB\xBF'; cat "$TMP/in.zh"; } | "$BUILD/dtrain-translate" "$TMP/a/checkpoints" \
  decode.beam=1 >"$TMP/bom.en" 2>/dev/null
check "dtrain-translate: a UTF-8 BOM on the input gives the same translations" \
  cmp -s "$TMP/bom.en" "$TMP/out1.en"
# dtrain-bleu scores the file as dtrain-translate --ref scored it
"$BUILD/dtrain-bleu" "$TMP/ref.en" <"$TMP/out4.en" >"$TMP/bleu.txt" 2>&1
check "dtrain-bleu REF < HYP prints the BLEU line dtrain-translate --ref printed" \
  bash -c "[ $? -eq 0 ] && [ \"\$(grep '^BLEU = ' '$TMP/bleu.txt')\" = \
           \"\$(grep '^BLEU = ' '$TMP/tr4.err')\" ]"

# dtrain-sample is for language models: a Transformer checkpoint is refused
# before anything is printed
"$BUILD/dtrain-sample" "$TMP/a/checkpoints" "Hello" --tokens 3 >"$TMP/s.out" 2>"$TMP/s.err"
check "dtrain-sample on a Transformer checkpoint: exit 2, nothing printed" \
  bash -c "[ $? -eq 2 ] && grep -q 'not a language model' '$TMP/s.err' && [ ! -s '$TMP/s.out' ]"

# bad text to the tools: exit 2 naming the file and line, before any work
# (expect2 "what" PATTERN STDIN command...)
expect2() {
  local what=$1 pat=$2 in=$3; shift 3
  "$@" <"$in" >"$TMP/x.out" 2>"$TMP/x.err"
  local rc=$?
  if [ $rc -eq 2 ] && grep -q -- "$pat" "$TMP/x.err" && ! grep -q '^translated' "$TMP/x.err"
  then ok "$what: $(grep -m1 'error' "$TMP/x.err")"
  else bad "$what: exit $rc"; tail -3 "$TMP/x.err"; fi
}
{ head -n 2 "$TMP/in.zh"; printf 'caf\xe9 au lait\n'; } >"$TMP/latin1.zh"
printf 'a\n\xed\xa0\x80 surrogate\n' >"$TMP/surrogate.en"
head -n 2 "$TMP/ref.en" >"$TMP/ref2.en"
expect2 "dtrain-translate: Latin-1 on stdin line 3" \
  "^dtrain-translate: error: standard input:3: invalid UTF-8 at byte 4" \
  "$TMP/latin1.zh" "$BUILD/dtrain-translate" "$TMP/a/checkpoints"
expect2 "dtrain-translate: --ref with invalid UTF-8 (a surrogate) on line 2" \
  "surrogate.en:2: invalid UTF-8 at byte 1" "$TMP/in.zh" \
  "$BUILD/dtrain-translate" "$TMP/a/checkpoints" --ref "$TMP/surrogate.en"
expect2 "dtrain-translate: --ref of 2 lines for 12 sources" "2 lines, but standard input has 12" \
  "$TMP/in.zh" "$BUILD/dtrain-translate" "$TMP/a/checkpoints" --ref "$TMP/ref2.en"
expect2 "dtrain-translate: decode.batch=4294967297 (past 32 bits)" "batch" "$TMP/in.zh" \
  "$BUILD/dtrain-translate" "$TMP/a/checkpoints" decode.batch=4294967297
expect2 "dtrain-bleu: a directory as the reference" "directory" "$TMP/in.zh" \
  "$BUILD/dtrain-bleu" "$TMP"
expect2 "dtrain-bleu: invalid UTF-8 in the hypotheses" \
  "^dtrain-bleu: error: stdin: line 3: invalid UTF-8 at byte 4" \
  "$TMP/latin1.zh" "$BUILD/dtrain-bleu" "$TMP/ref.en"
expect2 "dtrain-bleu: invalid UTF-8 in a reference" "surrogate.en: line 2: invalid UTF-8" \
  "$TMP/ref2.en" "$BUILD/dtrain-bleu" "$TMP/surrogate.en"

# a training-time budget: stops early, still evaluates and checkpoints
"$D" "$cfg" "${common[@]}" train.max_steps=100000 train.max_time_s=2 checkpoint.every=1000 \
  log.dir="$TMP/budget" >"$TMP/budget.log" 2>&1
check "train.max_time_s=2 stops early with a validation row and a checkpoint" \
  bash -c "[ $? -eq 0 ] && grep -q 'stopping at step' '$TMP/budget.log' &&
           grep -q '\"split\": *\"val\"' '$TMP/budget/metrics.jsonl' &&
           [ -f '$TMP/budget/checkpoints/LATEST' ]"

# bad settings: exit 2 with the key or file named
"$D" "$cfg" "${common[@]}" model.vocab_size=700 train.max_steps=1 log.dir="$TMP/bad1" \
  >"$TMP/bad1.log" 2>&1
check "vocabulary mismatch -> exit 2 naming train.h5" \
  bash -c "[ $? -eq 2 ] && grep -q 'train.h5.*vocabulary' '$TMP/bad1.log'"
mpirun --oversubscribe --bind-to none -np 2 "$D" "$cfg" "${common[@]}" train.batch_multiple=3 \
  parallel.dp=2 train.max_steps=1 log.dir="$TMP/bad2" >"$TMP/bad2.log" 2>&1
check "batch_multiple not divisible by dp -> exit 2" \
  bash -c "[ $? -eq 2 ] && grep -q 'batch_multiple' '$TMP/bad2.log'"
"$D" "$cfg" "${common[@]}" train.batch_tokens=100 train.max_steps=1 log.dir="$TMP/bad3" \
  >"$TMP/bad3.log" 2>&1
check "batch_tokens too small for the longest pair -> exit 2" \
  bash -c "[ $? -eq 2 ] && grep -q 'batch_tokens' '$TMP/bad3.log'"
finish
