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
  free(c->tmp[0]), free(c->tmp[1]), free(c->w16);
  free(c);
}

/* x (n) itself in fp32 mode, else its bf16 rounding in scratch slot `slot` */
static const float *operand(void *ctx, int slot, const float *x, size_t n) {
  dt_cpu_ctx *c = ctx;
  if (!c || !c->matmul_bf16) return x;
  const uintptr_t a = (uintptr_t)x, w0 = (uintptr_t)c->wsrc;
  if (c->wsrc && a >= w0 && (a - w0) / sizeof(float) + n <= c->wn) { /* a weight */
    if (!c->w16_fresh) {
      if (c->w16_cap < c->wn) {
        free(c->w16);
        c->w16 = dt_malloc(c->wn * sizeof(float));
        c->w16_cap = c->wn;
      }
      for (size_t i = 0; i < c->wn; i++) c->w16[i] = dt_bf16_round(c->wsrc[i]);
      c->w16_fresh = 1;
    }
    return c->w16 + (x - c->wsrc);
  }
  if (c->cap[slot] < n) {
    free(c->tmp[slot]);
    c->tmp[slot] = dt_malloc(n * sizeof(float));
    c->cap[slot] = n;
  }
  float *t = c->tmp[slot];
  for (size_t i = 0; i < n; i++) t[i] = dt_bf16_round(x[i]);
  return t;
}

/* out (N,OC) = inp (N,C) @ w (OC,C)^T + b (OC); b may be NULL */
void dt_cpu_linear_forward(void *ctx, float *out, const float *inp, const float *w,
                           const float *b, int n, int c, int oc) {
  if (n <= 0 || oc <= 0) return;
  float beta = 0.0f;
  if (b) {
    for (int i = 0; i < n; i++)
      for (int o = 0; o < oc; o++) out[(size_t)i * oc + o] = b[o];
    beta = 1.0f;
  } else if (c <= 0) {
    for (size_t i = 0; i < (size_t)n * oc; i++) out[i] = 0.0f;
  }
  if (c <= 0) return;
  inp = operand(ctx, 0, inp, (size_t)n * c);
  w = operand(ctx, 1, w, (size_t)oc * c);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, oc, c, 1.0f, inp, c, w, c, beta,
              out, oc);
}

/* dinp (N,C) = dout (N,OC) @ w (OC,C)            [=, skipped if dinp NULL]
 * dw (OC,C) += dout^T @ inp; db (OC) += sum_n dout [+=, db may be NULL] */
void dt_cpu_linear_backward(void *ctx, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int n, int c, int oc) {
  if (n <= 0 || c <= 0) return;
  /* bf16: dout rounded once (slot 0) for both GEMMs; db sums it unrounded */
  const float *dout_r = oc > 0 && (dinp || dw) ? operand(ctx, 0, dout, (size_t)n * oc) : dout;
  if (dinp) {
    if (oc > 0)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, c, oc, 1.0f, dout_r, oc,
                  operand(ctx, 1, w, (size_t)oc * c), c, 0.0f, dinp, c);
    else
      for (size_t i = 0; i < (size_t)n * c; i++) dinp[i] = 0.0f;
  }
  if (oc <= 0) return;
  if (dw)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, oc, c, n, 1.0f, dout_r, oc,
                operand(ctx, 1, inp, (size_t)n * c), c, 1.0f, dw, c);
  if (db)
    for (int i = 0; i < n; i++)
      for (int o = 0; o < oc; o++) db[o] += dout[(size_t)i * oc + o];
}

/* out = act(inp @ w^T + b), pre = the GEMM's output when asked for: the two
 * kernels one after the other, which is what the GPU fuses. */
void dt_cpu_linear_act_forward(void *ctx, dt_act act, float *out, float *pre, const float *inp,
                               const float *w, const float *b, int n, int c, int oc) {
  float *h = pre ? pre : out;
  dt_cpu_linear_forward(ctx, h, inp, w, b, n, c, oc);
  if (n > 0 && oc > 0) dt_cpu_act_forward(ctx, act, out, h, (size_t)n * oc);
}

/* linear_backward with dinp = (dout @ w) * act'(pre) */
void dt_cpu_linear_backward_act(void *ctx, dt_act act, float *dpre, float *dw, float *db,
                                const float *dout, const float *inp, const float *w,
                                const float *pre, int n, int c, int oc) {
  dt_cpu_linear_backward(ctx, dpre, dw, db, dout, inp, w, n, c, oc);
  if (n > 0 && c > 0) dt_cpu_act_backward(ctx, act, dpre, dpre, pre, (size_t)n * c);
}

/* softmax_xent into scratch, then linear_backward from it */
void dt_cpu_lm_head_backward(void *ctx, float *losses, float *dx, float *dw, float *scratch,
                             const float *logits, const int32_t *targets, const float *x,
                             const float *w, int n, int c, int v, float dscale) {
  dt_cpu_softmax_xent(ctx, losses, scratch, logits, targets, n, v, dscale);
  dt_cpu_linear_backward(ctx, dx, dw, NULL, scratch, x, w, n, c, v);
}
