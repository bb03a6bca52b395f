#!/usr/bin/env bash
# Issue 5's BLEU bar: dtrain's configs/transformer-wmt19.ini against a PyTorch
# nn.Transformer (bench/transformer_pytorch.py) trained on the same shards,
# vocabulary and wall-clock budget; both translate the same test sentences with
# beam 4 (GNMT length penalty 0.6) and are scored with corpus BLEU and chrF.
#
# Usage: bench/transformer.sh [BUILD_DIR] [MINUTES] [section.key=value ...]
#   BUILD_DIR  default build/; MINUTES of training for each system, default 30
#   overrides  go to dtrain; the model/train/optim/decode ones also to the
#              PyTorch script (e.g. model.n_embd=64 for a CPU smoke run)
# Environment:
#   DTRAIN_DATA        raw data (default data/): $DTRAIN_DATA/wmt-zh-en/{train,dev,test}.{zh,en}
#   BENCH_PREP         prepared shards (default data/wmt19; made with
#                      `dtrain-prep translation ... --vocab 16000` when absent, else reused)
#   BENCH_WORK         where runs, translations and results go (default: a new temp dir, kept)
#   BENCH_TEST_LIMIT   translate only the first N kept test pairs (default 0 = all; smoke runs)
#   BENCH_SYSTEMS      "dtrain pytorch" (default) or one of them
#   PYTHON             default python3 (needs torch, h5py, sacrebleu)
# Training time excludes evaluation and checkpointing for both systems
# (dtrain: train.max_time_s). Tokens/s is target tokens (with eos) per
# second of training. test.h5 drops pairs longer than --max-len; dtrain
# translates exactly the raw lines listed in its /kept_lines, so both systems
# see the same sentences and the same references.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}; shift || true
minutes=${1:-30}; shift || true
data=${DTRAIN_DATA:-$here/data}
prep=${BENCH_PREP:-$here/data/wmt19}
work=${BENCH_WORK:-$(mktemp -d -t dtrain-bench-transformer.XXXXXX)}
limit=${BENCH_TEST_LIMIT:-0}
systems=${BENCH_SYSTEMS:-dtrain pytorch}
py=${PYTHON:-python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$work"
results=$work/results.jsonl
: >"$results"
echo "# work dir: $work"

# ---- data: the same shards and tokenizer for both systems
if [ -f "$prep/train.h5" ] && [ -f "$prep/valid.h5" ] && [ -f "$prep/test.h5" ] &&
   [ -f "$prep/tokenizer/encoder.json" ]; then
  echo "# reusing $prep"
else
  "$build/dtrain-prep" translation "$data/wmt-zh-en" "$prep" --vocab 16000 >"$work/prep.log" 2>&1 ||
    { cat "$work/prep.log"; exit 1; }
  tail -4 "$work/prep.log"
fi
vocab=$("$py" - "$prep" "$data/wmt-zh-en" "$work" "$limit" <<'PY'
import h5py, sys
prep, raw, work, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with h5py.File(f"{prep}/test.h5", "r") as f:
    kept = [int(x) for x in f["kept_lines"][:]]
    vocab = int(f.attrs["vocab_size"].reshape(-1)[0])
if limit > 0:
    kept = kept[:limit]
for ext in ("zh", "en"):
    with open(f"{raw}/test.{ext}", encoding="utf-8", newline="\n") as f:
        lines = f.read().split("\n")
    with open(f"{work}/test.kept.{ext}", "w", encoding="utf-8", newline="\n") as f:
        f.writelines(lines[i] + "\n" for i in kept)
print(vocab)
PY
)
ntest=$(wc -l <"$work/test.kept.zh")
echo "# vocabulary $vocab; $ntest test sentences (test.h5's kept lines${limit:+, first $limit at most})"
budget_s=$(awk -v m="$minutes" 'BEGIN { printf "%g", m * 60 }')

# ---- dtrain: train for the budget (a final checkpoint at the stop), then translate
if [[ " $systems " == *" dtrain "* ]]; then
  # on a GPU, bf16 matmuls as the PyTorch baseline's bf16 autocast (unless
  # the command line says otherwise)
  prec=()
  if [[ " $* " != *" train.precision="* ]] && "$build/dtrain" --version 2>/dev/null |
       grep -q "CUDA backend built" && command -v nvidia-smi >/dev/null &&
       nvidia-smi -L >/dev/null 2>&1; then
    prec=(train.precision=bf16)
  fi
  # epochs high enough that the budget, not the epoch count, ends training;
  # checkpoint.every: only the final checkpoint (always written at the last step)
  "$build/dtrain" "$here/configs/transformer-wmt19.ini" data.dir="$prep" \
    model.vocab_size="$vocab" train.max_time_s="$budget_s" train.epochs=100000 \
    checkpoint.every=100000000 checkpoint.resume=never log.dir="$work/dtrain" \
    log.tensorboard=false ${prec[@]+"${prec[@]}"} "$@" >"$work/dtrain-train.log" 2>&1 ||
    { tail -20 "$work/dtrain-train.log"; exit 1; }
  grep -E '^(device|model|done|stopping):' "$work/dtrain-train.log" | sed 's/^/# dtrain /' || true
  "$build/dtrain-translate" "$work/dtrain/checkpoints" decode.beam=4 --ref "$work/test.kept.en" \
    <"$work/test.kept.zh" >"$work/dtrain.hyp.en" 2>"$work/dtrain-translate.log" ||
    { cat "$work/dtrain-translate.log"; exit 1; }
  sed 's/^/# dtrain-translate: /' "$work/dtrain-translate.log"
  "$py" - "$work" "$budget_s" "$*" "$(date +%F)" <<'PY' >>"$results"
import json, re, sys
work, budget, overrides, date = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
log = open(f"{work}/dtrain-train.log").read()
tr = open(f"{work}/dtrain-translate.log").read()
done = re.search(r"^done: (\d+) steps, ([\d.]+) s training \(([\d.]+) tok/s\)", log, re.M)
dev = re.search(r"^device: (.*)$", log, re.M)
bleu = re.search(r"^BLEU = ([\d.]+)", tr, re.M)
chrf = re.search(r"^chrF2 = ([\d.]+)", tr, re.M)
rows = [json.loads(l) for l in open(f"{work}/dtrain/metrics.jsonl")]
val = [r for r in rows if r.get("split") == "val" and "loss" in r]
res = {"system": "dtrain", "date": date, "device": dev.group(1) if dev else "?",
       "config": "transformer-wmt19.ini", "overrides": overrides.split(),
       "budget_s": budget, "steps": int(done.group(1)), "train_time_s": float(done.group(2)),
       "tokens_per_s": float(done.group(3)), "val_loss": val[-1]["loss"] if val else None,
       "bleu": float(bleu.group(1)), "chrf": float(chrf.group(1))}
# the same hypotheses scored by sacrebleu, as a check of dtrain's scorer
try:
    import sacrebleu
    # an undertrained model may emit byte tokens that are not valid UTF-8
    hyp = open(f"{work}/dtrain.hyp.en", encoding="utf-8", errors="replace").read().split("\n")[:-1]
    ref = open(f"{work}/test.kept.en", encoding="utf-8").read().split("\n")[:-1]
    res["sacrebleu"] = round(sacrebleu.corpus_bleu(hyp, [ref]).score, 2)
    res["sacrebleu_chrf"] = round(sacrebleu.corpus_chrf(hyp, [ref]).score, 2)
except ImportError:
    pass
print(json.dumps(res))
PY
fi

# ---- PyTorch nn.Transformer: the same shards, config, overrides and budget
if [[ " $systems " == *" pytorch "* ]]; then
  "$py" "$here/bench/transformer_pytorch.py" --data "$prep" \
    --config "$here/configs/transformer-wmt19.ini" --minutes "$minutes" \
    --test-limit "$limit" --hyp "$work/pytorch.hyp.en" --out "$results" "$@" \
    >"$work/pytorch.log" 2>&1 || { tail -20 "$work/pytorch.log"; exit 1; }
  grep -E '^(device|model|done|valid|test|BLEU|chrF)' "$work/pytorch.log" | sed 's/^/# pytorch /'
fi

# ---- the table
"$py" - "$results" "$minutes" "$ntest" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n# Transformer, WMT19 zh-en, configs/transformer-wmt19.ini, {sys.argv[2]} min training "
      f"budget, {sys.argv[3]} test sentences, beam 4")
print(f"| {'system':<24} | {'device':<32} | {'budget':>7} | {'steps':>6} | {'train tok/s':>11} "
      f"| {'val loss':>8} | {'test BLEU':>9} | {'chrF':>6} |")
print(f"| {'-'*24} | {'-'*32} | {'-'*6}: | {'-'*5}: | {'-'*10}: | {'-'*7}: | {'-'*8}: | {'-'*5}: |")
for r in rows:
    vl = f"{r['val_loss']:.3f}" if r.get("val_loss") is not None else "-"
    print(f"| {r['system']:<24} | {r['device'][:32]:<32} | {r['budget_s'] / 60:5.1f} m "
          f"| {r['steps']:6d} | {r['tokens_per_s']:11,.0f} | {vl:>8} | {r['bleu']:9.2f} "
          f"| {r['chrf']:6.2f} |")
for r in rows:
    if "sacrebleu" in r:
        print(f"# {r['system']}: sacrebleu on the same hypotheses: BLEU {r['sacrebleu']:.2f}, "
              f"chrF {r['sacrebleu_chrf']:.2f}")
PY
