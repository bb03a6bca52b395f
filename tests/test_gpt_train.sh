#!/usr/bin/env bash
# GPT end to end on the CPU: a tiny GPT on the Web of Science token shards
# learns (validation loss falls), in bf16 too, resumes bit for bit (with
# dropout too), gives the same bits under activation recompute, the same
# losses with the output layer in chunks, and trains the same with
# data parallelism (dp=2 and 4 at ZeRO 0-3, and with dropout) as in one process.
. "$(dirname "$0")/e2e_common.sh"
need_wos
D="$BUILD/dtrain"
cfg="$SRC/configs/gpt-tiny.ini"
export OMPI_MCA_mpi_yield_when_idle=1
common=(data.dir="$TMP/wos" train.seq_len=32 train.batch_size=8 train.micro_batch_size=4
        data.test_limit=16 log.every=1 log.tensorboard=false train.threads=1)

"$D" "$cfg" "${common[@]}" train.max_steps=80 log.dir="$TMP/learn" >"$TMP/learn.log" 2>&1
check "tiny GPT trains 80 steps" test $? -eq 0
python3 - "$TMP/learn/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in rows if r["split"] == "train"]
val = [r for r in rows if r["split"] == "val"]
assert all("tokens_per_s" in r for r in train), "train rows lack tokens_per_s"
first, last = train[0]["loss"], val[-1]["loss"]
print(f"   first train loss {first:.3f} (ln 50257 = 10.825), final val loss {last:.3f}")
sys.exit(0 if val and last < first - 2.0 else 1)
PY
check "validation loss falls well below the initial loss" test $? -eq 0

# train.precision=bf16 (bf16 matmul operands, fp32 accumulation): learns as
# well, each step's loss within 3% of fp32's (1% measured), and not the same
# bits (the rounding is on)
"$D" "$cfg" "${common[@]}" train.max_steps=80 train.precision=bf16 log.dir="$TMP/bf16" \
  checkpoint.every=80 >"$TMP/bf16.log" 2>&1
check "tiny GPT trains 80 steps with train.precision=bf16" test $? -eq 0
# a checkpoint trained with bf16 activations samples (in fp32)
"$BUILD/dtrain-sample" "$TMP/bf16/checkpoints" "The results show" --tokens 8 --seed 3 \
  --tokenizer "$DATA/gpt2-tokenizer" >"$TMP/sample16.txt" 2>"$TMP/sample16.err"
check "dtrain-sample reads a bf16-trained checkpoint" \
  bash -c "head -c 200 '$TMP/sample16.txt' | grep -q '^The results show.'"
python3 - "$TMP/learn/metrics.jsonl" "$TMP/bf16/metrics.jsonl" <<'PY'
import json, sys
def rows(p, split):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["split"] == split}
a, b = rows(sys.argv[1], "train"), rows(sys.argv[2], "train")
va, vb = rows(sys.argv[1], "val"), rows(sys.argv[2], "val")
worst = max(abs(a[s] - b[s]) / a[s] for s in a)
print(f"   bf16 vs fp32: worst step loss difference {worst:.2%}, final val loss "
      f"{list(vb.values())[-1]:.4f} vs {list(va.values())[-1]:.4f}")
sys.exit(0 if set(a) == set(b) and 0 < worst <= 0.03 and list(vb.values())[-1] < b[1] - 2.0 else 1)
PY
check "bf16 learns and tracks fp32 within 3% at every step" test $? -eq 0

# resume: checkpoint at 10, resume, steps 11..20 identical to the straight run
"$D" "$cfg" "${common[@]}" train.max_steps=20 checkpoint.every=10 checkpoint.keep=0 \
  log.dir="$TMP/a" >"$TMP/a.log" 2>&1
"$D" "$cfg" "${common[@]}" train.max_steps=20 checkpoint.every=0 \
  checkpoint.resume="$TMP/a/checkpoints/step_00000010" log.dir="$TMP/b" >"$TMP/b.log" 2>&1
