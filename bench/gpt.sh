#!/usr/bin/env bash
# GPT training throughput: tokens/s, ms/step, MFU and peak device memory per
# config, from a short dtrain run on real token shards.
#
# Usage: bench/gpt.sh [BUILD_DIR] [CONFIG[:MB,MB,...] ...]
#   CONFIG is gpt-124m, gpt-350m, gpt-774m, gpt-1.6b (configs/CONFIG.ini, on
#   train.device=auto) or cpu-tiny (configs/gpt-tiny.ini on the CPU, for
#   machines without a GPU). MB is a list of micro-batch sizes: each is tried
#   in turn and the first that does not run out of device memory is measured,
#   so list them largest first; one that `dtrain --print-memory` plans above
#   the GPU's whole memory is skipped without a run. Defaults: gpt-124m:16,
#   gpt-350m:16,8,4, gpt-774m:16,8,4,2, gpt-1.6b:16,12,8,4,2,1, cpu-tiny:4.
#   Without CONFIG:
#   gpt-124m gpt-1.6b where a GPU is visible, else cpu-tiny.
# Env: DTRAIN_DATA (wos/ and gpt2-tokenizer/ in it; default data/ in the
#   checkout) or GPT_BENCH_DATA (a folder of prepared train.h5/val.h5 token
#   shards, used as is); STEPS (default 12, cpu-tiny 8) and WARMUP (default 3):
#   each run is STEPS optimizer steps of one micro-batch (train.batch_size =
#   micro-batch, no accumulation), the first WARMUP left out of the figures;
#   PEAK_TFLOPS overrides the peak used for MFU; OUT_CSV appends the table's
#   rows to that file; PRECISION (bf16 | fp32) is train.precision for the GPU
#   configs (default bf16; cpu-tiny always runs fp32 unless PRECISION is set).
#
# Throughput: the median over the measured steps of the per-step tokens/s that
# dtrain logs (log.every=1; a step is forward, backward, clipping and the
# AdamW update, synchronised). ms/step = micro-batch x T / that rate.
# MFU = model FLOP/s / the GPU's bf16 dense peak (nvidia-smi's name: H100 SXM
# and H200 989 TFLOP/s, H100 PCIe 756, A100 312; other GPUs and the CPU: n/a
# unless PEAK_TFLOPS is set). Model FLOPs per token = 6*N + 12*L*T*d
# (PaLM's count: N every parameter, the tied wte counting once for the LM-head
# GEMM; 12*L*T*d the attention scores and their weighted sum, forward and
# backward); no recompute FLOPs are counted.
# STATE: train.precision=bf16 runs the linear layers' matmuls on bf16
# operands (tensor cores, fp32 accumulation) and keeps GPT's activations
# (LayerNorm outputs, qkv, attention output, the MLP hidden and its
# gradient, logits) in bf16; the residual stream, the other gradients and
# the optimizer stay fp32 in memory (bench/gpt_floor.py counts the bytes of
# each layout).
# Peak memory: the largest memory.used that nvidia-smi reports, sampled every
# 100 ms during the run (the whole GPU, so other processes count too); on the
# CPU the process's peak RSS (GNU time). dtrain's own count of parameters,
# gradients, optimizer state and activations is the "model GiB" column;
# "plan GiB" is what `dtrain --print-memory` planned for the same run
# without a device (its total: those and the bf16 weight copy, cuBLASLt's
# workspace), so the GPU runs measure the plan's gap to the real peak.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}; shift || true
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export DTRAIN_DATA=${DTRAIN_DATA:-$here/data}
warmup=${WARMUP:-3}
[ -x "$build/dtrain" ] || { echo "gpt.sh: no $build/dtrain (build first)" >&2; exit 2; }

have_gpu=0
if "$build/dtrain" --version 2>/dev/null | grep -q "CUDA backend built" &&
   command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  have_gpu=1
fi
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then
  if [ $have_gpu = 1 ]; then configs=(gpt-124m gpt-1.6b); else configs=(cpu-tiny); fi
fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# token shards: prepared ones, else the Web of Science abstracts (0.5 M
# tokens, about 1 s to tokenize), which every GPU check carries anyway
data=${GPT_BENCH_DATA:-}
if [ -z "$data" ]; then
  data=$tmp/tokens
  if [ -d "$DTRAIN_DATA/wos" ]; then
    "$build/dtrain-prep" wos "$DTRAIN_DATA/wos" "$data" >"$tmp/prep.log" 2>&1 ||
      { cat "$tmp/prep.log" >&2; exit 1; }
  elif [ -d "$DTRAIN_DATA/english" ]; then
    "$build/dtrain-prep" text "$data" "$DTRAIN_DATA/english" >"$tmp/prep.log" 2>&1 ||
      { cat "$tmp/prep.log" >&2; exit 1; }
  else
    echo "gpt.sh: neither \$DTRAIN_DATA/wos nor \$DTRAIN_DATA/english ($DTRAIN_DATA); set DTRAIN_DATA or GPT_BENCH_DATA" >&2
    exit 2
  fi
