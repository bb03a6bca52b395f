#!/usr/bin/env bash
# Tensor and sequence parallelism's cost and memory: training throughput and
# rank 0's activation bytes of a GPT as one process, as tp ranks, and as tp
# ranks with parallel.sequence_parallel.
#
# Usage: bench/tensor.sh [BUILD_DIR]
# Env: DTRAIN_DATA (wos/ in it; default data/ in the checkout); TP (ranks,
#   default 2); DEVICE (cpu, the default, one thread per rank so that each
#   rank has a core of its own, and one thread for the single process; or
#   cuda, one GPU per rank); MODEL (overrides of configs/gpt-tiny.ini,
#   default 8 blocks of width 256, 4 heads, 128 tokens a sequence); MB
#   (sequences per micro-batch, default 4); M (micro-batches a step, default
#   2); STEPS (default 6) of which WARMUP (default 2) are not counted;
#   PRECISION (default fp32).
#
# tokens/s: the median over the counted steps of what dtrain logs per step;
# speedup: over one process. activations: rank 0's column of the start-up
# memory table (every buffer the model allocates for a forward and backward:
# the blocks' saved tensors, the LM head's chunk of logits, scratch).
# "a block": what one block adds, from a second run with 2 more blocks.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
export DTRAIN_DATA=${DTRAIN_DATA:-$here/data}
tp=${TP:-2} dev=${DEVICE:-cpu} mb=${MB:-4} m=${M:-2} prec=${PRECISION:-fp32}
steps=${STEPS:-6} warmup=${WARMUP:-2}
read -r -a model <<<"${MODEL:-model.n_layer=8 model.n_embd=256 model.n_head=4 train.seq_len=128}"
. "$here/bench/common.sh"
bench_setup
nl=8 base=() # the model's overrides but n_layer, which run sets
for kv in "${model[@]}"; do
  case $kv in model.n_layer=*) nl=${kv#*=} ;; *) base+=("$kv") ;; esac
done

# run NAME NP LAYERS STEPS OVERRIDES...: one run into $tmp/NAME
run() {
  local name=$1 np=$2 layers=$3 n=$4
  shift 4
  bench_gpt "$name" "$np" "${base[@]}" model.n_layer="$layers" train.precision="$prec" \
    train.batch_size=$((mb * m)) train.max_steps="$n" "$@"
}

# row NAME LABEL ONE: the table's row of run NAME (and NAME-more, 2 blocks more)
row() {
  python3 - "$tmp" "$1" "$2" "${3:-}" "$warmup" <<'PY'
import json, re, statistics, sys
tmp, name, label, one, warm = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def tps(n):
    rows = [r for r in map(json.loads, open(f"{tmp}/{n}/metrics.jsonl")) if r["split"] == "train"]
    return statistics.median(r["tokens_per_s"] for r in rows[warm:])
def act(n):
    t = open(f"{tmp}/{n}.log").read()
    return int(re.search(r"activations.*\n +0 +\d+ +\d+ +\d+ +(\d+)", t).group(1))
t = tps(name)
speed = t / tps(one) if one else 1.0
print(f"{label:<16} {t:10.0f} {speed:8.2f} {act(name) / 1e6:13.2f} {(act(name + '-more') - act(name)) / 2e6:10.3f}")
PY
}

printf '# bench/tensor.sh, %s, %s, gpt-tiny.ini %s, micro-batch %s x %s a step, %s\n' \
  "$(date -u +%Y-%m-%d)" "$dev" "${model[*]}" "$mb" "$m" "$prec"
printf '%-16s %10s %8s %13s %10s\n' layout tokens/s speedup "activ. MB r0" "a block MB"
for lay in "one 1" "tp $tp parallel.tp=$tp" \
           "sp $tp parallel.tp=$tp parallel.sequence_parallel=true"; do
  read -r -a a <<<"$lay"
  run "${a[0]}" "${a[1]}" "$nl" "$steps" "${a[@]:2}"
  run "${a[0]}-more" "${a[1]}" $((nl + 2)) 1 "${a[@]:2}"
done
row one "1 process"
row tp "tp=$tp" one
row sp "tp=$tp sp" one