check "GPT resume exits 0" test $? -eq 0
jsonl_field "$TMP/a/metrics.jsonl" train loss | awk '$1>10' >"$TMP/a.loss"
jsonl_field "$TMP/b/metrics.jsonl" train loss >"$TMP/b.loss"
check "GPT resumed at step 10: steps 11..20 bit-identical" diff "$TMP/a.loss" "$TMP/b.loss"

# activation recompute changes no bit of the gradients, so neither the losses
jsonl_field "$TMP/a/metrics.jsonl" train loss >"$TMP/a-all.loss"
for rc in mlp block; do
  "$D" "$cfg" "${common[@]}" train.max_steps=20 checkpoint.every=0 train.recompute=$rc \
    log.dir="$TMP/rc-$rc" >"$TMP/rc-$rc.log" 2>&1
  check "GPT recompute=$rc exits 0" test $? -eq 0
  jsonl_field "$TMP/rc-$rc/metrics.jsonl" train loss >"$TMP/rc-$rc.loss"
  check "GPT recompute=$rc: 20 losses bit-identical to recompute=none" \
    diff "$TMP/a-all.loss" "$TMP/rc-$rc.loss"
done

# the output layer in chunks of 16 of the 128 rows: the same losses up to
# the order in which wte's gradient sums its rows
"$D" "$cfg" "${common[@]}" train.max_steps=20 checkpoint.every=0 train.classifier_chunk=16 \
  log.dir="$TMP/chunk" >"$TMP/chunk.log" 2>&1
check "GPT classifier_chunk=16 exits 0" test $? -eq 0
python3 - "$TMP/a/metrics.jsonl" "$TMP/chunk/metrics.jsonl" <<'PY'
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["split"] == "train"}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
print(f"   classifier_chunk=16: worst relative loss difference {worst:.2e} over {len(b)} steps")
sys.exit(0 if set(a) == set(b) and worst <= 1e-5 else 1)
PY
check "GPT classifier_chunk=16: 20 losses within 1e-5 of the whole batch at once" test $? -eq 0

# dropout: the masks are a function of (train.seed, step, sequence), so a
# resumed run drops what the straight one did (and dp=2 what one process
# did, below)
"$D" "$cfg" "${common[@]}" model.dropout=0.1 train.max_steps=20 checkpoint.every=10 \
  checkpoint.keep=0 log.dir="$TMP/da" >"$TMP/da.log" 2>&1
check "GPT dropout=0.1 trains 20 steps" test $? -eq 0
"$D" "$cfg" "${common[@]}" model.dropout=0.1 train.max_steps=20 checkpoint.every=0 \
  checkpoint.resume="$TMP/da/checkpoints/step_00000010" log.dir="$TMP/db" >"$TMP/db.log" 2>&1
check "GPT dropout resume exits 0" test $? -eq 0
jsonl_field "$TMP/da/metrics.jsonl" train loss | awk '$1>10' >"$TMP/da.loss"
jsonl_field "$TMP/db/metrics.jsonl" train loss >"$TMP/db.loss"
check "GPT dropout resumed at step 10: steps 11..20 bit-identical" \
  diff "$TMP/da.loss" "$TMP/db.loss"
check "GPT dropout=0.1 losses differ from dropout=0" \
  bash -c "! diff -q '$TMP/a.loss' '$TMP/da.loss' >/dev/null"

# sampling from the checkpoint
"$BUILD/dtrain-sample" "$TMP/a/checkpoints" "The results show" --tokens 20 --seed 3 \
  --tokenizer "$DATA/gpt2-tokenizer" >"$TMP/sample.txt" 2>"$TMP/sample.err"
