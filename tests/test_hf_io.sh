#!/usr/bin/env bash
# model.init_from and dtrain-export end to end on the CPU: a tiny GPT starts
# from the weights transformers saved (tests/fixtures/hf_gpt2_tiny), trains a
# few steps in one process and in dp/tp/pp layouts at every ZeRO stage; its checkpoint
# exports (a file and --hf-dir) and re-imports to the checkpoint's tensors bit
# for bit; bad inputs (a FIFO, directories where files belong, a NaN weight
# among them) exit 2 naming the file and tensor. Where transformers is
# importable, it loads the exported directory and gives dtrain's validation loss.
. "$(dirname "$0")/e2e_common.sh"
D="$BUILD/dtrain"
X="$BUILD/dtrain-export"
H="$BUILD/tests/test_hf_io"
FIX="$SRC/tests/fixtures/hf_gpt2_tiny"
export OMPI_MCA_mpi_yield_when_idle=1

# random tokens below the fixture's vocabulary of 97
mkdir -p "$TMP/data"
"$H" make-shards "$TMP/data" 97 20000 >/dev/null || { echo "make-shards failed"; exit 1; }
cat >"$TMP/tiny.ini" <<EOF
[model]
name = gpt
n_layer = 2
n_head = 4
n_embd = 32
vocab_size = 97
block_size = 16

[train]
device = cpu
batch_size = 8
micro_batch_size = 4
max_steps = 4
seed = 1
threads = 1

[optim]
name = adamw
lr = 1e-4
schedule = constant

[log]
every = 1
tensorboard = false
EOF
common=("$TMP/tiny.ini" data.dir="$TMP/data" data.test_limit=64 checkpoint.keep=0)
LR=1e-4

# --- import: trains from transformers' weights ---
"$D" "${common[@]}" model.init_from="$FIX" checkpoint.every=4 log.dir="$TMP/one" \
  >"$TMP/one.log" 2>&1
check "dtrain with model.init_from=<HF dir> exits 0" test $? -eq 0
check "it says where the weights came from" \
  grep -q "init: [0-9]* parameters from .*hf_gpt2_tiny/model.safetensors" "$TMP/one.log"
CK="$TMP/one/checkpoints"
# 4 Adam steps move each weight by at most about 4 lr: close to the fixture, but moved
"$H" compare "$CK" "$FIX" $(python3 -c "print(4 * 1.5 * $LR)")
check "after 4 steps at lr $LR the weights are within 6 lr of the imported ones" test $? -eq 0
"$H" compare "$CK" "$FIX" -1e-6 >/dev/null
check "... and training moved them" test $? -eq 0
"$D" "${common[@]}" checkpoint.every=4 log.dir="$TMP/seeded" >"$TMP/seeded.log" 2>&1
"$H" compare "$TMP/seeded/checkpoints" "$FIX" -1e-2 >/dev/null
check "a run without init_from is far from them (the import is what made the difference)" \
  test $? -eq 0

# --- export ---
"$X" "$CK" "$TMP/out.safetensors" >"$TMP/x1.log" 2>&1
check "dtrain-export CKPT OUT.safetensors exits 0" test $? -eq 0
"$H" compare "$CK" "$TMP/out.safetensors"
check "the exported file re-imports to the checkpoint's tensors bit for bit" test $? -eq 0
"$X" "$CK/step_00000004" --hf-dir "$TMP/hf" >"$TMP/x2.log" 2>&1
check "dtrain-export STEP_DIR --hf-dir DIR exits 0" test $? -eq 0
check "--hf-dir writes model.safetensors and config.json" \
  test -s "$TMP/hf/model.safetensors" -a -s "$TMP/hf/config.json"
check "the file and the directory hold the same bytes" \
  cmp -s "$TMP/out.safetensors" "$TMP/hf/model.safetensors"
"$H" compare "$CK" "$TMP/hf" >/dev/null
check "the exported directory (config.json checked too) re-imports bit for bit" test $? -eq 0
"$X" "$CK/LATEST" "$TMP/latest.safetensors" >"$TMP/x3.log" 2>&1
check "dtrain-export of a LATEST file exports the step it names" \
  cmp -s "$TMP/out.safetensors" "$TMP/latest.safetensors"
"$D" "${common[@]}" model.init_from="$TMP/hf" train.max_steps=1 log.dir="$TMP/again" \
  >"$TMP/again.log" 2>&1
check "dtrain starts from its own export" test $? -eq 0

