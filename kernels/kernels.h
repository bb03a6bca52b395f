/* kernels.h: the kernel table every backend fills. Models call kernels only
 * through this table (be->k->name(be->ctx, ...)), so they never #ifdef on
 * the device. All pointers are device pointers of the backend that owns the
 * table; all tensors are row-major and contiguous; images are NCHW.
 * Convention (from llm.c): activation gradients overwrite (=), parameter
 * gradients accumulate (+=). `n`/`count` are elements, `bytes` are bytes. */
#ifndef DT_KERNELS_H
#define DT_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* bfloat16 as a 16-bit pattern: the nearest to f with ties to even, as the
 * GPU's __float2bfloat16_rn; NaN stays a (quiet) NaN, values past the
 * largest bf16 round to infinity. The one rounding of the CPU kernels, the
 * bf16 collectives (parallel/comm.c) and the CUDA emulation (tests/emu). */
static inline uint16_t dt_bf16_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u); /* ties go to the even upper half */
  return (uint16_t)(u >> 16);
}
static inline float dt_bf16_value(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
/* f rounded to bf16, as a float */
static inline float dt_bf16_round(float f) { return dt_bf16_value(dt_bf16_bits(f)); }

/* Element types, one enum for the whole code: the collectives
 * (parallel/comm.h) take all of them. Kernels take DT_F32 or DT_BF16 where
 * an activation tensor may be stored either way, given next to each such
 * pointer (those pointers are void *): bf16 is bit patterns, uint16_t on
 * the CPU and __nv_bfloat16 on the GPU. Under DT_PREC_BF16 a GEMM reads a
 * DT_BF16 operand as it is where it rounds an fp32 one first, so an operand
 * kept in bf16 gives the same product bits in half the memory and without
 * the rounding pass. A DT_BF16 GEMM operand requires DT_PREC_BF16 (anything
 * else is a fatal error). */
typedef enum dt_dtype {
  DT_F32 = 0,
  DT_BF16 = 1,  /* uint16 bit patterns; reductions accumulate in fp32 */
  DT_F16 = 2,   /* IEEE half as uint16; reductions accumulate in fp32 */
  DT_I32 = 3,
  DT_I64 = 4,
  DT_U8 = 5,
  DT_DTYPE_COUNT
} dt_dtype;

/* bytes per element (0 for a value outside the enum) */
static inline size_t dt_dtype_size(dt_dtype t) {
  static const unsigned char size[DT_DTYPE_COUNT] = {4, 2, 2, 4, 8, 1};
  return (unsigned)t < DT_DTYPE_COUNT ? size[t] : 0;
}

/* element i of a tensor of type t, as a float; and its store (rounded to
 * nearest even for bf16) */
static inline float dt_load(const void *p, dt_dtype t, size_t i) {
  return t == DT_BF16 ? dt_bf16_value(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}
static inline void dt_store(void *p, dt_dtype t, size_t i, float v) {
  if (t == DT_BF16)
    ((uint16_t *)p)[i] = dt_bf16_bits(v);
  else
    ((float *)p)[i] = v;
}

/* the address of element i of a tensor of type t */
static inline void *dt_elem(const void *p, dt_dtype t, size_t i) {
  return (char *)p + i * dt_dtype_size(t);
}

typedef struct dt_conv2d_shape {
  int n, c, h, w;      /* input (N,C,H,W) */
  int oc, kh, kw;      /* weight (OC,C,KH,KW), bias (OC) */
  int stride, pad;     /* same in both spatial dims; zero padding */
  int oh, ow;          /* output (N,OC,OH,OW), filled by dt_conv2d_shape_init */
} dt_conv2d_shape;

typedef struct dt_pool2d_shape {
  int n, c, h, w;      /* input (N,C,H,W) */
  int k, stride;       /* square window, no padding */
  int oh, ow;          /* output (N,C,OH,OW), filled by dt_pool2d_shape_init */
} dt_pool2d_shape;

static inline void dt_conv2d_shape_init(dt_conv2d_shape *s) {
  s->oh = (s->h + 2 * s->pad - s->kh) / s->stride + 1;
  s->ow = (s->w + 2 * s->pad - s->kw) / s->stride + 1;
}
static inline void dt_pool2d_shape_init(dt_pool2d_shape *s) {
  s->oh = (s->h - s->k) / s->stride + 1;
  s->ow = (s->w - s->k) / s->stride + 1;
}

typedef enum dt_act {
  DT_ACT_RELU = 0,
  DT_ACT_TANH = 1,
  DT_ACT_GELU = 2,      /* exact: x * Phi(x), with erf */
  DT_ACT_GELU_TANH = 3, /* GPT-2's tanh approximation */
  DT_ACT_COUNT
} dt_act;

typedef struct dt_kernels {
  /* ---- matmul (kernels/matmul.h) ----
   * out (N,OC, type ot) = inp (N,C, type it) @ w(OC,C)^T + b(OC); b may be
   * NULL. A bf16 out is the fp32 sum rounded once, with the bias read in
   * bf16 (as linear_act_forward's). */
  void (*linear_forward)(void *ctx, void *out, dt_dtype ot, const void *inp, dt_dtype it,
                         const float *w, const float *b, int n, int c, int oc);
  /* dinp (N,C) = dout (N,OC) @ w (OC,C)          [=, skipped if dinp NULL]
   * dw (OC,C) += dout^T @ inp; db (OC) += sum_n dout  [+=, db may be NULL]
   * dout is of type dt, inp of type it. dw may be NULL too (then inp is not
   * read), and w is not read when dinp is NULL: activation recompute calls
   * the two halves apart. */
  void (*linear_backward)(void *ctx, float *dinp, float *dw, float *db, const void *dout,
                          dt_dtype dt, const void *inp, dt_dtype it, const float *w, int n,
                          int c, int oc);
  /* A linear layer and the activation after it (an MLP's first half):
   * out (N,OC) = act(pre), pre = inp @ w^T + b; pre (N,OC) is written too
   * unless NULL (it is what act_backward and linear_backward_act need),
   * and must not alias out. out and pre are of type ot, inp of type it.
   * With ot = DT_BF16 the sum is kept in fp32 and rounded once into each
   * output (pre = bf16(s), out = bf16(act(s)), s = inp @ w^T + bf16(b)), and
   * the bias is read in bf16 too: cuBLASLt's epilogue takes the bias in
   * the output's type. The GPU fuses bias and GELU (tanh) into the GEMM (a
   * cuBLASLt epilogue); other activations run as a separate pass. */
  void (*linear_act_forward)(void *ctx, dt_act act, void *out, void *pre, dt_dtype ot,
                             const void *inp, dt_dtype it, const float *w, const float *b, int n,
                             int c, int oc);
  /* linear_backward of the layer an activation feeds (an MLP's second
   * half), with d input taken on through the activation:
   * dpre (N,C) = (dout (N,OC) @ w (OC,C)) * act'(pre (N,C))  [=];
   * dw += dout^T @ inp, db += sum_n dout as in linear_backward (each may be
   * NULL; inp is not read without dw). dout is fp32; dpre, inp and pre are
   * of type t (what linear_act_forward wrote), dpre rounded once from the
   * fp32 product. dpre must not alias dout, inp or pre. The GPU fuses act'
   * for GELU (tanh) into the GEMM's epilogue. */
  void (*linear_backward_act)(void *ctx, dt_act act, void *dpre, float *dw, float *db,
                              const float *dout, const void *inp, const float *w,
                              const void *pre, dt_dtype t, int n, int c, int oc);
  /* A language model's output layer: logits (N,V) of type lt = x (N,C, type
   * xt) @ w (V,C)^T, no bias, with rows ld >= V elements apart; columns
   * [V, ld) are not written. A row stride that is a multiple of 64 keeps
   * every row of bf16 logits 128-byte aligned: GPT-2's V = 50257 would
   * leave the tensor cores' GEMMs unaligned rows (Megatron's and llm.c's
   * padded vocabulary, without padding the parameter). A bf16 lt is the
   * fp32 sum rounded once. */
  void (*lm_head_forward)(void *ctx, void *logits, dt_dtype lt, int ld, const void *x,
                          dt_dtype xt, const float *w, int n, int c, int v);
  /* Its backward, from those logits (rows ld apart): softmax_xent's losses
   * (N, skipped if NULL) and dlogits = (softmax - onehot(t)) * dscale, then
   * linear_backward's dx (N,C) = dlogits @ w [=] and dw (V,C) += dlogits^T
   * @ x (either may be NULL). logits are of type lt, x of type xt. dlogits
   * go to scratch, rows ld apart with columns [V, ld) set to 0: fp32, or
   * under DT_PREC_BF16 bf16 values, the form the GEMMs read (the same bits
   * as rounding fp32 dlogits, without the fp32 copy and the pass that
   * converts it). scratch may be the logits themselves when both are bf16
   * (dlogits overwrite them); otherwise it must not alias them. */
  void (*lm_head_backward)(void *ctx, float *losses, float *dx, float *dw, void *scratch,
                           const void *logits, dt_dtype lt, const int32_t *targets,
                           const void *x, dt_dtype xt, const float *w, int n, int c, int v,
                           int ld, float dscale);

  /* ---- conv (kernels/conv.h) ----
   * Bytes of scratch the two calls below need for shape s (may be 0). */
  size_t (*conv2d_workspace)(void *ctx, const dt_conv2d_shape *s);
  /* out (N,OC,OH,OW) = conv(inp, w) + b; b may be NULL */
  void (*conv2d_forward)(void *ctx, float *out, const float *inp, const float *w,
                         const float *b, const dt_conv2d_shape *s, void *ws);
  /* dinp (N,C,H,W) = ...  [=, skipped if NULL]; dw += ...; db += ... */
  void (*conv2d_backward)(void *ctx, float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, const dt_conv2d_shape *s,
                          void *ws);

  /* ---- pool (kernels/pool.h) ----
   * Max pooling; ties go to the first element of the window in row-major
   * order and the first NaN wins (NaNs propagate), on every backend, so
   * gradients agree exactly. */
  void (*maxpool2d_forward)(void *ctx, float *out, const float *inp, const dt_pool2d_shape *s);
  /* dinp (N,C,H,W) = scatter of dout to each window's argmax [=] */
  void (*maxpool2d_backward)(void *ctx, float *dinp, const float *dout, const float *inp,
                             const dt_pool2d_shape *s);
  void (*avgpool2d_forward)(void *ctx, float *out, const float *inp, const dt_pool2d_shape *s);
  void (*avgpool2d_backward)(void *ctx, float *dinp, const float *dout, const dt_pool2d_shape *s);

  /* ---- act (kernels/act.h) ---- out (n) = f(inp); in place allowed. */
  void (*act_forward)(void *ctx, dt_act act, float *out, const float *inp, size_t n);
  /* dinp (n) = dout * f'(inp) [=]; inp is the pre-activation input. */
  void (*act_backward)(void *ctx, dt_act act, float *dinp, const float *dout, const float *inp,
                       size_t n);

  /* ---- softmax / cross-entropy (kernels/xent.h) ----
   * logits (N,V) of type lt, rows ld >= V elements apart (lm_head_forward's
   * layout; ld = V when packed), targets (N) in [0,V). losses (N) = -log
   * softmax(logits)[t] (skipped if NULL; a target outside [0,V) gives a NaN
   * loss). If dlogits is non-NULL: dlogits (N,V), rows ld apart, =
   * (softmax - onehot(t)) * dscale [=], and 0 in columns [V, ld) (dlogits
   * may alias fp32 logits). Fused so no probability tensor is kept. */
  void (*softmax_xent)(void *ctx, float *losses, float *dlogits, const void *logits,
                       dt_dtype lt, const int32_t *targets, int n, int v, int ld,
                       float dscale);
  /* Label-smoothed cross-entropy with an ignore index, as PyTorch's
   * CrossEntropyLoss(label_smoothing=eps, ignore_index=<any negative>, reduction='none'):
   * losses (N) = (1-eps) * (lse - logit[t]) + eps * (lse - mean_j logit[j])
   * (skipped if NULL); dlogits (N,V) = (softmax - (1-eps)*onehot(t) - eps/V) * dscale [=]
   * (skipped if NULL; may alias logits). A target < 0 is ignored: loss 0 and
   * a zero dlogits row; a target >= V gives a NaN loss. eps = 0 is plain
   * cross-entropy. logits and dlogits are of type lt: bf16 dlogits are the
   * fp32 values rounded once, the bits a bf16 GEMM would read from fp32
   * ones, so a bf16 model keeps one (N,V) bf16 buffer for both. */
  void (*softmax_xent_smooth)(void *ctx, float *losses, void *dlogits, const void *logits,
                              dt_dtype lt, const int32_t *targets, int n, int v, float dscale,
                              float smoothing);
  /* Vocabulary-parallel cross-entropy (tensor parallelism: each rank has
   * the logits of vocabulary ids [v0, v0+V)), in two calls around an
   * all-gather of the rows' statistics. softmax_xent_part_stats: stats
   * (N,3) = (max over the part's logits, sum of exp(logit - that max),
   * the target's logit, or 0 when another part holds it); logits (N,V) of
   * type lt, rows ld apart. softmax_xent_part: from every part's stats,
   * (parts,N,3) in part order, losses (N) = logsumexp over the whole
   * vocabulary - logit[t] (skipped if NULL; NaN for a target outside
   * [0, vtotal)), the same on every part, and dlogits (N,V) of type lt,
   * rows ld apart, = (softmax - onehot(t)) * dscale on this part's columns
   * [=] and 0 in [V, ld) (skipped if NULL; may alias logits). */
  void (*softmax_xent_part_stats)(void *ctx, float *stats, const void *logits, dt_dtype lt,
                                  const int32_t *targets, int n, int v, int ld, int v0);
  void (*softmax_xent_part)(void *ctx, float *losses, void *dlogits, const void *logits,
                            dt_dtype lt, const int32_t *targets, const float *stats, int parts,
                            int n, int v, int ld, int v0, int vtotal, float dscale);

  /* ---- optimizer (kernels/optimizer.h) ----
   * Every step first forms g' = g * grad_scale (clipping, loss scaling).
   * SGD with momentum (PyTorch semantics): g' += wd*p; buf = mom*buf + g'
   * (buf = g' when first != 0); p -= lr * (nesterov ? g' + mom*buf : buf).
   * buf may be NULL when momentum is 0. */
  void (*sgd_step)(void *ctx, float *p, const float *g, float *buf, size_t n, float lr,
                   float momentum, float wd, int nesterov, int first, float grad_scale);
  /* Adam / AdamW, t = step number starting at 1 (for bias correction).
   * decoupled = 0: Adam, g' += wd*p (L2); decoupled = 1: AdamW, p -= lr*wd*p.
   * m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
   * p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps). */
  void (*adam_step)(void *ctx, float *p, const float *g, float *m, float *v, size_t n,
                    float lr, float b1, float b2, float eps, float wd, int decoupled, int t,
                    float grad_scale);

  /* ---- reduce / elementwise (kernels/reduce.h) ----
   * out[0] (a device float) = sum x^2, accumulated in at least fp32 pairwise
   * or in fp64 so the result does not depend on n's size badly. */
  void (*sumsq)(void *ctx, float *out, const float *x, size_t n);
  /* x (n) *= a */
  void (*scale)(void *ctx, float *x, float a, size_t n);
  /* y (n) += a * x, as one fused multiply-add per element on every backend */
  void (*axpy)(void *ctx, float *y, float a, const float *x, size_t n);
  /* dst (n, bf16 bit patterns) = src rounded to the nearest bf16, ties to
   * even (dt_bf16_bits) [=]; gradients on their way to a bf16 reduction */
  void (*to_bf16)(void *ctx, uint16_t *dst, const float *src, size_t n);
  /* y (n) = x (bf16 bit patterns) widened, exactly [=]; or y += x, one fp32
   * add per element, when accumulate [+=] */
  void (*from_bf16)(void *ctx, float *y, const uint16_t *x, size_t n, int accumulate);
  /* out (N,row) = (src[idx[i]*row + j] / 255 - mean) / std, for the image
   * batch gather: src is (M,row) uint8, idx (N) int32 device indices. */
  void (*gather_u8_normalize)(void *ctx, float *out, const uint8_t *src, const int32_t *idx,
                              int n, int row, float mean, float std);

  /* ---- norm (kernels/norm.h) ----
   * Layer normalisation over the last dim (row statistics summed in double):
   * out (N,C) = (inp - mean) * rstd * weight (C) + bias (C), with
   * mean (N) and rstd (N) = 1/sqrt(var + eps) (biased variance) saved for
   * the backward; mean and rstd may be NULL when no backward follows. out
   * is of type ot: computed in fp32 and rounded once. */
  void (*layernorm_forward)(void *ctx, void *out, dt_dtype ot, float *mean, float *rstd,
                            const float *inp, const float *weight, const float *bias, int n,
                            int c, float eps);
  /* dinp (N,C) += d/dinp       [+=: the residual stream's gradient, as in llm.c;
   *                              zero it first where nothing accumulates]
   * dweight (C) += sum_n dout * xhat; dbias (C) += sum_n dout      [+=]
   * dout (N,C), inp (N,C) the forward's input, mean/rstd (N) its saved stats. */
  void (*layernorm_backward)(void *ctx, float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp, const float *weight,
                             const float *mean, const float *rstd, int n, int c);
  /* Fused residual add + layer norm: res_out (N,C) = a + b (one fp32 add),
   * then out, mean, rstd = layernorm_forward(res_out). res_out may alias a or
   * b (the residual stream updated in place); out must not alias anything.
   * Its backward is layernorm_backward with inp = res_out, whose dinp is the
   * gradient of both a and b. */
  void (*residual_layernorm_forward)(void *ctx, float *res_out, void *out, dt_dtype ot,
                                     float *mean, float *rstd, const float *a, const float *b,
                                     const float *weight, const float *bias, int n, int c,
                                     float eps);

  /* ---- attention (kernels/attention.h) ----
   * Multi-head scaled dot-product attention that keeps no (Tq,Tk) matrix:
   * the forward saves only lse, the per-row logsumexp of the scaled scores,
   * and the backward recomputes the probabilities from it (flash-attention).
   * q is (B,Tq,NH,HS), k and v are (B,Tk,NH,HS), each row of NH*HS at a
   * stride of q_stride (q) or kv_stride (k, v) elements between consecutive
   * tokens: NH*HS for separate tensors, 3*NH*HS for views into a fused
   * (B,T,3,NH,HS) qkv buffer, 2*NH*HS for a fused (B,Tk,2,NH,HS) kv one.
   * Key j is visible to query i of batch b iff j < key_len[b] (key_len (B)
   * int32 or NULL = all Tk keys; keys at or past key_len are padding) and,
   * when causal, j <= i + (Tk - Tq) (bottom-right aligned: j <= i for
   * self-attention). scores = scale * q.k (scale is usually 1/sqrt(HS)).
   * out (B,Tq,NH,HS) contiguous [=]; lse (B,NH,Tq) [=]. A query that sees no
   * key at all (key_len[b] == 0, or causal with Tq > Tk) gets out = 0 and
   * lse = -inf, and later zero gradients, never NaN. Limits: HS <= 1024,
   * B and NH <= 65535 (the CUDA grid; a larger size is a fatal error).
   * q, k, v and out are of type t (a bf16 out is the fp32 result rounded
   * once); the rest is fp32. */
  void (*attention_forward)(void *ctx, void *out, float *lse, const void *q, const void *k,
                            const void *v, dt_dtype t, int B, int Tq, int Tk, int NH, int HS,
                            int q_stride, int kv_stride, int causal, const int32_t *key_len,
                            float scale);
  /* dq (strided like q), dk and dv (strided like k, v) [=, overwritten; only
   * the NH*HS elements of each row are written, so they may be views into a
   * fused dqkv buffer]; dout (B,Tq,NH,HS) contiguous; out and lse are the
   * forward's. Padding keys get dk = dv = 0, masked queries dq = 0. q, k,
   * v and out are of type t; dq, dk, dv, dout and lse are fp32. */
  void (*attention_backward)(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                             const void *q, const void *k, const void *v, const void *out,
                             dt_dtype t, const float *lse, int B, int Tq, int Tk, int NH, int HS,
                             int q_stride, int kv_stride, int causal, const int32_t *key_len,
                             float scale);

  /* ---- embedding (kernels/embedding.h) ----
   * out (B,T,C) = wte[tokens[b,t]] + wpe[t] [=]; tokens (B,T) int32,
   * wte (V,C), wpe (maxT,C) with T <= maxT, or NULL (no learned positions).
   * A token outside [0,V) gives a NaN row and adds nothing to dwte in the
   * backward; it is never read out of bounds. */
  void (*embedding_forward)(void *ctx, float *out, const int32_t *tokens, const float *wte,
                            const float *wpe, int B, int T, int C, int V);
  /* Bytes of scratch embedding_backward needs for these sizes (may be 0). */
  size_t (*embedding_backward_workspace)(void *ctx, int B, int T, int V);
  /* dwte (V,C) += sum over (b,t) with tokens[b,t] == v of dout[b,t]  [+=]
   * dwpe (maxT,C): rows t < T += sum_b dout[b,t]                      [+=]
   * Either may be NULL (skipped). ws: embedding_backward_workspace bytes
   * from the backend's alloc (NULL if that is 0). Deterministic: every
   * backend adds each row's terms in (b,t) order with no float atomics, so
   * the bits are the same run after run, and the same on CPU and CUDA. */
  void (*embedding_backward)(void *ctx, float *dwte, float *dwpe, const float *dout,
                             const int32_t *tokens, int B, int T, int C, int V, void *ws);
  /* The same for a vocabulary-parallel part (tensor parallelism): wte (V,C)
   * and dwte hold vocabulary rows [v0, v0+V); a token outside them gives a
   * zero row (plus wpe[t] when wpe is given) and adds nothing to dwte, so
   * the parts' outputs, wpe passed to one of them, sum to
   * embedding_forward's bits. dwpe as embedding_backward's; ws is
   * embedding_backward_workspace(B, T, V) bytes. */
  void (*embedding_forward_part)(void *ctx, float *out, const int32_t *tokens, const float *wte,
                                 const float *wpe, int B, int T, int C, int v0, int V);
  void (*embedding_backward_part)(void *ctx, float *dwte, float *dwpe, const float *dout,
                                  const int32_t *tokens, int B, int T, int C, int v0, int V,
                                  void *ws);

  /* ---- dropout (kernels/dropout.h) ----
   * Inverted dropout, p in [0,1): out (n) = keep(i) ? inp * 1/(1-p) : 0 [=].
   * keep(i) is a counter-based hash of (seed, offset + i) (dt_dropout_keep),
   * so no mask is stored, every backend drops the same elements bit for bit
   * and a recompute of the forward reproduces the mask. offset lets a caller
   * give each site and sample its own disjoint counters. p = 0 is the
   * identity. In place (out == inp) is allowed. */
  void (*dropout_forward)(void *ctx, float *out, const float *inp, size_t n, float p,
                          uint64_t seed, uint64_t offset);
  /* dinp (n) = keep(i) ? dout * 1/(1-p) : 0 [=], the same mask for the same
   * (seed, offset); dinp may alias dout. */
  void (*dropout_backward)(void *ctx, float *dinp, const float *dout, size_t n, float p,
                           uint64_t seed, uint64_t offset);
  /* The same dropout over rows (rows, width) whose counters are stride apart:
   * y[r*width + j] = keep(offset + r*stride + j) ? x * 1/(1-p) : 0 [=], for
   * forward and backward alike (the map is its own derivative). A padded
   * batch (n, t, D) at stride maxT*D gives each (sequence, position) the same
   * counters whatever t this batch is padded to. width <= stride; y may
   * alias x. */
  void (*dropout_rows)(void *ctx, float *y, const float *x, int rows, size_t width,
                       size_t stride, float p, uint64_t seed, uint64_t offset);
} dt_kernels;

/* The number of function slots in dt_kernels, for the test that checks that
 * no backend leaves one empty. */
#define DT_KERNELS_SLOTS (sizeof(dt_kernels) / sizeof(void (*)(void)))

extern const dt_kernels dt_cpu_kernels;
#ifdef DT_HAVE_CUDA
extern const dt_kernels dt_cuda_kernels;
#endif

#ifdef __cplusplus
}
#endif

#endif