check "dtrain-sample exits 0" test $? -eq 0
check "dtrain-sample continues the prompt" bash -c "head -c 200 '$TMP/sample.txt' | grep -q '^The results show.'"
# nucleus sampling from the step a LATEST file names: the same text for a seed
for i in 1 2; do
  "$BUILD/dtrain-sample" "$TMP/a/checkpoints/LATEST" "The results show" --tokens 12 --seed 4 \
    --top-p 0.9 --tokenizer "$DATA/gpt2-tokenizer" >"$TMP/sample-p$i.txt" 2>/dev/null
done
check "dtrain-sample --top-p 0.9 from a LATEST file: the prompt continued, the same for a seed" \
  bash -c "grep -q '^The results show.' '$TMP/sample-p1.txt' &&
           cmp -s '$TMP/sample-p1.txt' '$TMP/sample-p2.txt'"
"$BUILD/dtrain-sample" "$TMP/a/checkpoints" "x" --temperature 0 >/dev/null 2>"$TMP/sample.err"
check "dtrain-sample rejects temperature 0 with exit 2" test $? -eq 2
# bad arguments and a tokenizer that is not the model's: exit 2, nothing sampled
sample_2() { # sample_2 "what" PATTERN args...
  local what=$1 pat=$2; shift 2
  "$BUILD/dtrain-sample" "$TMP/a/checkpoints" "$@" >"$TMP/s2.out" 2>"$TMP/s2.err"
  check "dtrain-sample: $what -> exit 2" \
    bash -c "[ $? -eq 2 ] && grep -q -- '$pat' '$TMP/s2.err' && [ ! -s '$TMP/s2.out' ]"
}
sample_2 "--tokens 1.5" "not a whole number" "x" --tokens 1.5
sample_2 "--top-p 0" "top-p: .0. is not a number in" "x" --top-p 0
sample_2 "--top-p 1.5" "top-p: .1.5. is not a number in" "x" --top-p 1.5
sample_2 "--tokens ''" "not a number" "x" --tokens ""
sample_2 "a prompt that is not UTF-8" "^dtrain-sample: error: the prompt is not UTF-8" \
  "$(printf 'caf\xe9')" --tokens 2
mkdir -p "$TMP/tok50258"
cp "$DATA/gpt2-tokenizer/vocab.bpe" "$TMP/tok50258/"
python3 -c "import sys; t = open(sys.argv[1]).read().rstrip(); \
open(sys.argv[2], 'w').write(t[:-1] + ', \"zzextra\": 50257}')" \
  "$DATA/gpt2-tokenizer/encoder.json" "$TMP/tok50258/encoder.json"
sample_2 "a tokenizer of 50258 ids for a model of 50257" "50258 ids but the model 50257" \
  "x" --tokenizer "$TMP/tok50258"
"$BUILD/dtrain-sample" "$TMP/a/checkpoints" "" --tokens 5 --tokenizer "$DATA/gpt2-tokenizer" \
  >"$TMP/s3.out" 2>"$TMP/s3.err"
check "dtrain-sample with an empty prompt starts from <|endoftext|>: exit 0, text out" \
  bash -c "[ $? -eq 0 ] && [ -s '$TMP/s3.out' ]"
sed 's/^/   /' "$TMP/sample.txt" | head -3

# the bf16 reference for the dp=2 bf16 run below (rounding is elementwise,
# so splitting the batch changes only the order of the fp32 sums)
"$D" "$cfg" "${common[@]}" train.max_steps=20 checkpoint.every=0 train.precision=bf16 \
  log.dir="$TMP/bf" >"$TMP/bf.log" 2>&1
check "GPT bf16 20 steps exits 0" test $? -eq 0
# bf16 logits' rows lie 50304 elements apart by default (model.pad_vocab_to
# = 64); the padding only moves rows, so packed rows give the same losses
"$D" "$cfg" "${common[@]}" train.max_steps=20 checkpoint.every=0 train.precision=bf16 \
  model.pad_vocab_to=1 log.dir="$TMP/bf-packed" >"$TMP/bf-packed.log" 2>&1