# --- every layout starts from the import ---
# (tensor parallelism: each rank keeps its parts of the imported tensors;
# pipeline stages their blocks, the last its copy of the token table)
for lay in "2 1 1 1" "2 1 3 1" "2 2 0 1" "4 2 1 1" "2 1 0 2" "4 1 2 2"; do
  set -- $lay
  np=$1 tp=$2 zero=$3 pp=$4 dp=$(($1 / $2 / $4))
  run="$TMP/dp$dp-tp$tp-z$zero-pp$pp"
  mpirun --oversubscribe --bind-to none -np $np "$D" "${common[@]}" model.init_from="$FIX" \
    checkpoint.every=4 parallel.dp=$dp parallel.tp=$tp parallel.pp=$pp parallel.zero=$zero \
    log.dir="$run" >"$run.log" 2>&1
  check "dp=$dp tp=$tp pp=$pp zero=$zero with init_from exits 0" test $? -eq 0
  python3 - "$TMP/one/metrics.jsonl" "$run/metrics.jsonl" <<'PY'
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["split"] == "train"}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in b)
print(f"   {len(b)} steps, worst relative loss difference {worst:.2e}")
sys.exit(0 if sorted(b) == [1, 2, 3, 4] and worst <= 1e-5 else 1)
PY
  check "dp=$dp tp=$tp pp=$pp zero=$zero: same losses as one process" test $? -eq 0
  "$H" compare "$run/checkpoints" "$TMP/out.safetensors" 1e-6
  check "dp=$dp tp=$tp pp=$pp zero=$zero: its checkpoint matches one process's export (1e-6)" \
    test $? -eq 0
done

# ZeRO-2 with small buckets (parallel.bucket_mb = 0.004, ~1000 floats): backward
# writes into a few bucket buffers, not a gradient buffer of the whole model
run="$TMP/dp2-z2-buckets"
mpirun --oversubscribe --bind-to none -np 2 "$D" "${common[@]}" model.init_from="$FIX" \
  checkpoint.every=0 parallel.dp=2 parallel.zero=2 parallel.bucket_mb=0.004 log.dir="$run" \
  >"$run.log" 2>&1
check "dp=2 zero=2 bucket_mb=0.004 exits 0" test $? -eq 0
python3 - "$TMP/one/metrics.jsonl" "$run/metrics.jsonl" "$run.log" <<'PY'
import json, re, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["split"] == "train"}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in b)
text = open(sys.argv[3]).read()
P = int(re.search(r"zero=2, (\d+) parameters", text).group(1))
rows = re.findall(r"^\s+\d+\s+\d+\s+(\d+)\s+\d+\s+\d+\s+(\d+)$", text, re.M)
print(f"   {len(b)} steps, worst relative loss difference {worst:.2e}; per rank grads shard + "
      f"bucket buffers {[f'{g} + {s}' for g, s in rows]} bytes; a whole gradient buffer {4 * P}")
ok = sorted(b) == [1, 2, 3, 4] and worst <= 1e-5 and len(rows) == 2
# backward's buffers under half the model's gradients, and with the shard
# less than one whole buffer (a flat buffer and the shard made 1.5x that)
sys.exit(0 if ok and all(int(s) < 0.5 * 4 * P and int(g) + int(s) < 4 * P for g, s in rows)
         else 1)
PY
check "... same losses; bucket buffers under half a whole gradient buffer" test $? -eq 0

# a resumed run takes the checkpoint, and does not read init_from at all
"$D" "${common[@]}" model.init_from="$TMP/absent" train.max_steps=6 \
  checkpoint.resume="$CK" log.dir="$TMP/resumed" >"$TMP/resumed.log" 2>&1
check "resuming ignores init_from" test $? -eq 0
check "... and says so" grep -q "init: resuming, so .* is not read" "$TMP/resumed.log"

# --- bad inputs: exit 2, one message naming the file and tensor ---
expect2() { # expect2 "description" "needle" "needle2" args...
  local d="$1" n1="$2" n2="$3"
  shift 3
  "$@" >"$TMP/bad.log" 2>&1
  local rc=$?
  if [ $rc -eq 2 ] && grep -qF -- "$n1" "$TMP/bad.log" && grep -qF -- "$n2" "$TMP/bad.log"; then
    ok "$d: $(grep -m1 error "$TMP/bad.log")"
  else
    bad "$d (exit $rc)"
    sed 's/^/     /' "$TMP/bad.log" | tail -5
  fi
}
head -c 3000 "$FIX/model.safetensors" >"$TMP/trunc.safetensors"
expect2 "truncated safetensors" "trunc.safetensors" "'transformer." \
  "$D" "${common[@]}" model.init_from="$TMP/trunc.safetensors" log.dir="$TMP/b1"
expect2 "model.n_embd=64 vs a 32-wide file" "'transformer.h.0.attn.c_attn.bias'" \
  "model.n_embd = 64" \
  "$D" "${common[@]}" model.n_embd=64 model.init_from="$FIX/model.safetensors" log.dir="$TMP/b2"
