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
