#!/usr/bin/env bash
# test_tensorboard.sh: a demo run written by test_metrics, read back by
# TensorBoard's own reader (tests/tb_read.py); 77 when tensorboard is missing.
set -u
: "${DTRAIN_BUILD:?run through meson test}" "${DTRAIN_SRC:?run through meson test}"
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import tensorboard' 2>/dev/null; then
  echo "SKIP: python module tensorboard not installed (pip install -r requirements-test.txt)"
  exit 77
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/dtrain-tb-XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT

"$DTRAIN_BUILD/tests/test_metrics" --write-demo "$dir/run" || { echo "FAIL: --write-demo"; exit 1; }
"$PYTHON" "$DTRAIN_SRC/tests/tb_read.py" "$dir/run"
rc=$?
[ $rc = 77 ] && { echo "SKIP: tb_read.py could not import tensorboard"; exit 77; }
pass=0 fail=0
if [ $rc = 0 ]; then pass=$((pass + 1)); else echo "FAIL: TensorBoard disagrees with metrics.jsonl"; fail=$((fail + 1)); fi

# The check must be able to fail: one flipped bit in the middle of the event
# file breaks a record's CRC, TensorBoard drops it, and the values go missing.
mkdir "$dir/bad" && cp "$dir/run/"* "$dir/bad/"
ev=$(ls "$dir/bad/"*tfevents*)
size=$(stat -c %s "$ev")
"$PYTHON" - "$ev" $((size / 2)) <<'PY'
import sys
path, pos = sys.argv[1], int(sys.argv[2])
b = bytearray(open(path, "rb").read())
b[pos] ^= 0x01
open(path, "wb").write(b)
PY
"$PYTHON" "$DTRAIN_SRC/tests/tb_read.py" "$dir/bad" > "$dir/bad.log" 2>&1
bad_rc=$?
if [ $bad_rc = 1 ]; then pass=$((pass + 1)); else
  echo "FAIL: a corrupted event file gave tb_read.py exit $bad_rc, want 1"; fail=$((fail + 1)); fi

echo "$pass passed, $fail failed"
[ $fail = 0 ]
