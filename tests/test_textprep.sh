#!/usr/bin/env bash
# test_textprep.sh: dtrain-prep wos on the real abstracts and dtrain-prep text
# on small files made here (counts, split, documents, decoded text via
# inspect), then bad inputs: each must exit 2 with one line naming the file
# and leave the earlier shards byte for byte; and a shard holding an id over
# the vocabulary is refused by the loader.
set -u
prep="${DTRAIN_BUILD:?}/dtrain-prep"
test_bpe="$DTRAIN_BUILD/tests/test_bpe"
data="${DTRAIN_DATA:-${DTRAIN_SRC:?}/data}"
for need in gpt2-tokenizer/encoder.json gpt2-tokenizer/vocab.bpe wos; do
  if [ ! -e "$data/$need" ]; then
    echo "skip: no $need in $data (set DTRAIN_DATA to the directory holding gpt2-tokenizer/ and wos/)"
    exit 77
  fi
done
export DTRAIN_DATA="$data"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dtrain-test-textprep.XXXXXX") || exit 1
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

# ---- WOS ----
wos="$tmp/wos"
if "$prep" wos "$data/wos" "$wos" >"$tmp/log" 2>&1; then ok "dtrain-prep wos"; else bad "dtrain-prep wos"; fi
sed 's/^/     /' "$tmp/log"
inspect "$wos/train.h5"
cp "$tmp/inspect.txt" "$tmp/wos_train.txt"
inspect "$wos/val.h5"
cp "$tmp/inspect.txt" "$tmp/wos_val.txt"
ntrain=$(field "$tmp/wos_train.txt" count)
nval=$(field "$tmp/wos_val.txt" count)
dtrain=$(field "$tmp/wos_train.txt" documents)
dval=$(field "$tmp/wos_val.txt" documents)
if [ "${ntrain:-0}" -gt 100000 ] && [ "${nval:-0}" -gt 0 ]; then
  ok "wos tokens: train $ntrain, val $nval"
else
  bad "wos tokens: train '$ntrain', val '$nval'"
fi
# val gets about 0.5% (every 200th abstract): accept 0.1% .. 2%
if [ "${nval:-0}" -gt 0 ] && [ $((nval * 1000)) -ge "$ntrain" ] && [ $((nval * 50)) -le "$ntrain" ]; then
  ok "wos val/train ratio sane ($nval / $ntrain)"
else
  bad "wos val/train ratio: $nval / $ntrain"
fi
if [ -e "$data/wos/Data1k.txt" ] && [ -e "$data/wos/WOS1000/X.txt" ]; then
  # Data1k.txt and WOS1000/X.txt hold the same 1,000 abstracts: one copy is kept.
  expect "wos documents (train + val)" $((dtrain + dval)) \
    $(($(grep -c . "$data/wos/WOS1000/X.txt") + $(cat "$data"/wos/WOS-more/X.txt 2>/dev/null | grep -c .)))
fi
expect "wos format" "$(field "$tmp/wos_train.txt" format)" dtrain-tokens-v1
expect "wos vocab_size" "$(field "$tmp/wos_train.txt" vocab_size)" 50257
expect "wos eot" "$(field "$tmp/wos_train.txt" eot)" 50256
expect "wos tokenizer" "$(field "$tmp/wos_train.txt" tokenizer)" gpt2
first=$(find "$data/wos" -name X.txt | sort | head -n 1)
[ -e "$data/wos/Data1k.txt" ] && first="$data/wos/WOS1000/X.txt"
want=$(head -n 1 "$first" | tr -s ' \t' ' ' | cut -c 1-80)
text=$(field "$tmp/wos_train.txt" text)
if [ -n "$want" ] && [ "${text:0:80}" = "$want" ]; then
  ok "wos train decodes to the first abstract: ${text:0:60}..."
else
  bad "wos train text '${text:0:80}', want '$want'"
fi

# ---- text: small files made here ----
mkdir -p "$tmp/two/sub"
printf 'Hello world\n' >"$tmp/two/a.txt"
printf 'Goodbye world\n' | gzip >"$tmp/two/sub/b.txt.gz"
printf 'not text\n' >"$tmp/two/notes.md"
out="$tmp/out"
if "$prep" text "$out" "$tmp/two" >"$tmp/log" 2>&1; then ok "dtrain-prep text (two files)"; else bad "dtrain-prep text: $(cat "$tmp/log")"; fi
inspect "$out/train.h5"
expect "two files: train ids" "$(field "$tmp/inspect.txt" first_ids)" "15496 995 198"
expect "two files: train documents" "$(field "$tmp/inspect.txt" documents)" 1
expect "two files: name" "$(field "$tmp/inspect.txt" name)" two
inspect "$out/val.h5"
expect "two files: val text (the last document)" "$(field "$tmp/inspect.txt" text)" 'Goodbye world\n'
expect "two files: val documents" "$(field "$tmp/inspect.txt" documents)" 1

