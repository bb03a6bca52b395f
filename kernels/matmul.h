/* matmul.h: linear layers (GEMM). Semantics are documented on the slots of
 * dt_kernels in kernels.h; kernels/cpu/matmul.c is the fp32 reference and
 * kernels/cuda/matmul.cu the fast path. */
#ifndef DT_KERNELS_MATMUL_H
#define DT_KERNELS_MATMUL_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void dt_cpu_linear_forward(void *ctx, void *out, dt_dtype ot, const void *inp, dt_dtype it, const float *w, const float *b, int n, int c, int oc);
void dt_cpu_linear_backward(void *ctx, float *dinp, float *dw, float *db, const void *dout, dt_dtype dt, const void *inp, dt_dtype it, const float *w, int n, int c, int oc);
void dt_cpu_linear_act_forward(void *ctx, dt_act act, void *out, void *pre, dt_dtype ot, const void *inp, dt_dtype it, const float *w, const float *b, int n, int c, int oc);
void dt_cpu_lm_head_forward(void *ctx, void *logits, dt_dtype lt, int ld, const void *x, dt_dtype xt, const float *w, int n, int c, int v);
void dt_cpu_lm_head_backward(void *ctx, float *losses, float *dx, float *dw, void *scratch, const void *logits, dt_dtype lt, const int32_t *targets, const void *x, dt_dtype xt, const float *w, int n, int c, int v, int ld, float dscale);
void dt_cpu_linear_backward_act(void *ctx, dt_act act, void *dpre, float *dw, float *db, const float *dout, const void *inp, const float *w, const void *pre, dt_dtype t, int n, int c, int oc);

/* The CPU backend's kernel context: the linear layers' GEMM precision and
 * the scratch that holds bf16-rounded operands. A NULL ctx is fp32. */
typedef struct dt_cpu_ctx {
  int matmul_bf16;
  float *tmp[3];
  size_t cap[3]; /* floats in tmp[i] */
  /* set_weights: the parameters [wsrc, wsrc+wn) and their bf16 rounding
   * w16, made on first use (w16_fresh) */
  const float *wsrc;
  size_t wn;
  float *w16;
  size_t w16_cap;
  int w16_fresh;
} dt_cpu_ctx;
void dt_cpu_ctx_free(dt_cpu_ctx *c);

void dt_cuda_linear_forward(void *ctx, void *out, dt_dtype ot, const void *inp, dt_dtype it, const float *w, const float *b, int n, int c, int oc);
void dt_cuda_linear_backward(void *ctx, float *dinp, float *dw, float *db, const void *dout, dt_dtype dt, const void *inp, dt_dtype it, const float *w, int n, int c, int oc);
void dt_cuda_linear_act_forward(void *ctx, dt_act act, void *out, void *pre, dt_dtype ot, const void *inp, dt_dtype it, const float *w, const float *b, int n, int c, int oc);
void dt_cuda_lm_head_forward(void *ctx, void *logits, dt_dtype lt, int ld, const void *x, dt_dtype xt, const float *w, int n, int c, int v);
void dt_cuda_lm_head_backward(void *ctx, float *losses, float *dx, float *dw, void *scratch, const void *logits, dt_dtype lt, const int32_t *targets, const void *x, dt_dtype xt, const float *w, int n, int c, int v, int ld, float dscale);
void dt_cuda_linear_backward_act(void *ctx, dt_act act, void *dpre, float *dw, float *db, const float *dout, const void *inp, const float *w, const void *pre, dt_dtype t, int n, int c, int oc);

#ifdef __cplusplus
}
#endif

#endif
