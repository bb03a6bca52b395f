# bench/common.sh: what the bench scripts share (sourced). Uses the caller's
# $build, $here, $tmp (with wos/ shards in it), $dev and $mb.

# bench_setup: checks $build/dtrain and $DTRAIN_DATA/wos (exit 2 naming the
# calling script), makes $tmp (removed at exit) and the WOS token shards in
# $tmp/wos
bench_setup() {
  local me
  me=$(basename "$0")
  [ -x "$build/dtrain" ] || { echo "$me: no $build/dtrain (build first)" >&2; exit 2; }
  [ -d "$DTRAIN_DATA/wos" ] || { echo "$me: no \$DTRAIN_DATA/wos ($DTRAIN_DATA)" >&2; exit 2; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$build/dtrain-prep" wos "$DTRAIN_DATA/wos" "$tmp/wos" >"$tmp/prep.log" 2>&1 ||
    { cat "$tmp/prep.log" >&2; exit 1; }
}

# bench_gpt NAME NP OVERRIDES...: one training run of configs/gpt-tiny.ini
# into $tmp/NAME (console in $tmp/NAME.log), as one process or NP ranks under
# mpirun, on $dev in micro-batches of $mb sequences, one OpenBLAS thread per
# rank on the CPU, no checkpoints; OVERRIDES set the rest (model, batch, steps)
bench_gpt() {
  local name=$1 np=$2
  shift 2
  local cmd=("$build/dtrain" "$here/configs/gpt-tiny.ini" data.dir="$tmp/wos"
             train.device="$dev" train.micro_batch_size="$mb" train.epochs=1000 log.every=1
             log.dir="$tmp/$name" log.tensorboard=false checkpoint.every=0
             data.test_limit="$mb" "$@")
  [ "$dev" = cpu ] && cmd+=(train.threads=1)
  if [ "$np" = 1 ]; then "${cmd[@]}" >"$tmp/$name.log" 2>&1
  else mpirun --oversubscribe --bind-to none -np "$np" "${cmd[@]}" >"$tmp/$name.log" 2>&1; fi ||
    { echo "$(basename "$0"): $name failed:" >&2; tail -5 "$tmp/$name.log" >&2; return 1; }
}