# Four documents, half to val: documents 1 and 3; <|endoftext|> between documents.
mkdir -p "$tmp/four"
for i in 0 1 2 3; do printf 'doc %s' $i >"$tmp/four/d$i.txt"; done
"$prep" text --val-fraction 0.5 --name four "$tmp/out4" "$tmp/four" >"$tmp/log" 2>&1 ||
  bad "text --val-fraction 0.5: $(cat "$tmp/log")"
inspect "$tmp/out4/train.h5"
expect "four: train text" "$(field "$tmp/inspect.txt" text)" 'doc 0<|endoftext|>doc 2'
expect "four: name" "$(field "$tmp/inspect.txt" name)" four
inspect "$tmp/out4/val.h5"
expect "four: val text" "$(field "$tmp/inspect.txt" text)" 'doc 1<|endoftext|>doc 3'
expect "four: val documents" "$(field "$tmp/inspect.txt" documents)" 2

# One document: split by tokens at its end (0.5% of 2000 words -> 10 tokens).
for i in $(seq 1 2000); do printf ' word'; done >"$tmp/one.txt"
"$prep" text "$tmp/out1" "$tmp/one.txt" >"$tmp/log" 2>&1 || bad "text one file: $(cat "$tmp/log")"
inspect "$tmp/out1/train.h5"
n1=$(field "$tmp/inspect.txt" count)
inspect "$tmp/out1/val.h5"
n2=$(field "$tmp/inspect.txt" count)
expect "one document: train + val tokens" "$n1 + $n2" "1990 + 10"

# ---- spilling: a corpus over DTRAIN_PREP_SPILL_TOKENS ids goes to a
# scratch file as it is encoded, and the shards are written from there:
# the same bytes as from memory, for many documents (WOS, split by
# documents) and for one (split by tokens), the scratch file gone ----
spilled() { # NAME ARGS...: run with a 1000-id bound into $tmp/sp-NAME
  local name=$1
  shift
  DTRAIN_PREP_SPILL_TOKENS=1000 "$prep" "$@" >"$tmp/sp.log" 2>&1 || bad "spilled $name: $(cat "$tmp/sp.log")"
}
spilled one text "$tmp/sp-one" "$tmp/one.txt"
if cmp -s "$tmp/out1/train.h5" "$tmp/sp-one/train.h5" && cmp -s "$tmp/out1/val.h5" "$tmp/sp-one/val.h5"
then ok "one document spilled every 1000 ids: the same shards"
else bad "one document spilled: the shards differ"; fi
if [ -e "$data/wos" ]; then
  "$prep" wos "$data/wos" "$tmp/sp-wos0" >/dev/null 2>&1 || bad "wos"
  spilled wos wos "$data/wos" "$tmp/sp-wos"
  if cmp -s "$tmp/sp-wos0/train.h5" "$tmp/sp-wos/train.h5" &&
     cmp -s "$tmp/sp-wos0/val.h5" "$tmp/sp-wos/val.h5"
  then ok "wos spilled every 1000 ids: the same shards"
  else bad "wos spilled: the shards differ"; fi
  if [ "$(ls "$tmp/sp-wos")" = "$(printf 'train.h5\nval.h5')" ]; then ok "no scratch file left"
  else bad "spilled: left $(ls "$tmp/sp-wos" | tr '\n' ' ')"; fi
fi

# ---- JSON Lines: a document per line, its "text" field (Python's json
# writes them: escapes, surrogate pairs, raw UTF-8, other fields with
# nested "text" keys, a blank line, CRLF). The same documents as .txt
# files in the same directory give the same shards, byte for byte ----
mkdir -p "$tmp/jl-docs" "$tmp/jl-gz"
python3 - "$tmp/jl-docs" "$tmp/jl-gz" <<'PY'
import gzip, json, os, sys
docs = ["Hello, world!\nA second line with \"quotes\", a \\ backslash and a\ttab.",
        "Caf\u00e9, na\u00efve fa\u00e7ade; an emoji \U0001F600 and \u4e2d\u6587 \u00bd",
        "  leading spaces and trailing  \n\n",
        "JSON-looking text: {\"text\": \"fake\"} [1, 2] and a control \u0001 char",
        "the last one, raw UTF-8: d\u00e9j\u00e0 vu \U0001F600"]
