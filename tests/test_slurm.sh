#!/usr/bin/env bash
# The Slurm job scripts on a real one-node cluster started on this machine
# (munged, slurmctld, slurmd; installed with apt-get when missing): a 2-rank
# LeNet-5 job through launch/slurm/dtrain-1node.sbatch, once as the script
# chooses and once through its mpirun fallback, and a failing job.
# Needs root (skips otherwise); every daemon it starts is stopped on exit.
. "$(dirname "$0")/e2e_common.sh"
if [ "$(id -u)" != 0 ]; then
  echo "not root: cannot start Slurm daemons; skipping"
  exit 77
fi
need_mnist

# --- install -------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
   ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  echo "installing slurm-wlm munge"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >"$TMP/apt.log" 2>&1; then
    tail -20 "$TMP/apt.log"
    bad "apt-get install slurm-wlm munge"
    finish
  fi
fi

# --- daemons, stopped on any exit ------------------------------------------
S="$TMP/slurm"
mkdir -p "$S/state" "$S/spool"
export SLURM_CONF="$S/slurm.conf"
munged_pid=""
jobs_submitted=()
stop_pidfile() { # stop_pidfile FILE: TERM the daemon named there, KILL it after 10 s
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
}
cleanup() {
  if [ -f "$S/slurmctld.pid" ] && [ ${#jobs_submitted[@]} -gt 0 ]; then
    scancel "${jobs_submitted[@]}" 2>/dev/null
    for _ in $(seq 50); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  stop_pidfile "$S/slurmd.pid"
  stop_pidfile "$S/slurmctld.pid"
  if [ -n "$munged_pid" ]; then
    kill "$munged_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$munged_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP # so that cleanup runs when meson's timeout stops the test
die() { # die "what": print the daemons' last words and fail
  bad "$1"
  for f in "$S"/slurmctld.log "$S"/slurmd.log; do
    [ -f "$f" ] && { echo "--- tail $f"; tail -15 "$f"; }
  done
  finish
}

# munge: reuse a running munged, else start one on the standard key and socket.
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  echo "munged already running: using it"
else
  if [ ! -s /etc/munge/munge.key ]; then
    install -d -o munge -g munge -m 0700 /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- munged || die "munged starts"
  munged_pid=$(cat /run/munge/munged.pid 2>/dev/null)
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
check "munge credentials encode and decode" bash -c 'munge -n | unmunge >/dev/null'

host=$(hostname -s)
cpus=$(nproc)
[ "$cpus" -ge 2 ] || cpus=2 # the node takes 2 ranks even on a 1-CPU machine
mem=$(free -m | awk '/^Mem:/ {print $2}')
ports=$(python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
read -r ctld_port slurmd_port <<<"$ports"
sed -e "s#@DIR@#$S#g; s#@HOST@#$host#g; s#@CPUS@#$cpus#g; s#@MEM@#$mem#g" \
    -e "s#@CTLD_PORT@#$ctld_port#g; s#@SLURMD_PORT@#$slurmd_port#g" \
    "$SRC/tests/slurm/slurm.conf.in" >"$SLURM_CONF"
slurmctld -f "$SLURM_CONF" || die "slurmctld starts"
slurmd -f "$SLURM_CONF" -N "$host" || die "slurmd starts"
state=""
for _ in $(seq 60); do
  state=$(sinfo -h -N -n "$host" -o %t 2>/dev/null)
  [ "$state" = idle ] && break
  sleep 0.5
done
[ "$state" = idle ] || die "node $host idle within 30 s (state '$state')"
ok "one-node cluster up: node $host idle, $cpus CPUs"

# --- jobs ----------------------------------------------------------------------
# run_job NAME [ENV=VALUE ...] -- [sbatch script arguments]: submit the
# 1-node script, wait for it (until $deadline), leave its state and exit code
# in $TMP/NAME.state and $TMP/NAME.exit.
run_job() {
  local name="$1" envs=() id info
  shift
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  id=$(env "${envs[@]}" DTRAIN_BIN="$BUILD/dtrain" sbatch --parsable --chdir="$TMP" \
       --job-name="dtrain-$name" --time=5 --output="$TMP/$name.out" \
       "$SRC/launch/slurm/dtrain-1node.sbatch" "$@") || { echo none >"$TMP/$name.state"; echo none >"$TMP/$name.exit"; return; }
  id=${id%%;*}
  jobs_submitted+=("$id")
  while :; do
    info=$(scontrol show job "$id" -o 2>/dev/null)
    case "$info" in
      *JobState=PENDING* | *JobState=RUNNING* | *JobState=CONFIGURING* | *JobState=COMPLETING*) ;;
      *) break ;;
    esac
    if [ $SECONDS -ge $deadline ]; then
      echo "job $id ($name) still not finished at the test's deadline: cancelling it"
      scancel "$id"
      break
    fi
    sleep 0.5
  done
  grep -o 'JobState=[A-Z_]*' <<<"$info" | cut -d= -f2 >"$TMP/$name.state"
  grep -o ' ExitCode=[0-9:]*' <<<"$info" | cut -d= -f2 >"$TMP/$name.exit"
  echo "job $id ($name): $(cat "$TMP/$name.state") exit $(cat "$TMP/$name.exit")"
  [ "$(cat "$TMP/$name.state")" = COMPLETED ] || { echo "--- $name.out"; tail -20 "$TMP/$name.out"; }
}
# metrics_ok DIR: train rows every 5 steps up to 40, a test row, all losses finite
metrics_ok() {
  [ -f "$1/metrics.jsonl" ] || { echo "no $1/metrics.jsonl"; return 1; }
  python3 - "$1/metrics.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in rows if r.get("split") == "train"]
test = [r for r in rows if r.get("split") == "test"]
steps = [r["step"] for r in train]
losses = [r["loss"] for r in rows if "loss" in r]
print("train steps", steps, "test rows", len(test))
ok = steps and steps[-1] == 40 and len(test) >= 1 and all(math.isfinite(x) for x in losses)
sys.exit(0 if ok else 1)
PY
}
# no parallel.dp: the config's dp = 0 takes the job's 2 tasks
train=("$SRC/configs/lenet5-mnist.ini" data.dir="$TMP/mnist"
       data.train_limit=2000 data.test_limit=500 train.max_steps=40 train.batch_size=50
       log.every=5 train.device=cpu train.threads=1 log.tensorboard=false)

t0=$SECONDS
deadline=$((SECONDS + 300)) # all jobs together: about 5 s each here
run_job auto -- "${train[@]}" log.dir="$TMP/run"
check "dp=2 job COMPLETED" test "$(cat "$TMP/auto.state")" = COMPLETED
check "dp=2 job exit code 0:0" test "$(cat "$TMP/auto.exit")" = 0:0
grep -m1 "ranks via" "$TMP/auto.out"
check "job output says how the 2 ranks were launched" \
  grep -Eq "2 ranks via (srun --mpi=pmix|mpirun) \(" "$TMP/auto.out"
check "metrics.jsonl: train rows to step 40, a test row, finite losses" metrics_ok "$TMP/run"
check "the job's 2 tasks are 2 data-parallel ranks" grep -q "data parallel: 2 ranks" "$TMP/auto.out"
echo "auto job: $((SECONDS - t0)) s"

# The fallback every cluster without PMIx takes: mpirun inside the allocation.
run_job mpirun DTRAIN_LAUNCHER=mpirun -- "${train[@]}" log.dir="$TMP/run-mpirun"
check "mpirun fallback job COMPLETED, exit 0:0" \
  test "$(cat "$TMP/mpirun.state") $(cat "$TMP/mpirun.exit")" = "COMPLETED 0:0"
check "mpirun fallback job output says mpirun" grep -q "2 ranks via mpirun (" "$TMP/mpirun.out"
check "mpirun fallback metrics complete and finite" metrics_ok "$TMP/run-mpirun"
jsonl_field "$TMP/run/metrics.jsonl" train loss >"$TMP/auto.loss" 2>/dev/null
jsonl_field "$TMP/run-mpirun/metrics.jsonl" train loss >"$TMP/mpirun.loss" 2>/dev/null
check "same losses whichever launcher" \
  eval 'test -s "$TMP/auto.loss" && diff "$TMP/auto.loss" "$TMP/mpirun.loss"'

# A job whose ranks fail (dtrain rejects the key, exit 2) must be reported as failed.
run_job bad -- "${train[@]}" log.dir="$TMP/run-bad" train.no_such_key=1
check "failing job is FAILED with dtrain's exit code 2" eval \
  'test "$(cat "$TMP/bad.state") $(cat "$TMP/bad.exit")" = "FAILED 2:0" && grep -q no_such_key "$TMP/bad.out"'
finish
