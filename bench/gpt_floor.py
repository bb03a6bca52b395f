#!/usr/bin/env python3
"""The two numbers for one GPT training step (the device method: count the
FLOPs and the fewest bytes first), kernel by kernel, in three layouts of
the activations: all fp32, as dtrain runs it today, and all bf16.

Usage: bench/gpt_floor.py [CONFIG[:MICRO_BATCH] ...] [--tflops F] [--gbps B]
  CONFIG   gpt-124m (default, micro-batch 16) or gpt-1.6b (default 8), T 1024
  --tflops sustained bf16 matmul rate, default 989 * 0.7 (H100 SXM dense
           peak at 70%: what cuBLAS reaches on these shapes is a lead to
           measure, as is the bandwidth)
  --gbps   sustained device-memory bandwidth, default 3000 (H100 SXM: 3350)

Bytes are each kernel's inputs read once and outputs written once, in the
layout the code uses (models/gpt.c, kernels/cuda/*.cu, with
train.precision=bf16, recompute none, classifier_chunk 2048, no dropout).
Every GEMM takes bf16 operands; an operand stored in fp32 is first read
(4 B) and written in bf16 (2 B) by a conversion kernel, one stored in bf16
is read as it is; weights come from the per-micro-batch bf16 copy; bias
and GELU ride in the epilogue. The layouts:
  fp32  every activation and activation gradient in fp32 (dtrain before
        the GEMM-only activations went to bf16)
  now   LayerNorm outputs, qkv, attention's output, the MLP hidden before
        and after GELU and its gradient, and the logits in bf16; the
        residual stream and the other gradients in fp32
  bf16  every activation and activation gradient in bf16 (llm.c's layout)
Matmul FLOPs are 2*M*N*K per GEMM (forward 1, backward 2), attention 4*T*T*C
per sequence and layer forward (causal masking not subtracted, as in the
MFU formula of bench/gpt.sh) and twice that backward. Elementwise FLOPs are
left out: every such kernel is bandwidth-bound. The predicted step is the
GEMM time plus the memory time (one stream, no overlap), so it is an upper
bound on tokens/s for the layout, not a measurement.
"""
import sys

CONFIGS = {"gpt-124m": (12, 768, 12, 16), "gpt-1.6b": (48, 1600, 32, 8)}
V, T, CHUNK = 50257, 1024, 2048
# bytes of a stored element: LayerNorm outputs, qkv and attention's
# output, MLP hidden (pre and post GELU), its gradient, logits, everything
# else (the residual stream and the other gradients)
LAYOUTS = {"fp32": dict(ln=4, a=4, h=4, dh=4, lg=4, o=4),
           "now": dict(ln=2, a=2, h=2, dh=2, lg=2, o=4),
           "bf16": dict(ln=2, a=2, h=2, dh=2, lg=2, o=2)}