rows = [{"id": 0, "text": docs[0]},
        {"meta": {"text": "not this", "l": [1, "x\"y", {"a": None}, -1.5e3, True]},
         "text": docs[1]},
        {"text": docs[2], "score": 0.5},
        {"text": docs[3], "n": [], "o": {}},
        {"b": False, "text": docs[4]}]
# the non-ASCII of row 1 as \u escapes (the emoji a surrogate pair), row 4's raw
lines = [json.dumps(r, ensure_ascii=(i != 4)) for i, r in enumerate(rows)]
body = lines[0] + "\n" + lines[1] + "\r\n\n" + "\n".join(lines[2:]) + "\n"
with open(os.path.join(sys.argv[1], "docs.jsonl"), "w", encoding="utf-8") as f:
    f.write(body)
with gzip.open(os.path.join(sys.argv[2], "docs.jsonl.gz"), "wt", encoding="utf-8") as f:
    f.write(body)
os.makedirs(sys.argv[1] + "-txt")
for i, d in enumerate(docs):
    with open(os.path.join(sys.argv[1] + "-txt", f"{i}.txt"), "w", encoding="utf-8") as f:
        f.write(d)
PY
# one input directory, "in", holding each in turn: the same name and source
jl_run() { # SRC_DIR OUT
  rm -rf "$tmp/in" && cp -r "$1" "$tmp/in"
  "$prep" text "$2" "$tmp/in" >"$tmp/jl.log" 2>&1 ||
    bad "text $(basename "$1"): $(cat "$tmp/jl.log")"
}
jl_run "$tmp/jl-docs-txt" "$tmp/jl-out-txt"
jl_run "$tmp/jl-docs" "$tmp/jl-out"
jl_run "$tmp/jl-gz" "$tmp/jl-out-gz"
inspect "$tmp/jl-out/train.h5"
expect "jsonl: documents in train.h5" "$(field "$tmp/inspect.txt" documents)" 4
for v in jl-out jl-out-gz; do
  if cmp -s "$tmp/$v/train.h5" "$tmp/jl-out-txt/train.h5" &&
     cmp -s "$tmp/$v/val.h5" "$tmp/jl-out-txt/val.h5"
  then ok "$v: the same shards as the documents in .txt files"
  else bad "$v: the shards differ from the .txt documents'"; fi
done
# --field: another key holds the documents (here "body"; "text" then ignored)
rm -rf "$tmp/in" && mkdir -p "$tmp/in"
python3 -c "import json, sys
for d in sys.argv[1:]: print(json.dumps({'text': 'no', 'body': d}))" \
  "Hello, world!" "the last one" >"$tmp/in/docs.jsonl"
"$prep" text --field body "$tmp/jl-body" "$tmp/in" >"$tmp/jl.log" 2>&1 || bad "--field body"
rm -rf "$tmp/in" && mkdir -p "$tmp/in"
printf 'Hello, world!' >"$tmp/in/0.txt"
printf 'the last one' >"$tmp/in/1.txt"
"$prep" text "$tmp/jl-body-txt" "$tmp/in" >"$tmp/jl.log" 2>&1 || bad "text of two .txt"
if cmp -s "$tmp/jl-body/train.h5" "$tmp/jl-body-txt/train.h5" &&
   cmp -s "$tmp/jl-body/val.h5" "$tmp/jl-body-txt/val.h5"
then ok "--field body: the documents of that field"
else bad "--field body: the shards differ"; fi
jl_bad() { # WHAT LINE3 PATTERN
  rm -rf "$tmp/in" && mkdir -p "$tmp/in"
  printf '{"text": "a"}\n\n%s\n' "$2" >"$tmp/in/bad.jsonl"
  "$prep" text "$tmp/jl-bad" "$tmp/in" >"$tmp/jl.log" 2>&1
  local rc=$?
  if [ $rc -eq 2 ] && grep -q "bad.jsonl:3: $3" "$tmp/jl.log" && [ ! -e "$tmp/jl-bad/train.h5" ]
  then ok "jsonl $1: exit 2, $(grep -o 'bad.jsonl:3: .*' "$tmp/jl.log" | head -1)"
  else bad "jsonl $1: exit $rc, $(cat "$tmp/jl.log")"; fi
}
jl_bad "not JSON" 'text: plain' "JSON error at byte 0: unexpected character 't'"
jl_bad "an array, not an object" '["text", "a"]' "not a JSON object"
jl_bad "no text field" '{"body": "a"}' 'no such field (want .* "text": --field)'
jl_bad "text not a string" '{"text": 5}' 'the field is not a string'
jl_bad "unclosed string" '{"text": "abc' "JSON error at byte 10: unterminated string"
jl_bad "two objects" '{"text": "a"} {"text": "b"}' \
  "JSON error at byte 14: trailing characters after the value"

