#!/usr/bin/env bash
# test_prep_translation.sh: dtrain-prep translation on WMT zh-en (the first
# 3000 lines, a 2000-id BPE): attributes, every pair of every shard decoded
# back to its source lines, every line of all six files round-tripping
# through the trained tokenizer, the same bytes twice, --max-len drops; then
# bad inputs (misaligned files, invalid UTF-8, a missing file, bad options)
# must exit 2 with one line naming file:line and leave OUT as it was, and
# empty lines are dropped, counted and warned about once.
set -u
prep="${DTRAIN_BUILD:?}/dtrain-prep"
tool="$DTRAIN_BUILD/tests/test_bpetrain"
data="${DTRAIN_DATA:-${DTRAIN_SRC:?}/data}"
wmt="$data/wmt-zh-en"
for f in train.zh train.en dev.zh dev.en test.zh test.en; do
  if [ ! -e "$wmt/$f" ]; then
    echo "skip: no $f in $wmt (set DTRAIN_DATA to the directory holding wmt-zh-en/)"
    exit 77
  fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dtrain-test-translation.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
expect() { # what got want
  if [ "$2" = "$3" ]; then ok "$1 = $3"; else bad "$1: got '$2', want '$3'"; fi
}
field() { sed -n "s/^$2: //p" "$1"; }
inspect() { # file -> $tmp/inspect.txt
  "$prep" inspect "$1" >"$tmp/inspect.txt" 2>&1 || bad "inspect $1: $(cat "$tmp/inspect.txt")"
}
tree_sum() { (cd "$1" && find . -type f | sort | xargs -r sha256sum | sha256sum); }
files=(train.h5 valid.h5 test.h5 tokenizer/encoder.json tokenizer/vocab.bpe)
splits=("train train" "valid dev" "test test")

# ---- a small run ----
a="$tmp/a"
if "$prep" translation "$wmt" "$a" --vocab 2000 --limit 3000 >"$tmp/log" 2>&1; then
  ok "dtrain-prep translation --vocab 2000 --limit 3000"
else
  bad "dtrain-prep translation: $(cat "$tmp/log")"
fi
sed 's/^/     /' "$tmp/log"
for f in "${files[@]}"; do [ -s "$a/$f" ] || bad "missing $a/$f"; done
leftover=$(find "$a" -name '*.tmp' | wc -l)
expect "*.tmp left in OUT" "$leftover" 0
grep -q 'MB/s' "$tmp/log" && ok "progress shows MB/s" || bad "no MB/s in the progress lines"
grep -q "wrote $a/train.h5: 3000 pairs kept of 3000" "$tmp/log" && ok "summary names the pairs kept" \
  || bad "summary line for train.h5 missing"

inspect "$a/train.h5"
expect "format" "$(field "$tmp/inspect.txt" format)" dtrain-pairs-v1
expect "split" "$(field "$tmp/inspect.txt" split)" train
expect "vocab_size" "$(field "$tmp/inspect.txt" vocab_size)" 2000
expect "pad_id" "$(field "$tmp/inspect.txt" pad_id)" 0
expect "bos_id" "$(field "$tmp/inspect.txt" bos_id)" 1
expect "eos_id" "$(field "$tmp/inspect.txt" eos_id)" 2
expect "lines" "$(field "$tmp/inspect.txt" lines)" 3000
expect "max_len" "$(field "$tmp/inspect.txt" max_len)" 256
expect "src_lang" "$(field "$tmp/inspect.txt" src_lang)" zh
expect "tgt_lang" "$(field "$tmp/inspect.txt" tgt_lang)" en
expect "src_file" "$(field "$tmp/inspect.txt" src_file)" train.zh
expect "tgt_file" "$(field "$tmp/inspect.txt" tgt_file)" train.en
expect "src_sha256" "$(field "$tmp/inspect.txt" src_sha256)" "$(sha256sum <"$wmt/train.zh" | cut -d' ' -f1)"
want=$(head -n 1 "$wmt/train.en")
got=$(sed -n 's/^  tgt ([0-9]* tokens): //p' "$tmp/inspect.txt" | head -n 1)
expect "inspect decodes the first target" "$got" "$want"
inspect "$a/valid.h5"
expect "valid.h5 split" "$(field "$tmp/inspect.txt" split)" valid
expect "valid.h5 src_file" "$(field "$tmp/inspect.txt" src_file)" dev.zh

# Layout, ids, offsets and every pair against its source lines.
for s in "${splits[@]}"; do
  set -- $s
  if "$tool" shard "$a/$1.h5" "$a/tokenizer" "$wmt/$2.zh" "$wmt/$2.en" >"$tmp/shard.txt" 2>&1; then
    ok "$1.h5: $(grep '^ok' "$tmp/shard.txt" | sed 's/^ok *//')"
  else
    bad "$1.h5 shard check:"
    sed 's/^/     /' "$tmp/shard.txt"
  fi
done

# Every line of all six files, full length, through the 2000-id tokenizer.
if "$tool" roundtrip "$a/tokenizer" "$wmt"/{train,dev,test}.{zh,en} >"$tmp/rt.txt" 2>&1; then
  ok "decode(encode(line)) == line on every line of train/dev/test zh and en"
else
  bad "round trip:"
fi
sed 's/^/     /' "$tmp/rt.txt"

# ---- the same output twice ----
b="$tmp/b"
"$prep" translation "$wmt" "$b" --vocab 2000 --limit 3000 >/dev/null 2>&1 || bad "second run failed"
for f in "${files[@]}"; do
  if cmp -s "$a/$f" "$b/$f"; then ok "same $f twice"; else bad "$f differs between two runs"; fi
