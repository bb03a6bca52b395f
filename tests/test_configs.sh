#!/usr/bin/env bash
# Every shipped config parses against the schema (no unknown, duplicate or
# out-of-range key): `dtrain --print-config` exits 0 for each of configs/*.ini.
. "$(dirname "$0")/e2e_common.sh"
n=0
for f in "$SRC"/configs/*.ini; do
  n=$((n + 1))
  "$BUILD/dtrain" --print-config "$f" >"$TMP/out.txt" 2>&1
  rc=$?
  check "$(basename "$f") parses" test $rc -eq 0
  [ $rc -eq 0 ] || tail -2 "$TMP/out.txt"
done
check "found the configs ($n)" test "$n" -ge 10
finish