jsonl_field "$TMP/bf/metrics.jsonl" train loss >"$TMP/bf.loss"
jsonl_field "$TMP/bf-packed/metrics.jsonl" train loss >"$TMP/bf-packed.loss"
check "bf16 with packed logits rows (pad_vocab_to=1): the padded run's losses bit for bit" \
  bash -c "[ \$(wc -l <'$TMP/bf.loss') -eq 20 ] && diff '$TMP/bf.loss' '$TMP/bf-packed.loss'"

# data parallel: same losses as one process within 1e-5, dp 2 and 4 at every
# ZeRO stage (the run to match, dp, ZeRO stage, extra overrides); at dp=4 each
# rank holds 2 of the 8 sequences, so its micro-batch is 2. In bf16 within
# 1e-4: a gradient whose fp32 sums differ in the last bit can round to the
# other bf16 neighbour (3e-6 measured here; other BLAS kernels sum otherwise)
common4=("${common[@]/train.micro_batch_size=4/train.micro_batch_size=2}")
for c in "a 2 0" "a 2 1" "a 2 2" "a 2 3" "a 4 0" "a 4 1" "a 4 2" "a 4 3" \
         "da 2 1 model.dropout=0.1" "bf 2 1 train.precision=bf16"; do
  set -- $c
  ref=$1 dp=$2 zero=$3
  shift 3
  run="$TMP/dp$dp-$ref-z$zero"
  if [ "$dp" = 4 ]; then args=("${common4[@]}"); else args=("${common[@]}"); fi
  mpirun --oversubscribe --bind-to none -np "$dp" "$D" "$cfg" "${args[@]}" "$@" \
    train.max_steps=20 checkpoint.every=0 parallel.dp=$dp parallel.zero=$zero log.dir="$run" \
    >"$run.log" 2>&1
  check "GPT dp=$dp zero=$zero${*:+ $*} exits 0" test $? -eq 0
  tol=1e-5; [ "$ref" = bf ] && tol=1e-4
  python3 - "$TMP/$ref/metrics.jsonl" "$run/metrics.jsonl" "$tol" <<'PY'
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["split"] == "train"}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
steps = sorted(b)
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in steps)
print(f"   {len(steps)} steps, worst relative difference {worst:.2e}")
sys.exit(0 if steps == list(range(1, 21)) and worst <= float(sys.argv[3]) else 1)
PY
  check "GPT dp=$dp zero=$zero${*:+ $*} matches one process" test $? -eq 0
done

# train.eval_every: validation rows at steps 3, 6, 9 and the last, 10
# (one epoch is 1039 steps here), and the same training losses bit for bit
# as without (evaluation draws nothing and moves no data); with dp=2 too
for ev in 0 3; do
  "$D" "$cfg" "${common[@]}" train.max_steps=10 train.eval_every=$ev log.dir="$TMP/ev$ev" \
    >"$TMP/ev$ev.log" 2>&1 || echo "   eval_every=$ev: exit $?"
done
OMPI_MCA_mpi_yield_when_idle=1 mpirun --oversubscribe --bind-to none -np 2 "$D" "$cfg" \
  "${common[@]}" train.max_steps=10 train.eval_every=3 parallel.dp=2 log.dir="$TMP/ev3d2" \
  >"$TMP/ev3d2.log" 2>&1 || echo "   dp=2 eval_every=3: exit $?"
val_steps() { jsonl_field "$1/metrics.jsonl" val loss | cut -d' ' -f1 | tr '\n' ' '; }
check "eval_every=3: validation at steps 3, 6, 9, 10 (one process and dp=2)" test \
  "$(val_steps "$TMP/ev3")|$(val_steps "$TMP/ev3d2")|$(val_steps "$TMP/ev0")" = "3 6 9 10 |3 6 9 10 |10 "
check "eval_every=3: the training losses of eval_every=0 bit for bit" \
  diff <(jsonl_field "$TMP/ev0/metrics.jsonl" train loss) <(jsonl_field "$TMP/ev3/metrics.jsonl" train loss)

