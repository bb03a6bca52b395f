# Sourced by the end-to-end tests: locate the build and the data, prepare
# MNIST once per test into a temporary directory, count checks.
set -u
BUILD="${DTRAIN_BUILD:?run through meson test}"
SRC="${DTRAIN_SRC:?run through meson test}"
DATA="${DTRAIN_DATA:-$SRC/data}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dtrain-e2e.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $*"; }
check() { # check "description" command...
  local d="$1"; shift
  if "$@"; then ok "$d"; else bad "$d"; fi
}
finish() {
  echo "$PASS passed, $FAIL failed"
  [ "$FAIL" -eq 0 ]
  exit $?
}
need_mnist() {
  if [ ! -d "$DATA/mnist" ]; then
    echo "MNIST not found in $DATA/mnist (set DTRAIN_DATA); skipping"
    exit 77
  fi
  "$BUILD/dtrain-prep" mnist "$DATA/mnist" "$TMP/mnist" >/dev/null || { echo "prep failed"; exit 1; }
}
# need_wos: the Web of Science abstracts as GPT-2 token shards in $TMP/wos
# (skips without wos/ or gpt2-tokenizer/ in $DATA)
need_wos() {
  if [ ! -d "$DATA/wos" ] || [ ! -d "$DATA/gpt2-tokenizer" ]; then
    echo "no wos/ or gpt2-tokenizer/ in $DATA; skipping"; exit 77
  fi
  "$BUILD/dtrain-prep" wos --tokenizer "$DATA/gpt2-tokenizer" "$DATA/wos" "$TMP/wos" >/dev/null 2>&1 ||
    { echo "prep failed"; exit 1; }
}
# jsonl_field FILE SPLIT FIELD: "step value" lines for rows of that split
jsonl_field() {
  python3 - "$@" <<'PY'
import json, sys
path, split, field = sys.argv[1:4]
for line in open(path):
    r = json.loads(line)
    if r.get("split") == split and field in r:
        v = r[field]
        print(r["step"], repr(v) if not isinstance(v, float) else format(v, ".9g"))
PY
}

# Layout tests (test_tp.sh, test_pp.sh) set D (dtrain), cfg and the array
# common, then:
# layout_run NAME NP OVERRIDES...: one training run on NP ranks into
# $TMP/NAME (log $TMP/NAME.log); with $MICRO or $STEPS set, in micro-batches
# of $MICRO sequences for $STEPS steps
layout_run() {
  local name=$1 np=$2
  shift 2
  [ -n "${STEPS:-}" ] && set -- train.max_steps="$STEPS" "$@"
  [ -n "${MICRO:-}" ] && set -- train.micro_batch_size="$MICRO" "$@"
  rm -rf "${TMP:?}/$name"
  if [ "$np" = 1 ]; then
    "$D" "$cfg" "${common[@]}" log.dir="$TMP/$name" "$@" >"$TMP/$name.log" 2>&1
  else
    OMPI_MCA_mpi_yield_when_idle=1 mpirun --oversubscribe --bind-to none -np "$np" "$D" "$cfg" \
      "${common[@]}" log.dir="$TMP/$name" "$@" >"$TMP/$name.log" 2>&1
  fi
  local rc=$?
  [ $rc -eq 0 ] || { echo "   $name: exit $rc"; tail -5 "$TMP/$name.log"; }
  return $rc
}
# losses_close A B [LIMIT] [FIRST]: the runs' train losses of steps FIRST..
# agree within LIMIT (1e-5) relative, and so do their validation losses
losses_close() {
  python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" "${3:-1e-5}" "${4:-1}" <<'PY'
import json, sys
def losses(p, split):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["split"] == split}
lim, first = float(sys.argv[3]), int(sys.argv[4])
a = {s: v for s, v in losses(sys.argv[1], "train").items() if s >= first}
b = losses(sys.argv[2], "train")
if not a or set(a) != set(b):
    print(f"   steps differ: {sorted(a)[:3]}... vs {sorted(b)[:3]}..."); sys.exit(1)
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
va, vb = losses(sys.argv[1], "val"), losses(sys.argv[2], "val")
vworst = max((abs(va[s] - vb[s]) / abs(va[s]) for s in vb), default=float("inf"))
print(f"   steps {min(a)}..{max(a)}: worst relative difference {worst:.2e}, val {vworst:.2e} "
      f"(limit {lim:g})")
sys.exit(0 if worst <= lim and vworst <= lim and set(vb) <= set(va) else 1)
PY
}
