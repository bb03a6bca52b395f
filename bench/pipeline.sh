#!/usr/bin/env bash
# Pipeline parallelism's efficiency: training throughput of a GPT as one
# process and as PP pipeline stages, for M micro-batches a step, against what
# the schedule and the cut allow.
#
# Usage: bench/pipeline.sh [BUILD_DIR]
# Env: DTRAIN_DATA (wos/ in it; default data/ in the checkout); PP (stages,
#   default 2); MS (micro-batch counts, default "1 2 4 8"); DEVICE (cpu, the
#   default, one thread per rank so that each stage has a core of its own;
#   or cuda, one GPU per rank); MODEL (overrides of configs/gpt-tiny.ini,
#   default 8 blocks of width 256, 64 tokens a sequence); MB (sequences per
#   micro-batch, default 2); STEPS (default 6) of which WARMUP (default 2)
#   are not counted.
#
# tokens/s: the median over the counted steps of what dtrain logs per step
# (forward, backward and optimizer of the whole batch, every stage done);
# speedup: over one process at the same M.
# flops model: the speedup the 1F1B schedule and the stages' cut would give
# if a step were only the blocks' and the head's matmuls and sending took no
# time: (all blocks' cost + the head's) / (the busiest stage's cost) x
# M / (M + PP - 1), a block costing 24 C^2 + 4 T C and the LM head 2 V C
# flops per token (the count models/gpt.c cuts by), the cut read from
# dtrain's model line. It leaves out what every stage does for its own
# parameters alone (the optimizer step, the gradient norm) and the
# memory-bound kernels, so a measured speedup above it is no error: the
# stages split that work too.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
export DTRAIN_DATA=${DTRAIN_DATA:-$here/data}
pp=${PP:-2} ms=${MS:-"1 2 4 8"} dev=${DEVICE:-cpu} mb=${MB:-2}
steps=${STEPS:-6} warmup=${WARMUP:-2}
read -r -a model <<<"${MODEL:-model.n_layer=8 model.n_embd=256 model.n_head=4 train.seq_len=64}"
. "$here/bench/common.sh"
bench_setup

# run NAME NP M OVERRIDES...: one run; prints its median tokens/s
run() {
  local name=$1 np=$2 m=$3
  shift 3
  bench_gpt "$name" "$np" "${model[@]}" train.precision=fp32 train.batch_size=$((mb * m)) \
    train.max_steps="$steps" "$@" || return 1
  python3 - "$tmp/$name/metrics.jsonl" "$warmup" <<'PY'
import json, statistics, sys
rows = [r for r in map(json.loads, open(sys.argv[1])) if r["split"] == "train"]
print(f"{statistics.median(r['tokens_per_s'] for r in rows[int(sys.argv[2]):]):.0f}")
PY
}

# ideal LOG M: the speedup the cut in LOG's model line and the bubble allow
ideal() {
  python3 - "$1" "$2" "$pp" "${model[@]}" <<'PY'
import re, sys
log, M, pp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
keys = dict(a.split("=", 1) for a in sys.argv[4:])
C, T, V = int(keys["model.n_embd"]), int(keys["train.seq_len"]), 50257
line = re.search(r"pp \d+ stages of (\S+) blocks", open(log).read())
cut = [int(x) for x in line.group(1).split("+")]
block, head = 24 * C * C + 4 * T * C, 2 * V * C
cost = [n * block for n in cut]
cost[-1] += head
print(f"{'+'.join(map(str, cut))} {sum(cost) / max(cost) * M / (M + pp - 1):.2f}")
PY
}

printf '# bench/pipeline.sh, %s, %s, gpt-tiny.ini %s, micro-batch %s, fp32\n' \
  "$(date -u +%Y-%m-%d)" "$dev" "${model[*]}" "$mb"
printf '%-18s %3s %8s %10s %8s %12s\n' layout M cut tokens/s speedup "flops model"
for m in $ms; do
  one=$(run one-$m 1 "$m")
  printf '%-18s %3s %8s %10s %8s %12s\n' "1 process" "$m" - "$one" 1.00 -
  # the flops cut in 1F1B order; at the largest M also the even cut, and the
  # flops cut in GPipe's order (parallel.pp_schedule = gpipe: the same bubble)
  for v in flops even gpipe; do
    [ "$v" != flops ] && [ "$m" != "${ms##* }" ] && continue
    split=$v sched=1f1b
    [ "$v" = gpipe ] && split=flops sched=gpipe
    t=$(run pp-$v-$m "$pp" "$m" parallel.pp="$pp" parallel.pp_split=$split \
      parallel.pp_schedule=$sched)
    read -r cut id <<<"$(ideal "$tmp/pp-$v-$m.log" "$m")"
    # the model pairs each stage's forward with its backward, as 1F1B runs
    # them; GPipe runs a phase of each, which a cut balanced for F+B is not
    [ "$v" = gpipe ] && id=-
    python3 -c "import sys; t, o = map(float, sys.argv[1:3]); \
print('%-18s %3s %8s %10.0f %8.2f %12s' % ('pp=$pp $v', '$m', '$cut', t, t / o, '$id'))" \
      "$t" "$one"
  done
done
