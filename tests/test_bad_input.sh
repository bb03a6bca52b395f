#!/usr/bin/env bash
# Bad input to dtrain: one clear message, exit code 2, nothing on disk damaged.
. "$(dirname "$0")/e2e_common.sh"
need_mnist
D="$BUILD/dtrain"
cfg="$SRC/configs/lenet5-mnist.ini"
small=(data.train_limit=500 data.test_limit=100 train.device=cpu
       train.batch_size=50 train.max_steps=4 log.every=1 log.tensorboard=false)

# expect_2 "what" PATTERN command...: exit code 2, exactly one "error:" line
# containing PATTERN, no core dump or assertion.
expect_2() {
  local what="$1" pat="$2"; shift 2
  "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
  local rc=$?
  if [ $rc -ne 2 ]; then bad "$what: exit $rc, want 2"; sed 's/^/    /' "$TMP/err" | tail -5; return; fi
  if [ "$(grep -c 'error:' "$TMP/err")" -ne 1 ]; then bad "$what: want one error line"; sed 's/^/    /' "$TMP/err"; return; fi
  if ! grep -q -- "$pat" "$TMP/err"; then bad "$what: message lacks '$pat'"; sed 's/^/    /' "$TMP/err"; return; fi
  ok "$what: $(grep 'error:' "$TMP/err")"
}

printf '[train]\nepochs = 3\nbatchsize = 10\n' >"$TMP/typo.ini"
expect_2 "unknown key" "typo.ini:3" "$D" "$TMP/typo.ini"
printf '[train]\nepochs = 3\nepochs = 4\n' >"$TMP/dup.ini"
expect_2 "duplicate key" "dup.ini:3" "$D" "$TMP/dup.ini"
printf '[train]\nepochs = ten\n' >"$TMP/nan.ini"
expect_2 "unparsable value" "epochs" "$D" "$TMP/nan.ini"
expect_2 "out of range override" "batch_size" "$D" "$cfg" train.batch_size=0
expect_2 "unknown override" "nosuch" "$D" "$cfg" train.nosuch=1
expect_2 "missing config" "nothere.ini" "$D" "$TMP/nothere.ini"
expect_2 "missing data dir" "train.h5" "$D" "$cfg" data.dir="$TMP/nodata" log.dir="$TMP/r0"
expect_2 "micro batch does not divide" "micro_batch_size" "$D" "$cfg" "${small[@]}" train.micro_batch_size=7 log.dir="$TMP/r1"
expect_2 "layout not built yet" "dp" "$D" "$cfg" "${small[@]}" data.dir="$TMP/mnist" parallel.dp=2 log.dir="$TMP/r2"

# corrupt data shard
mkdir -p "$TMP/broken"
head -c 100000 "$TMP/mnist/train.h5" >"$TMP/broken/train.h5"
cp "$TMP/mnist/test.h5" "$TMP/broken/test.h5"
expect_2 "truncated shard" "train.h5" "$D" "$cfg" "${small[@]}" data.dir="$TMP/broken" log.dir="$TMP/r3"
echo "not hdf5 at all" >"$TMP/broken/train.h5"
expect_2 "non-HDF5 shard" "train.h5" "$D" "$cfg" "${small[@]}" data.dir="$TMP/broken" log.dir="$TMP/r3"

# a good checkpoint, then bad resumes; the checkpoint must stay intact
"$D" "$cfg" "${small[@]}" data.dir="$TMP/mnist" log.dir="$TMP/good" checkpoint.every=2 >/dev/null 2>&1
check "good run for checkpoints" test -f "$TMP/good/checkpoints/LATEST"
ck="$TMP/good/checkpoints"
sum_before=$(cd "$ck" && find . -type f | sort | xargs sha256sum | sha256sum)
expect_2 "resume with another optimizer" "optim" "$D" "$cfg" "${small[@]}" optim.name=sgd \
  checkpoint.resume="$ck" data.dir="$TMP/mnist" log.dir="$TMP/r4"
expect_2 "resume from a missing path" "resume" "$D" "$cfg" "${small[@]}" \
  checkpoint.resume="$TMP/none" data.dir="$TMP/mnist" log.dir="$TMP/r5"
sum_after=$(cd "$ck" && find . -type f | sort | xargs sha256sum | sha256sum)
check "checkpoints untouched by failed resumes" test "$sum_before" = "$sum_after"
cp -r "$ck/step_00000004" "$TMP/trunc"
head -c 2000 "$ck/step_00000004/rank00000.h5" >"$TMP/trunc/rank00000.h5"
expect_2 "truncated checkpoint" "rank00000.h5" "$D" "$cfg" "${small[@]}" \
  checkpoint.resume="$TMP/trunc" data.dir="$TMP/mnist" log.dir="$TMP/r6"