def step(L, C, NH, B, lay):
    """[(kernel, flops, bytes)] for one micro-batch in layout lay"""
    N = B * T                      # rows (tokens)
    ln, a, h, dh, lg, o = (lay[k] for k in ("ln", "a", "h", "dh", "lg", "o"))

    def conv(a):                   # fp32 read + bf16 write before a GEMM
        return 6 if a == 4 else 0
    g = 2                          # GEMM operand bytes (bf16)
    NC = N * C
    rows = []

    def add(name, flops, nbytes):
        rows.append((name, flops, nbytes))

    # per layer, forward; a residual + LayerNorm reads a and b, writes the
    # sum and the normalised output
    fwd = [
        ("qkv GEMM (+conv, bias)", 2 * N * C * 3 * C, NC * (conv(ln) + g) + 3 * NC * a),
        ("flash attention fwd", 4 * B * T * T * C, 3 * NC * a + NC * a),
        ("attn proj GEMM (+conv, bias)", 2 * N * C * C, NC * (conv(a) + g) + NC * o),
        ("residual + LayerNorm fwd x2", 0, 2 * (3 * NC * o + NC * ln)),
        ("fc GEMM + GELU (+conv, aux)", 2 * N * C * 4 * C, NC * (conv(ln) + g) + 2 * 4 * NC * h),
        ("mlp proj GEMM (+conv, bias)", 2 * N * 4 * C * C, 4 * NC * (conv(h) + g) + NC * o),
    ]
    # per layer, backward (dinp and dw GEMMs; db reads dout once more; a
    # weight gradient is read and written in fp32, 8 B a weight)
    wg = 8 * C * C
    bwd = [
        ("mlp proj dW, db (+conv)", 2 * N * 4 * C * C,
         NC * (conv(o) + g) + 4 * NC * (conv(h) + g) + NC * o + 4 * wg),
        # one call with the row above: dout is converted once for both
        ("mlp proj dX * GELU'", 2 * N * 4 * C * C, NC * g + 4 * NC * h + 4 * NC * dh),
        ("fc dX, dW, db (+conv)", 2 * 2 * N * 4 * C * C,
         4 * NC * (conv(dh) + 2 * g) + NC * (conv(ln) + g) + NC * o + 4 * NC * dh + 4 * wg),
        ("LayerNorm bwd x2", 0, 2 * 4 * NC * o),
        ("attn proj dX, dW, db (+conv)", 2 * 2 * N * C * C,
         NC * (conv(o) + 2 * g) + NC * (conv(a) + g) + NC * o + NC * o + wg),
        # D = rowsum(dO * O), then the dK/dV and the dQ kernels each read
        # q, k, v and dO; dq, dk, dv written
        ("flash attention bwd", 8 * B * T * T * C,
         NC * (o + a) + 2 * NC * (3 * a + o) + 3 * NC * o),
        ("qkv dX, dW, db (+conv)", 2 * 2 * N * C * 3 * C,
         3 * NC * (conv(o) + 2 * g) + NC * (conv(ln) + g) + NC * o + 3 * NC * o + 3 * wg),
    ]
    for name, f, b in fwd + bwd:
        add(name + f" x{L}", L * f, L * b)
    # the classifier, chunk by chunk: logits out of the GEMM, softmax/xent
    # reads them and writes dlogits in bf16 (lm_head_backward; over bf16
    # logits in place), which the dX
    # and dW GEMMs read; every chunk reads the bf16 token table twice and its
    # fp32 gradient once, and writes the gradient
    NV, chunks = N * V, -(-N // CHUNK)
    add("classifier GEMMs (logits, dX, dW)", 3 * 2 * N * C * V,
        NV * (lg + 2 * g) + NC * (2 * (conv(ln) + g) + o) + chunks * 12 * V * C)
    add("softmax + cross-entropy + dlogits", 0, NV * (lg + 2))
    P = 12 * L * C * C + 13 * L * C + V * C + T * C + 2 * C   # parameters
    # roughly: token and position rows read and res[0] written; the final
    # LayerNorm forward (res read, ln_f written) and backward; d res[0] read
    # and scattered into the embedding gradients (read and written in fp32)
    add("embeddings fwd + bwd, final LayerNorm", 0,
        NC * (4 + o) + NC * (o + ln) + 4 * NC * o + NC * (o + 8))
    # AdamW on fp32 master weights: p, g, m, v read, p, m, v written; the
    # gradient buffer zeroed; the bf16 weight copy made once
    add("AdamW + zero grads + bf16 weight copy", 0, P * (7 * 4 + 4 + 6))
    return rows, P, N


def main(argv):
    tflops, gbps, cfgs = 989.0 * 0.7, 3000.0, []
    it = iter(argv)
    for a in it:
        if a == "--tflops":
            tflops = float(next(it))
        elif a == "--gbps":
            gbps = float(next(it))
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            name, _, mb = a.partition(":")
            if name not in CONFIGS:
                print(f"gpt_floor.py: unknown config {name} (gpt-124m, gpt-1.6b)", file=sys.stderr)
                return 2
            cfgs.append((name, int(mb) if mb else CONFIGS[name][3]))
    if not cfgs:
        cfgs = [("gpt-124m", 16)]
    for name, B in cfgs:
        L, C, NH, _ = CONFIGS[name]
        print(f"# {name}, micro-batch {B} x T {T}: {tflops:.0f} TFLOP/s for GEMMs and "
              f"attention, {gbps:.0f} GB/s")
        print(f"{'kernel':44} {'GFLOP':>8} " + " ".join(f"{'GB ' + k:>8}" for k in LAYOUTS) +
              " " + " ".join(f"{'ms ' + k:>8}" for k in LAYOUTS))
        runs = {k: step(L, C, NH, B, lay) for k, lay in LAYOUTS.items()}
        P, N = runs["now"][1], runs["now"][2]
        flops = gemm_ms = 0.0
        gb = {k: 0.0 for k in LAYOUTS}
        for i, (k, f, _) in enumerate(runs["now"][0]):
            tf = f / (tflops * 1e12) * 1e3
            flops, gemm_ms = flops + f, gemm_ms + tf
            b = {lk: runs[lk][0][i][2] for lk in LAYOUTS}
            for lk in LAYOUTS:
                gb[lk] += b[lk]
            print(f"{k:44} {f / 1e9:8.0f} " + " ".join(f"{b[lk] / 1e9:8.2f}" for lk in LAYOUTS) +
                  " " + " ".join(f"{tf + b[lk] / (gbps * 1e9) * 1e3:8.2f}" for lk in LAYOUTS))
        ms = {lk: gemm_ms + gb[lk] / (gbps * 1e9) * 1e3 for lk in LAYOUTS}
        print(f"{'total':44} {flops / 1e9:8.0f} " + " ".join(f"{gb[lk] / 1e9:8.2f}" for lk in LAYOUTS) +
              " " + " ".join(f"{ms[lk]:8.2f}" for lk in LAYOUTS))
        print(f"# {P / 1e6:.1f}M parameters; matmul time {gemm_ms:.1f} ms; predicted tokens/s "
              + ", ".join(f"{lk} {N / ms[lk] * 1e3:,.0f}" for lk in LAYOUTS)
              + " (upper bounds: no launch gaps, no overlap assumed)")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
