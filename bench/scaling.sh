#!/usr/bin/env bash
# Data-parallel scaling of GPT training, weak and strong: tokens/s as the
# data-parallel ranks grow, at each ZeRO stage, with the scaling efficiency
# and what dtrain --print-memory plans for a rank.
#
# Usage: bench/scaling.sh [BUILD_DIR]
# Env: DTRAIN_DATA (wos/ in it; default data/ in the checkout); NPS (ranks,
#   default "1 2"; more ranks than cores measure the oversubscription, not
#   the engine); ZEROS (default "0 1 2 3"); DEVICE (cpu, the default, one
#   OpenBLAS thread per rank; or cuda, one GPU per rank); MODEL (overrides
#   of configs/gpt-tiny.ini, default 4 blocks of width 256, 4 heads, 128
#   tokens a sequence); MB (sequences per micro-batch and rank, default 4);
#   STEPS (default 8) of which WARMUP (default 3) are not counted; PRECISION
#   (default fp32); REDUCE (parallel.reduce_dtype, the dtype gradients are
#   reduced in: fp32, the default, or bf16).
#
# weak: every rank keeps MB sequences a step (batch_size = np x MB), so a
# step does np times the work; efficiency = tokens/s(np) / (np x
# tokens/s(1)), against the first NPS entry. strong: batch_size = MB x the
# largest np, split over the ranks (fewer ranks accumulate micro-batches of
# MB); efficiency likewise.
# tokens/s: the median over the counted steps of what dtrain logs per step
# (every rank's tokens). plan GiB: the busiest rank's total of
# `dtrain --print-memory` for the layout (the whole model's weights and
# gradients under ZeRO-0, the optimizer state sharded from ZeRO-1 on, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
export DTRAIN_DATA=${DTRAIN_DATA:-$here/data}
dev=${DEVICE:-cpu} mb=${MB:-4} prec=${PRECISION:-fp32} reduce=${REDUCE:-fp32}
steps=${STEPS:-8} warmup=${WARMUP:-3}
read -r -a nps <<<"${NPS:-1 2}"
read -r -a zeros <<<"${ZEROS:-0 1 2 3}"
read -r -a model <<<"${MODEL:-model.n_layer=4 model.n_embd=256 model.n_head=4 train.seq_len=128}"
. "$here/bench/common.sh"
bench_setup
top=${nps[${#nps[@]}-1]}

# tps NAME: the median tokens/s of run NAME's counted steps
tps() {
  python3 - "$tmp/$1/metrics.jsonl" "$warmup" <<'PY'
import json, statistics, sys
rows = [r for r in map(json.loads, open(sys.argv[1])) if r["split"] == "train"]
print(f"{statistics.median(r['tokens_per_s'] for r in rows[int(sys.argv[2]):]):.1f}")
PY
}
# plan ARGS...: the busiest rank's planned GiB
plan() {
  "$build/dtrain" --print-memory "$here/configs/gpt-tiny.ini" train.device="$dev" \
    train.micro_batch_size="$mb" "$@" |
    awk '$1 ~ /^[0-9]+$/ && NF >= 9 {if ($NF > m) m = $NF} END {print m}'
}

printf '# bench/scaling.sh, %s, %s, gpt-tiny.ini %s, micro-batch %s x %s tokens, %s, gradients '\
'reduced in %s, %s steps (%s counted)\n' "$(date -u +%Y-%m-%d)" "$dev" "${model[*]}" "$mb" \
  "${model[-1]#train.seq_len=}" "$prec" "$reduce" "$steps" "$((steps - warmup))"
printf '%-7s %5s %4s %11s %11s %9s\n' scaling zero np tokens/s efficiency "plan GiB"
for kind in weak strong; do
  for z in "${zeros[@]}"; do
    base=
    for np in "${nps[@]}"; do
      if [ $kind = weak ]; then batch=$((np * mb)); else batch=$((top * mb)); fi
      args=("${model[@]}" train.precision="$prec" train.batch_size=$batch
            train.max_steps="$steps" parallel.zero="$z" parallel.dp="$np"
            parallel.reduce_dtype="$reduce")
      bench_gpt "$kind-z$z-n$np" "$np" "${args[@]}"
      t=$(tps "$kind-z$z-n$np")
      [ -z "$base" ] && base=$t
      # against the first np's rate, per rank
      eff=$(awk -v t="$t" -v b="$base" -v n="$np" -v n0="${nps[0]}" \
        'BEGIN {printf "%.2f", t * n0 / (n * b)}')
      printf '%-7s %5s %4s %11.0f %11s %9s\n' "$kind" "$z" "$np" "$t" "$eff" \
        "$(plan "${args[@]}" | head -1)"
    done
  done
done