# model TFLOP/s per rank, (6N + 12 L T d) x tokens/s / ranks, in every
# training row of one process and of dp=4; MFU only with a peak to divide
# by (log.peak_tflops; on GPUs also a known one): none on the CPU by default
"$D" "$cfg" "${common[@]}" train.max_steps=3 log.peak_tflops=0.05 log.dir="$TMP/mfu" \
  >"$TMP/mfu.log" 2>&1
check "log.peak_tflops=0.05 exits 0" test $? -eq 0
flops() {
  python3 - "$@" <<'PY'
import json, re, sys
ok = True
for run, ranks, peak in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    N = int(re.search(r"model: gpt, (\d+) parameters", open(run + ".log").read()).group(1))
    L, T, d = 2, 32, 64  # gpt-tiny, train.seq_len=32
    rows = [r for r in map(json.loads, open(run + "/metrics.jsonl")) if r["split"] == "train"]
    for r in rows:
        want = (6 * N + 12 * L * T * d) * r["tokens_per_s"] / int(ranks) / 1e12
        good = abs(r["tflops_per_rank"] - want) <= 1e-6 * want
        good &= ("mfu" in r) == (float(peak) > 0)
        good &= float(peak) == 0 or abs(r["mfu"] - r["tflops_per_rank"] / float(peak)) <= 1e-6 * r["mfu"]
        if not good:
            print(f"   step {r['step']}: {r}, want tflops_per_rank {want}")
        ok &= good
    print(f"   {run.split('/')[-1]}: {len(rows)} rows, N {N}, last {rows[-1]['tflops_per_rank']:.4f}"
          f" TFLOP/s a rank{', MFU %.3f' % rows[-1]['mfu'] if 'mfu' in rows[-1] else ''}")
    ok &= len(rows) > 0
sys.exit(0 if ok else 1)
PY
}
check "tflops_per_rank and mfu in the training rows (1 process, dp=4, a given peak)" \
  flops "$TMP/learn" 1 0 "$TMP/dp4-a-z0" 4 0 "$TMP/mfu" 1 0.05
check "the console line shows TFLOP/s and MFU" grep -q "TFLOP/s a rank, MFU" "$TMP/mfu.log"

# bad inputs: exit 2 with one message naming the file or key
"$D" "$cfg" "${common[@]}" model.vocab_size=1000 train.max_steps=1 log.dir="$TMP/bad-vocab" \
  >"$TMP/bad-vocab.log" 2>&1
check "shard ids beyond model.vocab_size -> exit 2 naming train.h5" \
  bash -c "[ $? -eq 2 ] && grep -q 'train.h5.*not below vocab_size 1000' '$TMP/bad-vocab.log'"
# the prepared shards are mapped, not read; a mapped shard's ids are
# checked as windows are read: one over the vocabulary in every window is
# found by the first step, named with its position
check "the token shards are memory-mapped" grep -q "memory-mapped" "$TMP/learn.log"
mkdir -p "$TMP/badids"
cp "$TMP/wos/val.h5" "$TMP/badids/"
ids=()
for i in $(seq 0 599); do ids+=($([ $((i % 32)) = 5 ] && echo 50300 || echo 15496)); done
"$BUILD/tests/test_bpe" --make-shard "$TMP/badids/train.h5" "${ids[@]}"
"$D" "$cfg" "${common[@]/#data.dir=*/data.dir=$TMP/badids}" train.max_steps=1 \
  log.dir="$TMP/bad-ids" >"$TMP/bad-ids.log" 2>&1
rc=$?
pos=$(sed -n 's|.*train.h5: /tokens\[\([0-9]*\)\] = 50300 is not below vocab_size 50257.*|\1|p' \
  "$TMP/bad-ids.log")
check "a mapped shard's id over the vocabulary -> exit 2 naming train.h5 and the position" \
  test "$rc" -eq 2 -a -n "$pos" -a "$(( ${pos:-0} % 32 ))" = 5
