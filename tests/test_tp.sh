#!/usr/bin/env bash
# Tensor parallelism (Megatron-style, GPT: heads, MLP units and the
# vocabulary of the embedding and LM head split) against one process: tp = 2, 3 and 4,
# dp = 2 x tp = 2 at ZeRO 0-3, one data-parallel rank at ZeRO-3, dropout with
# block recompute, and bf16 give the same per-step losses as one process
# with the same global batch (within 1e-5 relative, 1e-3 in bf16, 20 steps
# of 2 accumulated micro-batches); a checkpoint saved by dp=2 tp=2 zero=2
# resumes as one process, as tp=4, as tp=2 with ZeRO-3 and as dp=2, with the
# same losses, each rank file holding its own parts; a damaged part
# attribute and layouts the model cannot take are errors naming the file,
# tensor or keys.
. "$(dirname "$0")/e2e_common.sh"
need_wos
D="$BUILD/dtrain"
cfg="$SRC/configs/gpt-tiny.ini"
export OMPI_MCA_mpi_yield_when_idle=1
MPIRUN=(mpirun --oversubscribe --bind-to none)
common=(data.dir="$TMP/wos" train.seq_len=32 train.batch_size=8 train.micro_batch_size=4
        data.test_limit=16 log.every=1 log.tensorboard=false train.threads=1 train.max_steps=20)

check "one process" layout_run ref 1
check "tp=2 exits 0" layout_run tp2 2 parallel.tp=2
check "tp=2 says so" grep -q "tensor parallel: 2 ranks over mpi" "$TMP/tp2.log"
python3 - "$TMP/tp2.log" <<'PY'
import re, sys
m = re.search(r"model: gpt, (\d+) parameters \(tp 2 splits .*: rank 0 holds (\d+)\)", open(sys.argv[1]).read())
print(f"   whole {m.group(1)}, rank 0 {m.group(2)}" if m else "   no model line")
# all but wpe and the LayerNorms (under 1%) is split in two
sys.exit(0 if m and int(m.group(2)) < 0.51 * int(m.group(1)) else 1)
PY
check "tp=2: rank 0 holds about half the parameters" test $? -eq 0
check "tp=2 matches one process" losses_close "$TMP/ref" "$TMP/tp2"
check "tp=4 exits 0" layout_run tp4 4 parallel.tp=4
check "tp=4 matches one process" losses_close "$TMP/ref" "$TMP/tp4"
# 3 parts of 50257 ids: the vocabulary's parts differ by a row
check "one process, 3 heads of 22" layout_run ref3 1 model.n_head=3 model.n_embd=66
check "tp=3 exits 0" layout_run tp3 3 parallel.tp=3 model.n_head=3 model.n_embd=66
check "tp=3 matches one process" losses_close "$TMP/ref3" "$TMP/tp3"
for zero in 0 1 2 3; do
  check "dp=2 tp=2 zero=$zero exits 0" layout_run d2t2z$zero 4 parallel.dp=2 parallel.tp=2 \
    parallel.zero=$zero
  check "dp=2 tp=2 zero=$zero matches one process" losses_close "$TMP/ref" "$TMP/d2t2z$zero"
done
# one data-parallel rank at ZeRO-3 gathers each layer's parts from itself,
# and its micro-batches' gradients must add up in place
check "tp=2 zero=3 (dp=1) exits 0" layout_run t2z3 2 parallel.tp=2 parallel.zero=3
check "tp=2 zero=3 (dp=1) matches one process" losses_close "$TMP/ref" "$TMP/t2z3"

# dropout: every part draws the masks of the whole activation alike
check "one process, dropout 0.1, recompute=block" layout_run refdrop 1 model.dropout=0.1 \
  train.recompute=block
check "tp=2 dropout 0.1 recompute=block exits 0" layout_run t2drop 2 parallel.tp=2 \
  model.dropout=0.1 train.recompute=block
check "tp=2 with dropout and recompute matches one process" \
  losses_close "$TMP/refdrop" "$TMP/t2drop"
check "one process, bf16" layout_run ref16 1 train.precision=bf16
check "tp=2 bf16 exits 0" layout_run t216 2 parallel.tp=2 train.precision=bf16
check "tp=2 bf16 matches one process in bf16 (1e-3)" losses_close "$TMP/ref16" "$TMP/t216" 1e-3

# checkpoints: saved by dp=2 tp=2 zero=2 at step 10, resumed in other layouts
check "dp=2 tp=2 zero=2 with a checkpoint at step 10" layout_run save 4 parallel.dp=2 \
  parallel.tp=2 parallel.zero=2 checkpoint.every=10 checkpoint.keep=0
