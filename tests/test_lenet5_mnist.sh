#!/usr/bin/env bash
# The course lab's bar: configs/lenet5-mnist.ini reaches >= 99.0% test accuracy
# on the full MNIST test set, here on the CPU. Also checks the run's
# metrics.jsonl rows and that TensorBoard reads the same curves.
. "$(dirname "$0")/e2e_common.sh"
need_mnist
cfg="$SRC/configs/lenet5-mnist.ini"
"$BUILD/dtrain" "$cfg" data.dir="$TMP/mnist" train.device=cpu log.dir="$TMP/run" \
  checkpoint.every=0 "$@" | tee "$TMP/log" | grep -E "^(eval|done|device|model|data)"
check "training exits 0" test "${PIPESTATUS[0]}" -eq 0
python3 - "$TMP/run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in rows if r["split"] == "train"]
test = [r for r in rows if r["split"] == "test"]
need_train = {"step", "epoch", "loss", "lr", "samples_per_s", "time_s"}
need_test = {"step", "epoch", "loss", "accuracy", "class_accuracy"}
assert train and all(need_train <= r.keys() for r in train), "train rows lack keys"
assert len(test) == 10 and all(need_test <= r.keys() for r in test), "want 10 eval rows"
assert all(len(r["class_accuracy"]) == 10 for r in test)
acc = test[-1]["accuracy"]
print(f"final test accuracy {100*acc:.2f}% after {test[-1]['epoch']} epochs; "
      f"first-epoch {100*test[0]['accuracy']:.2f}%")
assert train[-1]["loss"] < train[0]["loss"], "loss did not fall"
sys.exit(0 if acc >= 0.99 else 1)
PY
check "test accuracy >= 99.0%" test $? -eq 0
check "TensorBoard event file written" test -n "$(ls "$TMP"/run/events.out.tfevents.* 2>/dev/null)"
if python3 -c "import tensorboard" 2>/dev/null; then
  python3 "$SRC/tests/tb_read.py" "$TMP/run" >"$TMP/tb.txt"
  check "TensorBoard reads the same scalars as metrics.jsonl" test $? -eq 0
fi
finish
