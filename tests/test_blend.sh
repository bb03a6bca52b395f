#!/usr/bin/env bash
# data.blend end to end (GPT-tiny on the CPU): a blend of one dataset is
# that dataset, bit for bit; a blend of Web of Science abstracts and Tiny
# Shakespeare trains, and its val rows give each dataset's loss, the
# overall loss their window-weighted mean; dp=2 matches one process; a
# blended run resumed from a checkpoint continues with the same losses; bad
# specs and a blend for another model exit 2. (The order itself, weights
# and passes: tests/test_blend.c.)
. "$(dirname "$0")/e2e_common.sh"
need_wos
[ -f "$DATA/tinyshakespeare/input.txt" ] || { echo "no tinyshakespeare/ in $DATA; skipping"; exit 77; }
"$BUILD/dtrain-prep" text --tokenizer "$DATA/gpt2-tokenizer" "$TMP/shk" \
  "$DATA/tinyshakespeare/input.txt" >/dev/null 2>&1 || { echo "prep failed"; exit 1; }
D="$BUILD/dtrain"
cfg="$SRC/configs/gpt-tiny.ini"
common=(train.seq_len=32 data.test_limit=16 log.tensorboard=false train.threads=1
        train.device=cpu train.batch_size=8 train.micro_batch_size=4 log.every=1
        train.eval_every=5)
STEPS=10
blend2="0.7 $TMP/wos 0.3 $TMP/shk"

check "data.dir = wos" layout_run one 1 data.dir="$TMP/wos"
check "data.blend = \"1 wos\"" layout_run b1 1 data.blend="1 $TMP/wos"
check "a blend of one dataset is that dataset: train and val losses identical" \
  losses_close "$TMP/one" "$TMP/b1" 0
check "a blend of wos 0.7 and shk 0.3" layout_run b2 1 data.blend="$blend2"
check "... says what each dataset gives an epoch" \
  grep -Eq "^data: a blend of 2 datasets.*: wos 0\.700 \([0-9]+ draws.*, shk 0\.300" "$TMP/b2.log"
check "... val rows: loss_wos, loss_shk, and the loss their window-weighted mean" python3 - \
  "$TMP/b2/metrics.jsonl" <<'PY'
import json, sys
rows = [r for r in map(json.loads, open(sys.argv[1])) if r["split"] == "val"]
# data.test_limit = 16 windows of each dataset
ok = len(rows) == 2 and all(abs(r["loss"] - (r["loss_wos"] + r["loss_shk"]) / 2) <= 1e-6 * r["loss"]
                             and r["loss_wos"] != r["loss_shk"] for r in rows)
print("   " + "; ".join(f"step {r['step']}: {r['loss']:.4f} = ({r['loss_wos']:.4f} + "
                       f"{r['loss_shk']:.4f}) / 2" for r in rows))
sys.exit(0 if ok else 1)
PY
check "... not the wos run's losses" bash -c "! losses_close '$TMP/one' '$TMP/b2' 1e-3 >/dev/null"
# two directories of one name: the later's loss gets its index
mkdir -p "$TMP/other" && ln -s "$TMP/shk" "$TMP/other/wos"
STEPS=2 check "a blend of two directories named wos" layout_run bdup 1 \
  data.blend="1 $TMP/wos 1 $TMP/other/wos"
check "... val rows name them loss_wos and loss_wos_1" \
  grep -q '"loss_wos":.*"loss_wos_1":' "$TMP/bdup/metrics.jsonl"
check "dp=2 blend" layout_run b2dp 2 data.blend="$blend2" parallel.dp=2
check "dp=2 blend matches one process" losses_close "$TMP/b2" "$TMP/b2dp"
STEPS=5 check "blend with a checkpoint at step 5" layout_run b2a 1 data.blend="$blend2" \
  checkpoint.every=5
check "resumed at step 5" layout_run b2b 1 data.blend="$blend2" \
  checkpoint.resume="$TMP/b2a/checkpoints/step_00000005"
check "... continues with the uninterrupted run's losses" losses_close "$TMP/b2" "$TMP/b2b" 1e-5 6

# dtrain --eval of that step-5 checkpoint on 2 ranks at ZeRO-3: the val row
# its run logged at step 5, every dataset's loss
OMPI_MCA_mpi_yield_when_idle=1 mpirun --oversubscribe --bind-to none -np 2 "$D" --eval "$cfg" \
  "${common[@]}" data.blend="$blend2" parallel.dp=2 parallel.zero=3 log.dir="$TMP/b2a" \
  >"$TMP/b2a-eval.log" 2>&1
check "dtrain --eval on dp=2 zero=3 exits 0" test $? -eq 0
check "... the val row of step 5 (loss, loss_wos, loss_shk within 1e-5)" python3 - \
  "$TMP/b2a/metrics.jsonl" "$TMP/b2a/eval/metrics.jsonl" <<'PY'
import json, sys
run = [r for r in map(json.loads, open(sys.argv[1])) if r["split"] == "val" and r["step"] == 5]
ev = [json.loads(l) for l in open(sys.argv[2])]
keys = ["loss", "loss_wos", "loss_shk"]
ok = len(run) == 1 and len(ev) == 1 and ev[0]["step"] == 5 and \
     all(abs(ev[0][k] - run[0][k]) <= 1e-5 * run[0][k] for k in keys)
print("   " + ", ".join(f"{k} {ev[0][k]:.6f} vs {run[0][k]:.6f}" for k in keys))
sys.exit(0 if ok else 1)
PY

# bad specs: one message naming [data] blend, exit 2
expect2() {
  local what=$1 pat=$2
  shift 2
  "$D" "$@" >"$TMP/bad.log" 2>&1
  local rc=$?
  [ $rc -eq 2 ] && [ "$(grep -c 'error:' "$TMP/bad.log")" -eq 1 ] && grep -q -- "$pat" "$TMP/bad.log" ||
    { echo "   exit $rc:"; tail -3 "$TMP/bad.log"; return 1; }
}
check "a weight without a directory: exit 2" expect2 x "weight 0.3 has no directory" "$cfg" \
  "${common[@]}" data.blend="0.7 $TMP/wos 0.3"
check "a negative weight: exit 2" expect2 x "'-1' is not a positive weight" "$cfg" \
  "${common[@]}" data.blend="-1 $TMP/wos"
check "a directory without shards: exit 2" expect2 x "\[data\] blend: $TMP/none: train.h5 not" \
  "$cfg" "${common[@]}" data.blend="1 $TMP/wos 1 $TMP/none"
check "a blend for LeNet-5: exit 2" expect2 x "only gpt trains on blended" \
  "$SRC/configs/lenet5-mnist.ini" train.device=cpu data.blend="1 $TMP/wos"
finish
