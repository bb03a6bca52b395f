#!/usr/bin/env python3
"""tb_read.py RUN_DIR: reads RUN_DIR's event files with TensorBoard's own
reader and checks them against RUN_DIR/metrics.jsonl: every JSON value must
appear as tag "<split>/<key>" (array entries "<split>/<key>/<i>") at the same
step with the same float32 value (null: a non-finite value), and TensorBoard
must hold nothing more. Exit 0 on agreement, 1 on a mismatch, 77 without
tensorboard installed."""
import json
import math
import os
import struct
import sys
from collections import defaultdict


def f32_bits(x):
    return struct.pack("<f", x)


def expected_scalars(path):
    """{tag: [(step, value or None), ...]} from metrics.jsonl."""
    want = defaultdict(list)
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            row = json.loads(line)
            split, step = row.pop("split"), row.pop("step")
            for key, v in row.items():
                items = [(f"{split}/{key}/{i}", x) for i, x in enumerate(v)] \
                    if isinstance(v, list) else [(f"{split}/{key}", v)]
                for tag, x in items:
                    if x is not None and not isinstance(x, (int, float)):
                        raise ValueError(f"{path}:{lineno}: {tag} is not a number: {x!r}")
                    want[tag].append((step, x))
    return want


def same(json_value, tb_value):
    """float32 values agree exactly; a double (lr, accuracy) printed with 9
    digits and then rounded to float32 may land one unit in the last place
    away from the float32 TensorBoard stored, so allow that one ulp."""
    if json_value is None:
        return not math.isfinite(tb_value)
    if not math.isfinite(tb_value):
        return False
    a = struct.unpack("<i", f32_bits(float(json_value)))[0]
    b = struct.unpack("<i", f32_bits(tb_value))[0]
    return abs(a - b) <= 1


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    run_dir = sys.argv[1]
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as e:
        print(f"tb_read: skipped, tensorboard not installed ({e})")
        return 77

    # scalars: 0 keeps every event instead of a reservoir sample.
    ea = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    ea.Reload()
    got = {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}
    for tag in sorted(got):
        print(tag, " ".join(f"{s}:{v:.9g}" for s, v in got[tag]))

    want = expected_scalars(os.path.join(run_dir, "metrics.jsonl"))
    bad = 0
    for tag in sorted(set(want) | set(got)):
        w, g = want.get(tag, []), list(got.get(tag, []))
        for step, x in w:
            match = next((i for i, (s, v) in enumerate(g) if s == step and same(x, v)), None)
            if match is None:
                print(f"MISMATCH {tag} step {step}: metrics.jsonl has {x}, "
                      f"TensorBoard has {[v for s, v in g if s == step] or 'nothing'}")
                bad += 1
            else:
                del g[match]
        for step, v in g:
            print(f"MISMATCH {tag} step {step}: TensorBoard has {v}, metrics.jsonl has nothing")
            bad += 1
    n = sum(len(w) for w in want.values())
    if n == 0:
        print("MISMATCH metrics.jsonl holds no values")
        bad += 1
    print(f"tb_read: {n} values in {len(want)} tags, {bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
