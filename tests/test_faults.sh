#!/usr/bin/env bash
# Faults: a rank that is killed, or that hangs, brings the whole job down
# within 60 s with a message naming a rank; nobody waits forever.
. "$(dirname "$0")/e2e_common.sh"
need_mnist
D="$BUILD/dtrain"
cfg="$SRC/configs/lenet5-mnist.ini"
export OMPI_MCA_mpi_yield_when_idle=1
common=(data.dir="$TMP/mnist" data.train_limit=4000 data.test_limit=200 train.device=cpu
        train.batch_size=40 train.max_steps=100000 log.every=1 log.tensorboard=false
        train.threads=1 checkpoint.every=0 parallel.dp=2)

# start_job NAME: runs a 2-rank job in the background, waits until it trains
start_job() {
  mpirun --oversubscribe --bind-to none -np 2 "$D" "$cfg" "${common[@]}" log.dir="$TMP/$1" \
    >"$TMP/$1.log" 2>&1 &
  JOB=$!
  for _ in $(seq 200); do
    [ "$(wc -l <"$TMP/$1/metrics.jsonl" 2>/dev/null || echo 0)" -ge 3 ] && break
    sleep 0.1
  done
  # the rank processes are mpirun's dtrain descendants; the second is rank 1
  RANKS=($(pgrep -f -- "log.dir=$TMP/$1" | while read -r p; do
    [ "$p" != "$JOB" ] && [ "$(cat /proc/$p/comm 2>/dev/null)" = dtrain ] && echo "$p"; done))
}

# wait_down SECONDS: sets RES to how the job ended ("exit N after T s", or
# "hung" if it did not end by itself within SECONDS)
wait_down() {
  local t0=$SECONDS
  while kill -0 $JOB 2>/dev/null; do
    if [ $((SECONDS - t0)) -ge "$1" ]; then kill -9 $JOB "${RANKS[@]}" 2>/dev/null; RES="hung"; return; fi
    sleep 0.5
  done
  wait $JOB
  RES="exit $? after $((SECONDS - t0)) s"
}

start_job killed
check "2 rank processes found" test ${#RANKS[@]} -eq 2
kill -9 "${RANKS[1]}"
wait_down 60
echo "   killed rank: $RES"
check "killing a rank brings the job down within 60 s" bash -c "[[ '$RES' == exit* && '$RES' != 'exit 0 '* ]]"
check "the message names the rank" grep -qiE "rank|process name" "$TMP/killed.log"

# a hung rank (stopped): the other one must not wait forever in a collective
export DTRAIN_COMM_TIMEOUT_S=10
start_job hung
kill -STOP "${RANKS[1]}"
wait_down 60
kill -9 "${RANKS[@]}" 2>/dev/null
echo "   stopped rank: $RES"
check "a hung rank brings the job down within 60 s" bash -c "[[ '$RES' == exit* && '$RES' != 'exit 0 '* ]]"
check "the timeout message names the rank" grep -qE "\[rank [01]\].*(timeout|timed out)" "$TMP/hung.log"
grep -E "timeout|timed out" "$TMP/hung.log" | head -2 | sed 's/^/   /'
finish
