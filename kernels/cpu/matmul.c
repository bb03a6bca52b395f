/* matmul.c: fp32 reference for the linear layer; every GEMM goes through
 * OpenBLAS so the CPU path is also fast enough to train LeNet-5. Under
 * DT_PREC_BF16 (dt_cpu_ctx.matmul_bf16) each operand is first rounded to
 * bf16 into scratch, which is the GPU's bf16 tensor-core GEMM up to the
 * order of the fp32 sums. */
#include <cblas.h>
#include <stdlib.h>

#include "../act.h"
#include "../matmul.h"
#include "../xent.h"
#include "dt.h"

void dt_cpu_ctx_free(dt_cpu_ctx *c) {
  if (!c) return;
  free(c->tmp[0]), free(c->tmp[1]), free(c->tmp[2]), free(c->w16);
  free(c);
}

/* a bf16 output is made in the backend's scratch, and only under bf16 */
static void need_bf16_ctx(void *ctx) {
  if (!ctx || !((dt_cpu_ctx *)ctx)->matmul_bf16)
    dt_fatal("dtrain", "a bf16 output needs DT_PREC_BF16", __FILE__, __LINE__, __func__, "");
}

/* scratch slot `slot`, grown to n floats */
static float *scratch(dt_cpu_ctx *c, int slot, size_t n) {
  if (c->cap[slot] < n) {
    free(c->tmp[slot]);
    c->tmp[slot] = dt_malloc(n * sizeof(float));
    c->cap[slot] = n;
  }
  return c->tmp[slot];
}

/* A GEMM operand x (n) of type t as the GEMM reads it: fp32 mode takes x
 * itself; bf16 mode takes a bf16 tensor's values as they are and rounds an
 * fp32 one into scratch slot `slot`, or, when x lies in the parameters given
 * to set_weights, reads its place in their bf16 copy. */
static const float *operand(void *ctx, int slot, const void *x, dt_dtype t, size_t n) {
  dt_cpu_ctx *c = ctx;
  if (!c || !c->matmul_bf16) {
    if (t == DT_BF16)
      dt_fatal("dtrain", "a bf16 GEMM operand needs DT_PREC_BF16", __FILE__, __LINE__, __func__,
               "operand");
    return x;
  }
  const uintptr_t a = (uintptr_t)x, w0 = (uintptr_t)c->wsrc;
  if (t == DT_F32 && c->wsrc && a >= w0 && (a - w0) / sizeof(float) + n <= c->wn) {
    if (!c->w16_fresh) { /* a weight */
      if (c->w16_cap < c->wn) {
        free(c->w16);
        c->w16 = dt_malloc(c->wn * sizeof(float));
        c->w16_cap = c->wn;
      }
      for (size_t i = 0; i < c->wn; i++) c->w16[i] = dt_bf16_round(c->wsrc[i]);
      c->w16_fresh = 1;
    }
    return c->w16 + ((const float *)x - c->wsrc);
  }
  float *o = scratch(c, slot, n);
  if (t == DT_BF16)
    for (size_t i = 0; i < n; i++) o[i] = dt_bf16_value(((const uint16_t *)x)[i]);
  else
    for (size_t i = 0; i < n; i++) o[i] = dt_bf16_round(((const float *)x)[i]);
  return o;
}

/* the fp32 linear layer (out is fp32, rows ldo apart) */
static void linear_f32(void *ctx, float *out, int ldo, const void *inp, dt_dtype it,
                       const float *w, const float *b, int n, int c, int oc) {
  float beta = 0.0f;
  if (b) {
    for (int i = 0; i < n; i++)
      for (int o = 0; o < oc; o++) out[(size_t)i * ldo + o] = b[o];
    beta = 1.0f;
  } else if (c <= 0) {
    for (int i = 0; i < n; i++)
      for (int o = 0; o < oc; o++) out[(size_t)i * ldo + o] = 0.0f;
  }
  if (c <= 0) return;
  const float *x = operand(ctx, 0, inp, it, (size_t)n * c);
  w = operand(ctx, 1, w, DT_F32, (size_t)oc * c);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, oc, c, 1.0f, x, c, w, c, beta, out,
              ldo);
}

/* out (N,OC) = inp (N,C) @ w (OC,C)^T + b (OC); b may be NULL. A bf16 out
 * takes the sum from fp32 scratch (slot 2), the bias rounded to bf16. */
void dt_cpu_linear_forward(void *ctx, void *out, dt_dtype ot, const void *inp, dt_dtype it,
                           const float *w, const float *b, int n, int c, int oc) {
  if (n <= 0 || oc <= 0) return;
  if (ot == DT_F32) {
    linear_f32(ctx, out, oc, inp, it, w, b, n, c, oc);
    return;
  }
  need_bf16_ctx(ctx);
  const size_t total = (size_t)n * oc;
  float *s = scratch(ctx, 2, total);
  linear_f32(ctx, s, oc, inp, it, w, NULL, n, c, oc);
  for (size_t i = 0; i < total; i++)
    ((uint16_t *)out)[i] = dt_bf16_bits(b ? s[i] + dt_bf16_round(b[i % (size_t)oc]) : s[i]);
}

/* dinp (N,C) = dout (N,OC) @ w (OC,C)            [=, skipped if dinp NULL]
 * dw (OC,C) += dout^T @ inp; db (OC) += sum_n dout [+=, db may be NULL];
 * dout's rows ldo apart */