# one bit flipped in the config text that meta.h5 keeps (seed 1234 -> 1235):
# HDF5 1.8's format checksums object headers, so the damage is an error
# rather than a resume under a config nobody wrote
cp -r "$ck/step_00000004" "$TMP/flip"
python3 - "$TMP/flip/meta.h5" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
i = b.find(b"\nseed = 1234")
assert i > 0, "seed line not found in meta.h5"
b[i + 11] ^= 1
open(p, "wb").write(b)
PY
expect_2 "a bit flipped in meta.h5's config text" "meta.h5.*damaged" "$D" "$cfg" "${small[@]}" \
  checkpoint.resume="$TMP/flip" data.dir="$TMP/mnist" log.dir="$TMP/r12"
# step 4 of 500 samples in batches of 50 left the loader at sample 200: a
# run over 150 samples cannot continue there; over 220 the next batch no
# longer fits, so the resumed run starts epoch 1, as the saving run would have
s150=("${small[@]/data.train_limit=500/data.train_limit=150}")
s220=("${small[@]/data.train_limit=500/data.train_limit=220}")
expect_2 "resume with the loader past the data" "loader position" "$D" "$cfg" "${s150[@]}" \
  checkpoint.resume="$ck" data.dir="$TMP/mnist" log.dir="$TMP/r9"
"$D" "$cfg" "${s220[@]/train.max_steps=4/train.max_steps=5}" checkpoint.resume="$ck" \
  data.dir="$TMP/mnist" log.dir="$TMP/r10" >"$TMP/r10.log" 2>&1
rc=$?
jsonl_field "$TMP/r10/metrics.jsonl" train epoch >"$TMP/r10.epoch"
check "resume where the next batch no longer fits: exit 0, step 5 in epoch 1" \
  bash -c "[ $rc -eq 0 ] && awk '\$1 == 5 && \$2 >= 1 && \$2 < 2 {f=1} END {exit !f}' \
           '$TMP/r10.epoch'"
expect_2 "resume=best without a BEST" "keep_best" "$D" "$cfg" "${small[@]}" \
  checkpoint.resume=best checkpoint.dir="$ck" data.dir="$TMP/mnist" log.dir="$TMP/r11"
expect_2 "keep_best = bleu on LeNet" "only the transformer computes BLEU" "$D" "$cfg" \
  "${small[@]}" checkpoint.keep_best=bleu data.dir="$TMP/mnist" log.dir="$TMP/r12"
expect_2 "keep_best = accuracy on GPT" "only classifiers" "$D" "$SRC/configs/gpt-tiny.ini" \
  checkpoint.keep_best=accuracy train.device=cpu log.dir="$TMP/r13"
echo garbage >"$ck/LATEST.bad"
mkdir -p "$TMP/lat" && echo "step_0000x" >"$TMP/lat/LATEST"
expect_2 "LATEST naming nothing" "LATEST" "$D" "$cfg" "${small[@]}" checkpoint.resume="$TMP/lat" data.dir="$TMP/mnist" log.dir="$TMP/r7"

# a full disk: checkpoints into a 600 KB tmpfs, which LeNet's ~0.75 MB rank
# file does not fit (root only: mounting needs it); exit 2, and no
# half-written step left behind
mkdir -p "$TMP/full"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=600k tmpfs "$TMP/full" 2>/dev/null; then
  expect_2 "a checkpoint the disk cannot take" "partial step was removed" "$D" "$cfg" \
    "${small[@]}" data.dir="$TMP/mnist" checkpoint.every=2 checkpoint.dir="$TMP/full/ck" \
    log.dir="$TMP/r13"
  check "the failed save left no step directory" \
    bash -c "[ -d '$TMP/full/ck' ] && [ -z \"\$(ls '$TMP/full/ck')\" ]"
  # written in the background (checkpoint.async): the same, found when the
  # save is committed
  rm -rf "$TMP/full/ck"
  expect_2 "an async checkpoint the disk cannot take" "partial step was removed" "$D" "$cfg" \
    "${small[@]}" data.dir="$TMP/mnist" checkpoint.every=2 checkpoint.async=true \
    checkpoint.dir="$TMP/full/ck" log.dir="$TMP/r14"
  check "the failed async save left no step directory" \
    bash -c "[ -d '$TMP/full/ck' ] && [ -z \"\$(ls '$TMP/full/ck')\" ]"
  umount "$TMP/full"
else
  echo "skip a checkpoint the disk cannot take: mounting a tmpfs needs root"
fi

# sizes that cannot be allocated: the keys that set them, exit 2 (an 8 GB
# address-space limit makes the failure certain whatever the machine has)
expect_2 "an evaluation batch too large for memory" "eval_batch_size" \
  bash -c 'ulimit -v 8000000 && exec "$@"' - "$D" "$cfg" "${small[@]}" data.dir="$TMP/mnist" \
  train.eval_batch_size=1000000000 log.dir="$TMP/r11"

# several ranks where the layout says one (parallel.dp = 0, the configs'
# default, would take them all)
if command -v mpirun >/dev/null; then
  expect_2 "2 ranks for a 1-rank layout" "dp\*tp\*pp = 1\*1\*1" mpirun --oversubscribe -np 2 "$D" \
    "$cfg" "${small[@]}" parallel.dp=1 data.dir="$TMP/mnist" log.dir="$TMP/r8"
fi
finish