done

# ---- --max-len drops long pairs (and the shard check sees each kept pair fits) ----
c="$tmp/c"
if "$prep" translation "$wmt" "$c" --vocab 1000 --limit 500 --max-len 24 >"$tmp/log" 2>&1; then
  inspect "$c/train.h5"
  dropped=$(field "$tmp/inspect.txt" dropped_too_long)
  pairs=$(field "$tmp/inspect.txt" pairs)
  if [ "${dropped:-0}" -gt 0 ] && [ $((dropped + pairs)) -eq 500 ]; then
    ok "--max-len 24: $dropped dropped too long, $pairs kept"
  else
    bad "--max-len 24: dropped '$dropped', pairs '$pairs'"
  fi
  "$tool" shard "$c/train.h5" "$c/tokenizer" "$wmt/train.zh" "$wmt/train.en" >"$tmp/shard.txt" 2>&1 \
    && ok "--max-len 24: every kept side has at most 22 tokens" || { bad "--max-len shard check"; cat "$tmp/shard.txt"; }
else
  bad "--max-len run: $(cat "$tmp/log")"
fi

# ---- bad inputs ----
src="$tmp/src"
mkdir -p "$src"
for f in train.zh train.en dev.zh dev.en test.zh test.en; do head -n 200 "$wmt/$f" >"$src/$f"; done
out="$tmp/out"
"$prep" translation "$src" "$out" --vocab 600 >/dev/null 2>&1 || bad "good run on the 200-line copies"
before=$(tree_sum "$out")

# fails CASE WANT_IN_MESSAGE [ARGS]: exit 2, one error line naming it, OUT untouched,
# and no OUT created where there was none
fails() {
  local what="$1" want="$2"
  shift 2
  "$prep" translation "$src" "$out" --vocab 600 "$@" >"$tmp/err" 2>&1
  local rc=$?
  local lines
  lines=$(grep -c 'error' "$tmp/err") # progress lines may come first
  if [ "$rc" = 2 ] && [ "$lines" = 1 ] && grep -q "^dtrain-prep: error: .*$want" "$tmp/err"; then
    ok "$what: exit 2, '$(cat "$tmp/err")'"
  else
    bad "$what: exit $rc, $lines lines, want one error naming '$want':"
    sed 's/^/     /' "$tmp/err"
  fi
  expect "$what: OUT unchanged" "$(tree_sum "$out")" "$before"
  "$prep" translation "$src" "$tmp/fresh" --vocab 600 "$@" >/dev/null 2>&1
  if [ -e "$tmp/fresh" ]; then bad "$what: created a new OUT"; rm -rf "$tmp/fresh"; else ok "$what: no OUT created"; fi
}

cp "$src/train.en" "$tmp/keep"
head -n 199 "$tmp/keep" >"$src/train.en"
fails "misaligned (train.en one line short)" "train.zh:200: no line 200 in .*train.en"
cp "$tmp/keep" "$src/train.en"

cp "$src/dev.en" "$tmp/keep"
{ head -n 56 "$tmp/keep"; printf 'caf\xe9 au lait\n'; tail -n +58 "$tmp/keep"; } >"$src/dev.en"
fails "invalid UTF-8 (Latin-1 on dev.en line 57)" "dev.en:57: invalid UTF-8 at byte 4"
{ head -n 56 "$tmp/keep"; printf '\xed\xa0\x80 surrogate\n'; tail -n +58 "$tmp/keep"; } >"$src/dev.en"
fails "invalid UTF-8 (a surrogate on dev.en line 57)" "dev.en:57: invalid UTF-8 at byte 1"
cp "$tmp/keep" "$src/dev.en"

mv "$src/test.en" "$tmp/keep"
fails "missing test.en" "test.en: no such file"
mv "$tmp/keep" "$src/test.en"

fails "--vocab 100" "--vocab '100'" --vocab 100
fails "--max-len 2" "--max-len '2'" --max-len 2
fails "unknown option" "unknown option '--vocabulary'" --vocabulary 5
# Found only after training: the tmp files go, OUT stays as it was.
fails "every pair too long" "no pair left (0 empty, 200 longer than --max-len 3)" --max-len 3

# Empty lines: dropped, counted, one warning with the count and the first line.
cp "$src/train.zh" "$tmp/keep.zh"
cp "$src/train.en" "$tmp/keep.en"
sed -i '10s/.*//; 20s/.*//' "$src/train.zh"
sed -i '30s/.*/   /' "$src/train.en"
e="$tmp/empty"
if "$prep" translation "$src" "$e" --vocab 600 >"$tmp/log" 2>&1; then
  ok "empty lines are no error"
  n=$(grep -c 'warning: train: 3 pairs with an empty side dropped (the first: line 10 of' "$tmp/log")
  expect "one warning for the empty lines" "$n" 1
  inspect "$e/train.h5"
  expect "dropped_empty" "$(field "$tmp/inspect.txt" dropped_empty)" 3
  expect "pairs + dropped" $(($(field "$tmp/inspect.txt" pairs) + $(field "$tmp/inspect.txt" dropped_too_long))) 197
  "$tool" shard "$e/train.h5" "$e/tokenizer" "$src/train.zh" "$src/train.en" >"$tmp/shard.txt" 2>&1 \
    && ok "kept_lines skip the empty lines" || { bad "shard check with empty lines"; cat "$tmp/shard.txt"; }
else
  bad "empty lines: $(cat "$tmp/log")"
fi
cp "$tmp/keep.zh" "$src/train.zh"
cp "$tmp/keep.en" "$src/train.en"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