fi

gpu_name=cpu gpu_gib=
peak=${PEAK_TFLOPS:-}
if [ $have_gpu = 1 ]; then
  gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  gpu_gib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1 |
    awk '{printf "%.1f", $1 / 1024}')
  if [ -z "$peak" ]; then
    case $gpu_name in
      *H200*|*H100*SXM*|*"H100 80GB HBM3"*) peak=989 ;;
      *H100*PCIe*) peak=756 ;;
      *H100*) peak=989 ;;
      *A100*) peak=312 ;;
    esac
  fi
fi

printf '# GPT training throughput (bench/gpt.sh), %s, %s, train.precision=%s\n' \
  "$gpu_name" "$(date -u +%Y-%m-%d)" "${PRECISION:-bf16 (GPU), fp32 (cpu-tiny)}"
printf '# MFU = (6*N + 12*L*T*d) * tokens/s / bf16 dense peak (%s TFLOP/s); %s steps, first %s not counted\n' \
  "${peak:-n/a}" "${STEPS:-12 (cpu-tiny 8)}" "$warmup"
printf '%-10s %8s %11s %11s %9s %7s %9s %9s %9s  %s\n' config params "mb x T" "tokens/s" \
  "ms/step" "MFU%" "peak GiB" "model GiB" "plan GiB" note