expect2 "model.n_embd=64 vs a 32-wide HF dir" "config.json: n_embd = 32" "model.n_embd = 64" \
  "$D" "${common[@]}" model.n_embd=64 model.init_from="$FIX" log.dir="$TMP/b3"
expect2 "model.n_layer=3: a missing tensor" "missing tensor 'transformer.h.2." \
  "model.safetensors" \
  "$D" "${common[@]}" model.n_layer=3 model.init_from="$FIX/model.safetensors" log.dir="$TMP/b4"
expect2 "init_from a file that is not there" "$TMP/absent.safetensors" "cannot open" \
  "$D" "${common[@]}" model.init_from="$TMP/absent.safetensors" log.dir="$TMP/b5"
expect2 "dp=2 zero=3, truncated file" "trunc.safetensors" "'transformer." \
  mpirun --oversubscribe --bind-to none -np 2 "$D" "${common[@]}" parallel.dp=2 \
  parallel.zero=3 model.init_from="$TMP/trunc.safetensors" log.dir="$TMP/b6"
# a FIFO once blocked dtrain forever (timeout: so a regression fails instead of hanging)
mkfifo "$TMP/fifo.safetensors"
expect2 "init_from a FIFO" "fifo.safetensors: not a regular file" "init_from" \
  timeout 60 "$D" "${common[@]}" model.init_from="$TMP/fifo.safetensors" log.dir="$TMP/b7"
mkdir -p "$TMP/stdir/model.safetensors" "$TMP/cfgdir/config.json"
cp "$FIX/model.safetensors" "$TMP/cfgdir/"
expect2 "HF dir whose model.safetensors is a directory" \
  "stdir/model.safetensors: is a directory" "init_from" \
  "$D" "${common[@]}" model.init_from="$TMP/stdir" log.dir="$TMP/b8"
expect2 "HF dir whose config.json is a directory" "cfgdir/config.json: is a directory" \
  "init_from" "$D" "${common[@]}" model.init_from="$TMP/cfgdir" log.dir="$TMP/b9"
# a NaN weight once trained into "step 1: loss is nan", naming neither file nor tensor
python3 - "$FIX/model.safetensors" "$TMP/nan.safetensors" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
at = 8 + n + json.loads(raw[8:8 + n])["transformer.ln_f.weight"]["data_offsets"][0]
open(sys.argv[2], "wb").write(raw[:at] + struct.pack("<f", float("nan")) + raw[at + 4:])
PY
expect2 "a NaN in ln_f.weight" "nan.safetensors: tensor 'transformer.ln_f.weight' holds nan" \
  "at element 0" "$D" "${common[@]}" model.init_from="$TMP/nan.safetensors" log.dir="$TMP/b10"
expect2 "dtrain-export of no checkpoint" "$TMP/absent" "not a directory" \
  "$X" "$TMP/absent" "$TMP/x.safetensors"
expect2 "dtrain-export without an output" "usage" "dtrain-export" "$X" "$CK"
check "no partial files left by failed exports" test ! -e "$TMP/x.safetensors"
"$X" --help >"$TMP/help.txt" 2>&1
check "dtrain-export --help exits 0 and explains --hf-dir" \
  grep -q -- "--hf-dir OUT_DIR" "$TMP/help.txt"

# --- transformers reads the export (where it is installed; not in CI) ---
if python3 -c "import torch, transformers, h5py" 2>/dev/null; then
  python3 - "$TMP/hf" "$TMP/data/val.h5" "$TMP/one/metrics.jsonl" <<'PY'
import json, sys, h5py, numpy as np, torch
from transformers import GPT2LMHeadModel
model, info = GPT2LMHeadModel.from_pretrained(sys.argv[1], output_loading_info=True)
bad = {k: v for k, v in info.items() if v}
tok = h5py.File(sys.argv[2])["tokens"][:].astype(np.int64)
n, T = min(64, (len(tok) - 1) // 16), 16
x = torch.tensor(np.stack([tok[i * T:i * T + T] for i in range(n)]))
y = torch.tensor(np.stack([tok[i * T + 1:i * T + T + 1] for i in range(n)]))
with torch.no_grad():
    logits = model.float().eval()(input_ids=x).logits
loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1)).item()
ours = [r["loss"] for r in map(json.loads, open(sys.argv[3])) if r["split"] == "val"][-1]
print(f"   from_pretrained: loading problems {bad or 'none'}; "
      f"val loss {loss:.7f}, dtrain's {ours:.7f}")
sys.exit(0 if not bad and abs(loss - ours) <= 1e-5 * abs(ours) else 1)
PY
  check "transformers loads the exported directory and gives dtrain's val loss" test $? -eq 0
else
  echo "   (transformers not importable: from_pretrained check skipped)"
fi
finish
