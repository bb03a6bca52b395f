#!/usr/bin/env bash
# Sequence parallelism (parallel.sequence_parallel, GPT under tp > 1:
# the residual stream, LayerNorms and dropout split over the tp ranks by
# tokens, Megatron-style) against one process: tp = 2 and 4, dp = 2 x tp = 2
# at ZeRO-1 and ZeRO-3, tp = 2 x pp = 2, dropout with block recompute, MLP
# recompute and bf16 give the same per-step losses as one process with the
# same global batch (within 1e-5 relative, 1e-3 in bf16; 20 steps of 2
# accumulated micro-batches); each block's activations are exactly 1/tp of
# one process's (without sp, tp leaves the residual stream whole on every
# rank); a checkpoint saved under sp resumes as one process with the same
# losses; a sequence length tp does not divide is an error naming the keys.
. "$(dirname "$0")/e2e_common.sh"
need_wos
D="$BUILD/dtrain"
cfg="$SRC/configs/gpt-tiny.ini"
common=(data.dir="$TMP/wos" train.seq_len=32 train.batch_size=8 train.micro_batch_size=4
        data.test_limit=16 log.every=1 log.tensorboard=false train.threads=1 train.max_steps=20)
sp=parallel.sequence_parallel=true

check "one process" layout_run ref 1
check "tp=2 sp exits 0" layout_run t2 2 parallel.tp=2 $sp
check "tp=2 sp says so" grep -q "tensor parallel: 2 ranks over mpi, sequence parallel" \
  "$TMP/t2.log"
check "tp=2 sp matches one process" losses_close "$TMP/ref" "$TMP/t2"
check "tp=4 sp exits 0" layout_run t4 4 parallel.tp=4 $sp
check "tp=4 sp matches one process" losses_close "$TMP/ref" "$TMP/t4"
for zero in 1 3; do
  check "dp=2 tp=2 sp zero=$zero exits 0" layout_run d2t2z$zero 4 parallel.dp=2 parallel.tp=2 \
    parallel.zero=$zero $sp
  check "dp=2 tp=2 sp zero=$zero matches one process" losses_close "$TMP/ref" "$TMP/d2t2z$zero"
done
# the stages pass their rows of the residual stream, 1/tp of it
check "tp=2 pp=2 sp exits 0" layout_run t2p2 4 parallel.tp=2 parallel.pp=2 $sp
check "tp=2 pp=2 sp matches one process" losses_close "$TMP/ref" "$TMP/t2p2"
check "tp=2 sp recompute=mlp exits 0" layout_run t2mlp 2 parallel.tp=2 $sp train.recompute=mlp
check "tp=2 sp recompute=mlp matches one process" losses_close "$TMP/ref" "$TMP/t2mlp"

# dropout: each rank draws the masks of its own rows, as one process numbers them
check "one process, dropout 0.1, recompute=block" layout_run refdrop 1 model.dropout=0.1 \
  train.recompute=block
check "tp=2 sp dropout 0.1 recompute=block exits 0" layout_run t2drop 2 parallel.tp=2 $sp \
  model.dropout=0.1 train.recompute=block
check "tp=2 sp with dropout and recompute matches one process" \
  losses_close "$TMP/refdrop" "$TMP/t2drop"
check "one process, bf16" layout_run ref16 1 train.precision=bf16
check "tp=2 sp bf16 exits 0" layout_run t216 2 parallel.tp=2 $sp train.precision=bf16
check "tp=2 sp bf16 matches one process in bf16 (1e-3)" losses_close "$TMP/ref16" "$TMP/t216" 1e-3

# activations: what one block adds, from the start-up table of runs with 2
# and 4 blocks. Under sp every activation of a block is split, so a block
# of tp=2 holds exactly half of one process's; without sp it holds more
# (the residual stream, LayerNorms and their outputs stay whole).
steps20=("${common[@]}")
common=("${common[@]/train.max_steps=20/train.max_steps=1}")
for lay in "1 one" "2 tp" "2 sp"; do
  set -- $lay
  extra=()
  [ "$2" != one ] && extra+=(parallel.tp=2)
  [ "$2" = sp ] && extra+=($sp)
  for nl in 2 4; do
    check "activations: $2 with $nl blocks exits 0" layout_run "act-$2-$nl" "$1" \
      model.n_layer=$nl "${extra[@]}"
  done