# ---- threads: the same shards from 1 and 3 encoding threads ----
# the WOS abstracts (thousands of one-slice documents) and, where present,
# the English books (50 MB: documents of many 1 MB slices, several batches)
for corpus in "wos $data/wos" "text $data/english"; do
  set -- $corpus
  [ -e "$2" ] || continue
  for t in 1 3; do
    if [ "$1" = wos ]; then args=("$2" "$tmp/thr$t"); else args=("$tmp/thr$t" "$2"); fi
    "$prep" "$1" --threads $t "${args[@]}" >/dev/null 2>&1 || bad "$1 --threads $t"
  done
  if cmp -s "$tmp/thr1/train.h5" "$tmp/thr3/train.h5" && cmp -s "$tmp/thr1/val.h5" "$tmp/thr3/val.h5"
  then ok "$1 $(basename "$2"): --threads 1 and 3 write the same shards"
  else bad "$1 $(basename "$2"): --threads 1 and 3 differ"; fi
  rm -rf "$tmp/thr1" "$tmp/thr3"
done
expect_threads=$("$prep" text --threads 0 "$tmp/x" "$tmp/y" 2>&1)
expect "--threads 0" "$expect_threads" "dtrain-prep: error: --threads '0': expected a whole number in 1..64"

# ---- bad inputs ----
cp "$out/train.h5" "$tmp/train.good"
cp "$out/val.h5" "$tmp/val.good"
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
  if cmp -s "$out/train.h5" "$tmp/train.good" && cmp -s "$out/val.h5" "$tmp/val.good" &&
    ! ls "$out"/*.tmp >/dev/null 2>&1; then
    ok "$what: OUT untouched"
  else
    bad "$what: OUT/train.h5 or val.h5 changed, or a .tmp file was left"
  fi
}

expect_error "missing file" "$tmp/nowhere.txt: No such file or directory" \
  text "$out" "$tmp/two/a.txt" "$tmp/nowhere.txt"
: >"$tmp/empty.txt"
expect_error "empty file" "$tmp/empty.txt: no text to tokenize" text "$out" "$tmp/empty.txt"
mkdir -p "$tmp/notext"
printf 'x\n' >"$tmp/notext/readme.md"
expect_error "directory without text files" "$tmp/notext: no .txt, .jsonl (or .gz of them) files" \
  text "$out" "$tmp/notext"
mkdir -p "$tmp/cut"
head -c 5000 /dev/urandom | base64 | gzip | head -c 1000 >"$tmp/cut/cut.txt.gz"
expect_error "cut gzip stream" "$tmp/cut/cut.txt.gz: truncated" text "$out" "$tmp/cut"
expect_error "bad --val-fraction" "--val-fraction '0.7': expected a number in (0, 0.5]" \
  text --val-fraction 0.7 "$out" "$tmp/two"
expect_error "tokenizer dir without files" "$tmp/notext/encoder.json: cannot open" \
  text --tokenizer "$tmp/notext" "$out" "$tmp/two"
expect_error "text without inputs" "text takes OUT and at least one FILE_OR_DIR" text "$out"
expect_error "wos on a dir without abstracts" "$tmp/notext: no Data1k.txt and no X.txt" \
  wos "$tmp/notext" "$out"
mkdir -p "$tmp/badwos"
{
  printf 'Y1\tY2\tY\tDomain\tarea\tkeywords\tAbstract\n'
  printf '0\t1\t2\tCS\tx\tk\tAn abstract.\n'
  printf '0\t1\t2\tCS\tx\tAn abstract with a field missing.\n'
} >"$tmp/badwos/Data1k.txt"
expect_error "WOS TSV row with a field missing" "$tmp/badwos/Data1k.txt:3: 6 tab-separated fields, the header has 7" \
  wos "$tmp/badwos" "$out"
expect_error "unknown option" "unknown option '--frobnicate' for text" text --frobnicate "$out" "$tmp/two"

# A shard with an id over the vocabulary: the loader (through inspect) names the file and position.
if "$test_bpe" --make-shard "$tmp/badids.h5" 15496 995 50300 198; then
  expect_error "token id >= vocab_size" "$tmp/badids.h5: /tokens[2] = 50300 is not below vocab_size 50257" \
    inspect "$tmp/badids.h5"
else
  bad "test_bpe --make-shard"
fi
if "$prep" --help | grep -q '^  wos \[OPTIONS\] SRC OUT'; then ok "--help lists wos"; else bad "--help lists wos"; fi
if "$prep" --help | grep -q 'Data1k.txt'; then ok "--help says what wos reads"; else bad "--help says what wos reads"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