CK="$TMP/save/checkpoints/step_00000010"
python3 - "$CK" <<'PY'
import sys, h5py
# rank = dp_rank * tp + tp_rank: ranks 0, 2 hold part 0 and 1, 3 part 1, each
# rank the ZeRO shard of its part's flat buffer
ok = True
for part, ranks in ((0, (0, 2)), (1, (1, 3))):
    parts, whole = {}, set()
    for r in ranks:
        def seen(name, obj):
            if isinstance(obj, h5py.Dataset):
                if "tp_part" in obj.attrs: parts[name] = tuple(int(x) for x in obj.attrs["tp_part"])
                else: whole.add(name)
        f = h5py.File(f"{sys.argv[1]}/rank{r:05d}.h5", "r")
        f["params"].visititems(seen)
    qkv = [p for n, p in parts.items() if n.endswith("attn.c_attn.weight")]
    # split: per block c_attn (w, b), attn.c_proj.w, c_fc (w, b), mlp.c_proj.w; and wte
    good = (len(parts) == 2 * 6 + 1 and all(p[:2] == (2, part) for p in parts.values())
            and len(qkv) == 2 and all(p[2] == 3 for p in qkv) and "wte.weight" in parts
            # a tensor held whole by every part is saved once, by part 0's ranks
            and len(whole) == (2 * 6 + 3 if part == 0 else 0))
    print(f"   part {part} (ranks {ranks}): {len(parts)} split tensors, {len(whole)} whole")
    ok = ok and good
sys.exit(0 if ok else 1)
PY
check "rank files hold their own parts (tp_part), whole tensors once" test $? -eq 0
for lay in "1 1 1 0" "4 1 4 1" "2 1 2 3" "2 2 1 0"; do
  set -- $lay
  name="res-dp$2-tp$3-z$4"
  check "resume as dp=$2 tp=$3 zero=$4 exits 0" layout_run "$name" "$1" parallel.dp=$2 \
    parallel.tp=$3 parallel.zero=$4 checkpoint.resume="$CK"
  check "resume as dp=$2 tp=$3 zero=$4 continues with the same losses" \
    losses_close "$TMP/save" "$TMP/$name" 1e-5 11
done
check "the resumed run names the layout it was saved in" \
  grep -q "saved by dp=2 tp=2 pp=1 zero=2 on 4 ranks" "$TMP/res-dp1-tp1-z0.log"

# a damaged part attribute is refused naming the tensor, not read as another part
cp -r "$TMP/save/checkpoints" "$TMP/damaged"
python3 - "$TMP/damaged/step_00000010" <<'PY'
import sys, h5py
for r in (1, 3):  # part 1's ranks: the file holding the tensor
    with h5py.File(f"{sys.argv[1]}/rank{r:05d}.h5", "r+") as f:
        if "params/h.0.attn.c_attn.weight" in f:
            f["params/h.0.attn.c_attn.weight"].attrs["tp_part"] = [2, 5, 3]
            print(f"   damaged rank{r:05d}.h5")
PY
"$D" "$cfg" "${common[@]}" checkpoint.resume="$TMP/damaged/step_00000010" \
  log.dir="$TMP/res-damaged" >"$TMP/res-damaged.log" 2>&1
check "a checkpoint with a damaged tp_part exits 2" test $? -eq 2
check "... naming the file and tensor" \
  grep -q "rank0000[13].h5: params/h.0.attn.c_attn.weight says it is part 5 of 2" \
  "$TMP/res-damaged.log"

# layouts the model cannot take
"${MPIRUN[@]}" -np 3 "$D" "$cfg" "${common[@]}" parallel.tp=3 log.dir="$TMP/bad3" \
  >"$TMP/bad3.log" 2>&1
check "tp=3 with n_head=4 exits 2" test $? -eq 2
check "... naming parallel.tp and model.n_head" \
  grep -q "\[parallel\] tp = 3 does not divide \[model\] n_head = 4" "$TMP/bad3.log"
if [ -d "$DATA/mnist" ]; then
  "$BUILD/dtrain-prep" mnist "$DATA/mnist" "$TMP/mnist" >/dev/null
  "${MPIRUN[@]}" -np 2 "$D" "$SRC/configs/lenet5-mnist.ini" data.dir="$TMP/mnist" \
    parallel.tp=2 train.threads=1 log.dir="$TMP/badl" >"$TMP/badl.log" 2>&1
  check "tp=2 on LeNet-5 exits 2" test $? -eq 2
  check "... saying tensor parallelism is built for gpt only" \
    grep -q "tensor parallelism is built for gpt only" "$TMP/badl.log"
fi
finish