static void linear_backward_ld(void *ctx, float *dinp, float *dw, float *db, const void *dout,
                               dt_dtype dt, int ldo, const void *inp, dt_dtype it,
                               const float *w, int n, int c, int oc) {
  if (n <= 0 || c <= 0) return;
  /* bf16: dout rounded once (slot 0) for both GEMMs; db sums it unrounded */
  const float *dout_r = oc > 0 && (dinp || dw)
                            ? operand(ctx, 0, dout, dt, (size_t)(n - 1) * ldo + oc)
                            : NULL;
  if (dinp) {
    if (oc > 0)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, c, oc, 1.0f, dout_r, ldo,
                  operand(ctx, 1, w, DT_F32, (size_t)oc * c), c, 0.0f, dinp, c);
    else
      for (size_t i = 0; i < (size_t)n * c; i++) dinp[i] = 0.0f;
  }
  if (oc <= 0) return;
  if (dw)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, oc, c, n, 1.0f, dout_r, ldo,
                operand(ctx, 1, inp, it, (size_t)n * c), c, 1.0f, dw, c);
  if (db)
    for (int i = 0; i < n; i++)
      for (int o = 0; o < oc; o++) db[o] += dt_load(dout, dt, (size_t)i * ldo + o);
}

void dt_cpu_linear_backward(void *ctx, float *dinp, float *dw, float *db, const void *dout,
                            dt_dtype dt, const void *inp, dt_dtype it, const float *w, int n,
                            int c, int oc) {
  linear_backward_ld(ctx, dinp, dw, db, dout, dt, oc, inp, it, w, n, c, oc);
}

/* out = act(inp @ w^T + b), pre = the GEMM's output when asked for: the two
 * kernels one after the other, which is what the GPU fuses. A bf16 output
 * takes the sum from fp32 scratch (slot 2), with the bias rounded to bf16. */
void dt_cpu_linear_act_forward(void *ctx, dt_act act, void *out, void *pre, dt_dtype ot,
                               const void *inp, dt_dtype it, const float *w, const float *b,
                               int n, int c, int oc) {
  if (n <= 0 || oc <= 0) return;
  if (ot == DT_F32) {
    float *h = pre ? pre : out;
    linear_f32(ctx, h, oc, inp, it, w, b, n, c, oc);
    dt_cpu_act_forward(ctx, act, out, h, (size_t)n * oc);
    return;
  }
  need_bf16_ctx(ctx);
  const size_t total = (size_t)n * oc;
  float *s = scratch(ctx, 2, total);
  linear_f32(ctx, s, oc, inp, it, w, NULL, n, c, oc);
  for (size_t i = 0; i < total; i++) {
    if (b) s[i] += dt_bf16_round(b[i % (size_t)oc]);
    if (pre) ((uint16_t *)pre)[i] = dt_bf16_bits(s[i]);
  }
  dt_cpu_act_forward(ctx, act, s, s, total);
  for (size_t i = 0; i < total; i++) ((uint16_t *)out)[i] = dt_bf16_bits(s[i]);
}

/* linear_backward with dinp = (dout @ w) * act'(pre); a bf16 dpre takes the
 * product from fp32 scratch (slot 2) and pre's values from slot 1 */
void dt_cpu_linear_backward_act(void *ctx, dt_act act, void *dpre, float *dw, float *db,
                                const float *dout, const void *inp, const float *w,
                                const void *pre, dt_dtype t, int n, int c, int oc) {
  if (t == DT_F32 || n <= 0 || c <= 0) {
    dt_cpu_linear_backward(ctx, dpre, dw, db, dout, DT_F32, inp, t, w, n, c, oc);
    if (n > 0 && c > 0) dt_cpu_act_backward(ctx, act, dpre, dpre, pre, (size_t)n * c);
    return;
  }
  need_bf16_ctx(ctx);
  const size_t total = (size_t)n * c;
  float *s = scratch(ctx, 2, total);
  dt_cpu_linear_backward(ctx, s, dw, db, dout, DT_F32, inp, t, w, n, c, oc);
  float *p = scratch(ctx, 1, total);
  for (size_t i = 0; i < total; i++) p[i] = dt_bf16_value(((const uint16_t *)pre)[i]);
  dt_cpu_act_backward(ctx, act, s, s, p, total);
  for (size_t i = 0; i < total; i++) ((uint16_t *)dpre)[i] = dt_bf16_bits(s[i]);
}

/* logits rows ld apart: the fp32 product, rounded once into bf16 ones */
void dt_cpu_lm_head_forward(void *ctx, void *logits, dt_dtype lt, int ld, const void *x,
                            dt_dtype xt, const float *w, int n, int c, int v) {
  if (n <= 0 || v <= 0) return;
  if (lt == DT_F32) {
    linear_f32(ctx, logits, ld, x, xt, w, NULL, n, c, v);
    return;
  }
  need_bf16_ctx(ctx);
  float *s = scratch(ctx, 2, (size_t)n * v);
  linear_f32(ctx, s, v, x, xt, w, NULL, n, c, v);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < v; j++)
      ((uint16_t *)logits)[(size_t)i * ld + j] = dt_bf16_bits(s[(size_t)i * v + j]);
}

/* softmax_xent into scratch (bf16 dlogits under bf16, as the GPU's), then
 * linear_backward from it */
void dt_cpu_lm_head_backward(void *ctx, float *losses, float *dx, float *dw, void *dl,
                             const void *logits, dt_dtype lt, const int32_t *targets,
                             const void *x, dt_dtype xt, const float *w, int n, int c, int v,
                             int ld, float dscale) {
  const dt_dtype dt = ctx && ((dt_cpu_ctx *)ctx)->matmul_bf16 ? DT_BF16 : DT_F32;
  dt_cpu_xent_rows(losses, dl, dt, logits, lt, targets, n, v, ld, dscale);
  linear_backward_ld(ctx, dx, dw, NULL, dl, dt, ld, x, xt, w, n, c, v);
}