# peak RSS on the CPU through GNU time, where it is installed
have_time=0; [ -x /usr/bin/time ] && have_time=1
status=0
for spec in "${configs[@]}"; do
  name=${spec%%:*}
  mbs=${spec#*:}; [ "$mbs" = "$spec" ] && mbs=
  dev=auto steps=${STEPS:-12} prec=${PRECISION:-bf16}
  case $name in
    cpu-tiny) ini=$here/configs/gpt-tiny.ini dev=cpu steps=${STEPS:-8} prec=${PRECISION:-fp32}
              : "${mbs:=4}" ;;
    gpt-124m) ini=$here/configs/$name.ini; : "${mbs:=16}" ;;
    gpt-350m) ini=$here/configs/$name.ini; : "${mbs:=16,8,4}" ;;
    gpt-774m) ini=$here/configs/$name.ini; : "${mbs:=16,8,4,2}" ;;
    gpt-1.6b) ini=$here/configs/$name.ini; : "${mbs:=16,12,8,4,2,1}" ;;
    *) echo "gpt.sh: unknown config $name (gpt-124m, gpt-350m, gpt-774m, gpt-1.6b, cpu-tiny)" >&2
       status=2; continue ;;
  esac
  if [ $dev = auto ] && [ $have_gpu = 0 ]; then
    printf '%-10s %8s %11s %11s %9s %7s %9s %9s %9s  %s\n' "$name" - - - - - - - - \
      "skipped: no GPU"
    continue
  fi
  done_one=0 failed=0 note=
  for mb in ${mbs//,/ }; do
    run=$tmp/run-$name-$mb
    # what dtrain --print-memory plans for this run (shown beside what it
    # took); a micro-batch planned over the GPU's whole memory is not tried
    plan=$("$build/dtrain" --print-memory "$ini" train.device=$dev train.precision=$prec \
      train.micro_batch_size=$mb train.batch_size=$mb 2>/dev/null |
      awk '$1 == 0 && $2 == 0 && $3 == 0 {print $NF}') || plan=
    if [ -n "$plan" ] && [ -n "$gpu_gib" ] &&
       awk -v p="$plan" -v g="$gpu_gib" 'BEGIN {exit !(p > g)}'; then
      note="${note}mb $mb: planned $plan GiB > $gpu_gib; "
      continue
    fi
    mon=
    if [ $dev != cpu ]; then
      nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 \
        >"$run.mem" 2>/dev/null &
      mon=$!
    fi
    rc=0
    timer=(env)
    [ $have_time = 1 ] && timer=(/usr/bin/time -f '%M' -o "$run.rss")
    "${timer[@]}" "$build/dtrain" "$ini" data.dir="$data" \
      train.device=$dev train.precision=$prec train.micro_batch_size=$mb train.batch_size=$mb \
      train.max_steps=$steps train.epochs=1000 log.every=1 log.dir="$run" \
      log.tensorboard=false checkpoint.every=0 data.test_limit=$((2 * mb)) \
      >"$run.log" 2>&1 || rc=$?
    [ -n "$mon" ] && { kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null || true; }
    if [ $rc != 0 ]; then
      if grep -qiE "out of memory|ALLOC_FAILED|cudaErrorMemoryAllocation" "$run.log"; then
        note="${note}mb $mb: out of memory; "
        continue
      fi
      note="${note}mb $mb: exit $rc: $(grep -m1 -iE 'error|fatal' "$run.log" | cut -c1-80)"
      [ -n "${OUT_LOGDIR:-}" ] && cp "$run.log" "$OUT_LOGDIR/gpt-$name-mb$mb.log" 2>/dev/null
      failed=1
      break
    fi
    [ -n "${OUT_LOGDIR:-}" ] && cp "$run.log" "$OUT_LOGDIR/gpt-$name-mb$mb.log" 2>/dev/null
    python3 - "$run" "$name" "$mb" "$warmup" "${peak:-}" "$dev" "$note" "${OUT_CSV:-}" \
      "${plan:-nan}" <<'PY' || failed=1
import json, re, statistics, sys
run, name, mb, warmup, peak, dev, note, csv, plan_gib = sys.argv[1:10]
plan_gib = float(plan_gib)
mb, warmup = int(mb), int(warmup)
log = open(run + ".log").read()
rows = [json.loads(l) for l in open(run + "/metrics.jsonl")]
train = [r for r in rows if r["split"] == "train"]
meas = [r["tokens_per_s"] for r in train if r["step"] > warmup]
cfg = {}
sect = None
for line in log.splitlines():  # the resolved config dtrain prints first
    m = re.match(r"^\[(\w+)\]$", line)
    if m: sect = m.group(1); continue
    m = re.match(r"^(\w+) = (.*)$", line)
    if m and sect: cfg.setdefault(sect + "." + m.group(1), m.group(2))
L, d = int(cfg["model.n_layer"]), int(cfg["model.n_embd"])
T = int(cfg["train.seq_len"]) or int(cfg["model.block_size"])
N = int(re.search(r"model: \w+, (\d+) parameters", log).group(1))
m = re.search(r"^\s+0\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", log, re.M)
model_gib = sum(int(x) for x in m.groups()) / 2**30 if m else float("nan")
if dev == "cpu":
    try: peak_gib = int(open(run + ".rss").read().split()[-1]) * 1024 / 2**30
    except Exception: peak_gib = float("nan")
else:
    try: peak_gib = max(int(x) for x in open(run + ".mem").read().split() if x.isdigit()) * 2**20 / 2**30
    except Exception: peak_gib = float("nan")
if not meas:
    print(f"{name:<10} no steps after warm-up ({len(train)} logged)"); sys.exit(1)
tps = statistics.median(meas)
ms = 1000.0 * mb * T / tps
flops_tok = 6 * N + 12 * L * T * d
mfu = f"{100 * flops_tok * tps / (float(peak) * 1e12):7.2f}" if peak else f"{'n/a':>7}"
pn = f"{N / 1e6:.1f}M" if N < 1e9 else f"{N / 1e9:.2f}B"
note = (note + f"{len(meas)} steps measured").strip()
line = f"{name:<10} {pn:>8} {f'{mb} x {T}':>11} {tps:11.0f} {ms:9.1f} {mfu} {peak_gib:9.2f} {model_gib:9.2f} {plan_gib:9.2f}  {note}"
print(line)
if csv:
    with open(csv, "a") as f:
        f.write(",".join(str(x) for x in (name, N, mb, T, round(tps, 1), round(ms, 2), mfu.strip(), round(peak_gib, 3), round(model_gib, 3), round(plan_gib, 3))) + "\n")
PY
    done_one=1
    break
  done
  if [ $done_one = 0 ]; then
    [ $failed = 1 ] || note="${note}none fit"
    printf '%-10s %8s %11s %11s %9s %7s %9s %9s %9s  %s\n' "$name" - - - - - - - - "$note"
    failed=1
  fi
  [ $failed = 0 ] || status=1
done
printf '# peak GiB: nvidia-smi memory.used max (GPU) or peak RSS (CPU); model GiB: dtrain'"'"'s params+grads+optimizer+activations; plan GiB: dtrain --print-memory'"'"'s total\n'
exit $status