done
common=("${steps20[@]}")
python3 - "$TMP" <<'PY'
import re, sys
def act(name):  # rank 0's activation bytes in the start-up table
    t = open(f"{sys.argv[1]}/{name}.log").read()
    m = re.search(r"rank +params +grads +optimizer +activations\n +0 +\d+ +\d+ +\d+ +(\d+)", t)
    return int(m.group(1))
one, tp, sp = ((act(f"act-{k}-4") - act(f"act-{k}-2")) // 2 for k in ("one", "tp", "sp"))
print(f"   bytes per block: one process {one}, tp=2 {tp}, tp=2 sp {sp}")
sys.exit(0 if 2 * sp == one and tp > sp else 1)
PY
check "a block's activations under tp=2 sp are exactly half one process's" test $? -eq 0

# log.profile counts each tensor-parallel collective (rank 0's table): per
# micro-batch of GPT-tiny's L = 2 blocks and one classifier chunk, tp alone
# all-reduces 4L+2 times (forward: the embedding and each c_proj; backward:
# each split layer's input gradient and the head's) and all-gathers the
# classifier's row statistics once; under sp the embedding and each c_proj
# reduce-scatter in forward, each split layer's input gradient in backward
# (4L+2), the all-gathers are the LayerNorm outputs (2L forward, 2L again in
# backward), the gradients entering c_proj (2L), ln_f's output, d res[0]
# and the statistics (6L+3), and the all-reduces the LayerNorm weights'
# gradients (2L+1). Two micro-batches a step.
check "tp=2 with log.profile exits 0" layout_run t2prof 2 parallel.tp=2 log.profile=true
check "tp=2 sp with log.profile exits 0" layout_run spprof 2 parallel.tp=2 $sp log.profile=true
python3 - "$TMP" <<'PY'
import re, sys
def calls(name):
    t = open(f"{sys.argv[1]}/{name}/profile.txt").read()
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r"^  comm (tp [a-z-]+) +([0-9.]+) ", t, re.M)}
L, M = 2, 2
want = {"t2prof": {"tp all-reduce": M * (4 * L + 2), "tp all-gather": M},
        "spprof": {"tp all-reduce": M * (2 * L + 1), "tp all-gather": M * (6 * L + 3),
                   "tp reduce-scatter": M * (4 * L + 2)}}
ok = True
for name, w in want.items():
    got = calls(name)
    print(f"   {name}: {got} (want {w})")
    ok = ok and got == w
sys.exit(0 if ok else 1)
PY
check "the profile counts each tensor-parallel collective of a step" test $? -eq 0

# checkpoints are layout-free: saved under sp, resumed as one process
check "tp=2 sp with a checkpoint at step 10" layout_run save 2 parallel.tp=2 $sp \
  checkpoint.every=10 checkpoint.keep=0
check "resume as one process exits 0" layout_run res1 1 \
  checkpoint.resume="$TMP/save/checkpoints/step_00000010"
check "resume as one process continues with the same losses" \
  losses_close "$TMP/save" "$TMP/res1" 1e-5 11

# a sequence length that does not split over the tp ranks
OMPI_MCA_mpi_yield_when_idle=1 mpirun --oversubscribe --bind-to none -np 2 "$D" "$cfg" \
  "${common[@]/train.seq_len=32/train.seq_len=31}" parallel.tp=2 $sp log.dir="$TMP/bad" \
  >"$TMP/bad.log" 2>&1
check "sp with seq_len 31 over tp=2 exits 2" test $? -eq 2
check "... naming the keys" grep -q "\[parallel\] sequence_parallel: \[train\] seq_len = 31 \
does not divide by \[parallel\] tp = 2" "$TMP/bad.log"
finish
