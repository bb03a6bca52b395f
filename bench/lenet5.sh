#!/usr/bin/env bash
# LeNet-5 on MNIST: training wall time to 99% test accuracy and training
# images/s, per device. Usage: bench/lenet5.sh [BUILD_DIR] [cpu|cuda|all] [overrides...]
# Time to 99% is the training time (steps only, no evaluation or I/O) at the
# first per-epoch evaluation that reaches 99.0%.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}; shift || true
which=${1:-all}; shift || true
data=${DTRAIN_DATA:-$here/data}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$build/dtrain-prep" mnist "$data/mnist" "$tmp/mnist" >/dev/null
devices=()
case $which in
  all) devices=(cpu); "$build/dtrain" --version | grep -q "CUDA backend built" &&
         command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && devices+=(cuda) ;;
  *) devices=("$which") ;;
esac
printf '# LeNet-5 / MNIST, configs/lenet5-mnist.ini %s\n' "$*"
printf '# %-6s %-40s %8s %12s %12s %10s\n' device desc epochs "t99_s" "images/s" "final_acc"
for d in "${devices[@]}"; do
  "$build/dtrain" "$here/configs/lenet5-mnist.ini" data.dir="$tmp/mnist" train.device=$d \
    log.dir="$tmp/run-$d" checkpoint.every=0 log.tensorboard=false "$@" >"$tmp/log-$d" 2>&1
  desc=$(sed -n 's/^device: //p' "$tmp/log-$d" | cut -c1-40)
  python3 - "$tmp/run-$d/metrics.jsonl" "$d" "$desc" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
test = [r for r in rows if r["split"] == "test"]
train = [r for r in rows if r["split"] == "train" and r["step"] > 1]
t99 = next((r["train_time_s"] for r in test if r["accuracy"] >= 0.99), float("nan"))
steps = test[-1]["step"]; tt = test[-1]["train_time_s"]
ips = sum(r["samples_per_s"] for r in train) / max(len(train), 1)
print(f"  {sys.argv[2]:<6} {sys.argv[3]:<40} {test[-1]['epoch']:8.2f} {t99:12.2f} {ips:12.0f} {100*test[-1]['accuracy']:9.2f}%")
PY
done
printf '# t99_s: training seconds until the first epoch-end evaluation >= 99.0%% (nan: never)\n'
