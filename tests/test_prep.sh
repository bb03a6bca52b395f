#!/usr/bin/env bash
# test_prep.sh: dtrain-prep on the real MNIST (counts, first labels and class
# counts as in shared/data/SOURCES.md), then bad inputs: each must exit 2 with
# one line naming the file, and leave the earlier shards byte for byte.
set -u
prep="${DTRAIN_BUILD:?}/dtrain-prep"
src="${DTRAIN_DATA:-${DTRAIN_SRC:?}/data}/mnist"
names="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
for n in $names; do
  if [ ! -e "$src/$n" ] && [ ! -e "$src/$n.gz" ]; then
    echo "skip: no MNIST in $src (set DTRAIN_DATA to the directory holding mnist/)"
    exit 77
  fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dtrain-test-prep.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
out="$tmp/out"
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
expect() { # what got want
  if [ "$2" = "$3" ]; then ok "$1 = $3"; else bad "$1: got '$2', want '$3'"; fi
}
field() { sed -n "s/^$2: //p" "$1"; }

# ---- the real data ----
if "$prep" mnist "$src" "$out" >"$tmp/log" 2>&1; then ok "dtrain-prep mnist"; else bad "dtrain-prep mnist"; fi
sed 's/^/     /' "$tmp/log"
"$prep" inspect "$out/train.h5" >"$tmp/train.txt" 2>&1 || bad "inspect train.h5: $(cat "$tmp/train.txt")"
"$prep" inspect "$out/test.h5" >"$tmp/test.txt" 2>&1 || bad "inspect test.h5: $(cat "$tmp/test.txt")"
expect "train count" "$(field "$tmp/train.txt" count)" 60000
expect "train dims" "$(field "$tmp/train.txt" dims)" "60000 28 28"
expect "train num_classes" "$(field "$tmp/train.txt" num_classes)" 10
expect "train first labels" "$(field "$tmp/train.txt" first_labels)" "5 0 4 1 9 2 1 3 1 4"
expect "train class counts" "$(field "$tmp/train.txt" class_counts)" \
  "5923 6742 5958 6131 5842 5421 5918 6265 5851 5949"
expect "test count" "$(field "$tmp/test.txt" count)" 10000
expect "test dims" "$(field "$tmp/test.txt" dims)" "10000 28 28"
expect "test first labels" "$(field "$tmp/test.txt" first_labels)" "7 2 1 0 4 1 4 9 5 9"
expect "test class counts" "$(field "$tmp/test.txt" class_counts)" \
  "980 1135 1032 1010 982 892 958 1028 974 1009"
cp "$out/train.h5" "$tmp/train.good"
cp "$out/test.h5" "$tmp/test.good"

# ---- bad inputs ----
# A source dir holding links to the real files, with one replaced.
mkbad() { # dir
  mkdir -p "$1"
  for n in $names; do
    if [ -e "$src/$n.gz" ]; then ln -s "$src/$n.gz" "$1/$n.gz"; else ln -s "$src/$n" "$1/$n"; fi
  done
}
# dtrain-prep ARGS must exit 2 with one error line containing `want`, and
# leave OUT as it was.
expect_error() { # what want args...
  local what=$1 want=$2
  shift 2
  "$prep" "$@" >"$tmp/stdout" 2>"$tmp/stderr"
  local rc=$? msg
  msg=$(cat "$tmp/stderr")
  if [ $rc -ne 2 ]; then
    bad "$what: exit $rc, want 2 ($msg)"
  elif [ "$(wc -l <"$tmp/stderr")" -ne 1 ] || [ -s "$tmp/stdout" ]; then
    bad "$what: want exactly one line on stderr and nothing on stdout, got: $msg $(cat "$tmp/stdout")"
  elif [[ "$msg" != "dtrain-prep: error: "*"$want"* ]]; then
    bad "$what: message '$msg' lacks '$want'"
  else
    ok "$what -> $msg"
  fi
  if cmp -s "$out/train.h5" "$tmp/train.good" && cmp -s "$out/test.h5" "$tmp/test.good" &&
    ! ls "$out"/*.tmp >/dev/null 2>&1; then
    ok "$what: OUT untouched"
  else
    bad "$what: OUT/train.h5 or test.h5 changed, or a .tmp file was left"
  fi
}

expect_error "missing source dir" "$tmp/nowhere: no such directory" mnist "$tmp/nowhere" "$out"

mkdir -p "$tmp/empty"
expect_error "source dir without MNIST files" "$tmp/empty: no train-images-idx3-ubyte or" \
  mnist "$tmp/empty" "$out"

# Truncated copy of the train labels (the .gz cut short).
mkbad "$tmp/trunc"
rm "$tmp/trunc"/train-labels-idx1-ubyte*
gzip -dc "$src"/train-labels-idx1-ubyte* | head -c 30000 | gzip -1 >"$tmp/trunc/train-labels-idx1-ubyte.gz"
expect_error "truncated train labels" \
  "$tmp/trunc/train-labels-idx1-ubyte.gz: truncated: 60000 bytes of label data expected, 29992 found" \
  mnist "$tmp/trunc" "$out"
# The same file with its gzip stream cut rather than its data.
gzip -dc "$src"/train-labels-idx1-ubyte* | gzip -1 | head -c 10000 >"$tmp/trunc/train-labels-idx1-ubyte.gz"
expect_error "cut gzip stream" "$tmp/trunc/train-labels-idx1-ubyte.gz: truncated" \
  mnist "$tmp/trunc" "$out"

# Test labels with the images magic (raw, so NAME wins over NAME.gz).
mkbad "$tmp/magic"
{
  printf '\000\000\010\003'
  gzip -dc "$src"/t10k-labels-idx1-ubyte* | tail -c +5
} >"$tmp/magic/t10k-labels-idx1-ubyte"
expect_error "wrong magic in test labels" \
  "$tmp/magic/t10k-labels-idx1-ubyte: bad magic 0x00000803, expected 0x00000801 (IDX labels)" \
  mnist "$tmp/magic" "$out"

# ---- the command line ----
expect_error "unknown command" "unknown command 'frobnicate'" frobnicate
expect_error "mnist with one argument" "mnist takes two arguments" mnist "$src"
echo "not hdf5" >"$tmp/text.h5"
expect_error "inspect a text file" "$tmp/text.h5: not an HDF5 file" inspect "$tmp/text.h5"
if "$prep" --help | grep -q '^  mnist SRC OUT'; then ok "--help lists mnist"; else bad "--help lists mnist"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