"$D" "$cfg" "${common[@]}" model.block_size=16 train.max_steps=1 log.dir="$TMP/bad-T" \
  >"$TMP/bad-T.log" 2>&1
check "train.seq_len longer than model.block_size -> exit 2 naming both keys" \
  bash -c "[ $? -eq 2 ] && grep -q 'seq_len = 32 is longer than \[model\] block_size = 16' '$TMP/bad-T.log'"
# log.profile: the same losses bit for bit; a table of every kernel slot
# for steps 2..4, linear_forward called micro-batches x 3 per layer = 2 x 6
# times a step and lm_head_forward once per micro-batch (one classifier
# chunk), written to profile.txt as well
for p in false true; do
  "$D" "$cfg" "${common[@]}" train.max_steps=4 checkpoint.every=0 log.profile=$p \
    log.dir="$TMP/prof-$p" >"$TMP/prof-$p.log" 2>&1
  check "log.profile=$p exits 0" test $? -eq 0
done
jsonl_field "$TMP/prof-false/metrics.jsonl" train loss >"$TMP/prof-a.loss"
jsonl_field "$TMP/prof-true/metrics.jsonl" train loss >"$TMP/prof-b.loss"
check "log.profile=true: losses bit-identical to the plain run" \
  bash -c "[ -s '$TMP/prof-a.loss' ] && diff '$TMP/prof-a.loss' '$TMP/prof-b.loss'"
check "log.profile: 3 steps profiled, linear_forward 12 and lm_head_forward 2 calls/step" \
  bash -c "grep -q '^profile: 3 steps' '$TMP/prof-true/profile.txt' &&
           grep -Eq '^ +linear_forward +12\.0 ' '$TMP/prof-true/profile.txt' &&
           grep -Eq '^ +lm_head_forward +2\.0 ' '$TMP/prof-true/profile.txt' &&
           grep -q '^profile: 3 steps' '$TMP/prof-true.log' &&
           ! grep -q '^profile:' '$TMP/prof-false.log'"
sed -n '/^profile:/,/outside the slots/p' "$TMP/prof-true.log" | head -6 | sed 's/^/   /'
# the optimizer runs adjacent tensors of the same weight decay as one call:
# without weight decay, one AdamW launch a step for all 28 tensors
"$D" "$cfg" "${common[@]}" train.max_steps=2 checkpoint.every=0 log.profile=true \
  optim.weight_decay=0 log.dir="$TMP/prof-wd0" >"$TMP/prof-wd0.log" 2>&1
check "optim.weight_decay=0: one adam_step call a step (28 tensors)" \
  bash -c "grep -Eq '^ +adam_step +1\.0 ' '$TMP/prof-wd0/profile.txt' &&
           grep -Eq '^ +adam_step +[0-9]+\.0 ' '$TMP/prof-true/profile.txt' &&
           ! grep -Eq '^ +adam_step +(28|1)\.0 ' '$TMP/prof-true/profile.txt'"
check "console step lines end with the time left (eta), 0 s at the last step" \
  bash -c "[ \$(grep -c '^step ' '$TMP/prof-false.log') -eq 4 ] &&
           ! grep '^step ' '$TMP/prof-false.log' | grep -Evq '\| eta ([0-9]+ s|[0-9]+m[0-9]{2}s|[0-9]+h[0-9]{2}m)\$' &&
           grep -q '^step  *4/4 .*| eta 0 s\$' '$TMP/prof-false.log'"

"$D" "$cfg" "${common[@]}" model.n_head=5 train.max_steps=1 log.dir="$TMP/bad-h" \
  >"$TMP/bad-h.log" 2>&1
check "n_head not dividing n_embd -> exit 2" \
  bash -c "[ $? -eq 2 ] && grep -q 'n_head = 5 does not divide' '$TMP/bad-h.log'"
finish
