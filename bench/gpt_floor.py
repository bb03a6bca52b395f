#!/usr/bin/env python3
"""The two numbers for one GPT training step (the device method: count the
FLOPs and the fewest bytes first), kernel by kernel, as dtrain runs it today
and as it would run with bf16 activations.

Usage: bench/gpt_floor.py [CONFIG[:MICRO_BATCH] ...] [--tflops F] [--gbps B]
  CONFIG   gpt-124m (default, micro-batch 16) or gpt-1.6b (default 8), T 1024
  --tflops sustained bf16 matmul rate, default 989 * 0.7 (H100 SXM dense
           peak at 70%: what cuBLAS reaches on these shapes is a lead to
           measure, as is the bandwidth)
  --gbps   sustained device-memory bandwidth, default 3000 (H100 SXM: 3350)

Bytes are each kernel's inputs read once and outputs written once, in the
layout the code uses (models/gpt.c, kernels/cuda/*.cu, with
train.precision=bf16, recompute none, classifier_chunk 2048, no dropout):
  now   activations, gradients of activations and GEMM outputs in fp32; a
        GEMM reads each activation operand after a conversion kernel has
        read it in fp32 (4 B) and written it in bf16 (2 B); weights come from
        the per-micro-batch bf16 copy; bias and GELU ride in the epilogue.
  bf16  the same kernels with every activation and activation gradient
        stored in bf16 (llm.c's layout): no conversions, half the bytes.
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


def step(L, C, NH, B, act):
    """[(kernel, flops, bytes)] for one micro-batch; act = bytes of a stored
    activation (4 now, 2 with bf16 activations)."""
    N = B * T                      # rows (tokens)
    conv = 6 if act == 4 else 0    # fp32 read + bf16 write before a GEMM
    g = 2                          # GEMM operand bytes (bf16)
    NC = N * C
    rows = []

    def add(name, flops, nbytes):
        rows.append((name, flops, nbytes))

    # per layer, forward
    fwd = [
        ("qkv GEMM (+conv, bias)", 2 * N * C * 3 * C, NC * (conv + g) + 3 * NC * act),
        ("flash attention fwd", 4 * B * T * T * C, 3 * NC * act + NC * act),
        ("attn proj GEMM (+conv, bias)", 2 * N * C * C, NC * (conv + g) + NC * act),
        ("residual + LayerNorm fwd x2", 0, 2 * 4 * NC * act),
        ("fc GEMM + GELU (+conv, aux)", 2 * N * C * 4 * C, NC * (conv + g) + 2 * 4 * NC * act),
        ("mlp proj GEMM (+conv, bias)", 2 * N * 4 * C * C, 4 * NC * (conv + g) + NC * act),
    ]
    # per layer, backward (dinp and dw GEMMs; db reads dout once more; a
    # weight gradient is read and written in fp32, 8 B a weight)
    wg = 8 * C * C
    bwd = [
        ("mlp proj dW, db (+conv)", 2 * N * 4 * C * C,
         NC * (conv + g) + 4 * NC * (conv + g) + NC * act + 4 * wg),
        # one call with the row above: dout is converted once for both
        ("mlp proj dX * GELU'", 2 * N * 4 * C * C, NC * g + 4 * NC * act + 4 * NC * act),
        ("fc dX, dW, db (+conv)", 2 * 2 * N * 4 * C * C,
         4 * NC * (conv + 2 * g) + NC * (conv + g) + NC * act + 4 * NC * act + 4 * wg),
        ("LayerNorm bwd x2", 0, 2 * 4 * NC * act),
        ("attn proj dX, dW, db (+conv)", 2 * 2 * N * C * C,
         NC * (conv + 2 * g) + NC * (conv + g) + NC * act + NC * act + wg),
        # D = rowsum(dO * O), then the dK/dV and the dQ kernels each read
        # q, k, v and dO; dq, dk, dv written
        ("flash attention bwd", 8 * B * T * T * C, (2 + 4 + 4) * NC * act + 3 * NC * act),
        ("qkv dX, dW, db (+conv)", 2 * 2 * N * C * 3 * C,
         3 * NC * (conv + 2 * g) + NC * (conv + g) + NC * act + 3 * NC * act + 3 * wg),
    ]
    for name, f, b in fwd + bwd:
        add(name + f" x{L}", L * f, L * b)
    # the classifier, chunk by chunk: logits out of the GEMM (fp32 now),
    # softmax/xent reads them and writes dlogits in bf16 (lm_head_backward),
    # which the dX and dW GEMMs read; every chunk reads the bf16 token table
    # twice and its fp32 gradient once, and writes the gradient
    NV, chunks = N * V, -(-N // CHUNK)
    xent_io = 4 + 2 if act == 4 else 2 + 2
    add("classifier GEMMs (logits, dX, dW)", 3 * 2 * N * C * V,
        NV * (act + 2 * g) + NC * (2 * (conv + g) + act) + chunks * 12 * V * C)
    add("softmax + cross-entropy + dlogits", 0, NV * xent_io)
    P = 12 * L * C * C + 13 * L * C + V * C + T * C + 2 * C   # parameters
    # roughly: token and position rows read and res[0] written; final
    # LayerNorm forward and backward; d res[0] read and scattered into the
    # embedding gradients (read and written in fp32)
    add("embeddings fwd + bwd, final LayerNorm", 0, NC * (4 + act) + 6 * NC * act + NC * (act + 8))
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
        print(f"{'kernel':44} {'GFLOP':>8} {'GB now':>8} {'GB bf16':>8} "
              f"{'ms now':>8} {'ms bf16':>8}")
        now, P, N = step(L, C, NH, B, 4)
        b16, _, _ = step(L, C, NH, B, 2)
        tot = [0.0] * 4
        for (k, f, bn), (_, _, bb) in zip(now, b16):
            tf = f / (tflops * 1e12) * 1e3
            mn, mb16 = tf + bn / (gbps * 1e9) * 1e3, tf + bb / (gbps * 1e9) * 1e3
            tot = [tot[0] + f, tot[1] + bn, tot[2] + bb, tot[3] + tf]
            print(f"{k:44} {f / 1e9:8.0f} {bn / 1e9:8.2f} {bb / 1e9:8.2f} {mn:8.2f} {mb16:8.2f}")
        ms_now = tot[3] + tot[1] / (gbps * 1e9) * 1e3
        ms_b16 = tot[3] + tot[2] / (gbps * 1e9) * 1e3
        print(f"{'total':44} {tot[0] / 1e9:8.0f} {tot[1] / 1e9:8.2f} {tot[2] / 1e9:8.2f} "
              f"{ms_now:8.2f} {ms_b16:8.2f}")
        print(f"# {P / 1e6:.1f}M parameters; matmul time {tot[3]:.1f} ms; predicted "
              f"{N / ms_now * 1e3:,.0f} tokens/s now, {N / ms_b16 * 1e3:,.0f} with bf16 "
              f"activations (upper bounds: no launch gaps, no overlap assumed)")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
