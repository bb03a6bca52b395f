#!/usr/bin/env bash
# The learning-rate schedules, step by step: the lr every training row of
# metrics.jsonl logs against the formula, for warmup then constant, cosine,
# linear, step (per epoch), inverse_sqrt and wsd (warmup-stable-decay), and
# a wsd run resumed halfway goes on with the same lr.
. "$(dirname "$0")/e2e_common.sh"
need_mnist
D="$BUILD/dtrain"
cfg="$SRC/configs/lenet5-mnist.ini"
common=(data.dir="$TMP/mnist" data.train_limit=200 data.test_limit=100 train.device=cpu
        train.batch_size=20 log.every=1 log.tensorboard=false
        train.threads=1 optim.lr=0.01 optim.min_lr=0.001 optim.warmup_steps=4
        optim.step_gamma=0.5 optim.step_size=1 optim.decay_fraction=0.25)

# lr_matches RUN SCHEDULE: every step's lr within 1e-6 of the formula
lr_matches() {
  python3 - "$TMP/$1/metrics.jsonl" "$2" <<'PY'
import json, math, sys
rows = [r for r in map(json.loads, open(sys.argv[1])) if r["split"] == "train"]
sched = sys.argv[2]
base, lo, W, total, spe, frac = 0.01, 0.001, 4, 20, 10, 0.25
def lr(s):  # s optimizer steps done before this one
    if s < W:
        return base * (s + 1) / W
    if sched == "inverse_sqrt":
        return base * math.sqrt(W / (s + 1))
    p = min(1.0, (s - W) / (total - W))
    if sched == "cosine":
        return lo + 0.5 * (base - lo) * (1 + math.cos(math.pi * p))
    if sched == "linear":
        return base + (lo - base) * p
    if sched == "step":
        return base * 0.5 ** (s // spe)
    if sched == "wsd":
        d = max(W, total - round(frac * total))
        return base if s < d else base + (lo - base) * (s - d) / (total - d - 1)
    return base
bad = [(r["step"], r["lr"], lr(r["step"] - 1)) for r in rows
       if abs(r["lr"] - lr(r["step"] - 1)) > 1e-6 * lr(r["step"] - 1)]
print(f"   {len(rows)} steps, lr {rows[0]['lr']:.6g} .. {rows[-1]['lr']:.6g}; wrong: {bad[:3]}")
sys.exit(0 if len(rows) == total and not bad else 1)
PY
}

for s in constant cosine linear step inverse_sqrt wsd; do
  "$D" "$cfg" "${common[@]}" train.max_steps=20 optim.schedule=$s log.dir="$TMP/$s" \
    >"$TMP/$s.log" 2>&1
  check "optim.schedule=$s exits 0" test $? -eq 0
  check "optim.schedule=$s: the lr of every step" lr_matches $s $s
done
check "wsd: held at the peak through step 15, min_lr at step 20" python3 - \
  "$TMP/wsd/metrics.jsonl" <<'PY'
import json, sys
lr = {r["step"]: r["lr"] for r in map(json.loads, open(sys.argv[1])) if r["split"] == "train"}
sys.exit(0 if all(lr[s] == 0.01 for s in range(4, 16)) and abs(lr[20] - 0.001) < 1e-9 else 1)
PY
# resumed halfway through the decay: the same lr from there on
"$D" "$cfg" "${common[@]}" optim.schedule=wsd train.max_steps=18 checkpoint.every=18 \
  log.dir="$TMP/wsd-a" >/dev/null 2>&1
"$D" "$cfg" "${common[@]}" train.max_steps=20 optim.schedule=wsd log.dir="$TMP/wsd-b" \
  checkpoint.resume="$TMP/wsd-a/checkpoints/step_00000018" >/dev/null 2>&1
check "wsd resumed at step 18 of 20: steps 19-20's lr as uninterrupted" python3 - \
  "$TMP/wsd/metrics.jsonl" "$TMP/wsd-b/metrics.jsonl" <<'PY'
import json, sys
def lr(p):
    return {r["step"]: r["lr"] for r in map(json.loads, open(p)) if r["split"] == "train"}
a, b = lr(sys.argv[1]), lr(sys.argv[2])
sys.exit(0 if sorted(b) == [19, 20] and all(a[s] == b[s] for s in b) else 1)
PY
finish
