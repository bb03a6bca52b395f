/* xent.h: fused softmax + cross-entropy. Semantics are documented on the slots of
 * dt_kernels in kernels.h; kernels/cpu/xent.c is the fp32 reference and
 * kernels/cuda/xent.cu the fast path. */
#ifndef DT_KERNELS_XENT_H
#define DT_KERNELS_XENT_H

#include <math.h>

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void dt_cpu_softmax_xent(void *ctx, float *losses, float *dlogits, const void *logits, dt_dtype lt, const int32_t *targets, int n, int v, int ld, float dscale);
/* softmax_xent with dlogits of type dt (the CPU lm_head_backward writes bf16 ones) */
void dt_cpu_xent_rows(float *losses, void *dlogits, dt_dtype dt, const void *logits, dt_dtype lt, const int32_t *targets, int n, int v, int ld, float dscale);

void dt_cpu_softmax_xent_part_stats(void *ctx, float *stats, const void *logits, dt_dtype lt, const int32_t *targets, int n, int v, int ld, int v0);
void dt_cpu_softmax_xent_part(void *ctx, float *losses, void *dlogits, const void *logits, dt_dtype lt, const int32_t *targets, const float *stats, int parts, int n, int v, int ld, int v0, int vtotal, float dscale);
void dt_cuda_softmax_xent_part_stats(void *ctx, float *stats, const void *logits, dt_dtype lt, const int32_t *targets, int n, int v, int ld, int v0);
void dt_cuda_softmax_xent_part(void *ctx, float *losses, void *dlogits, const void *logits, dt_dtype lt, const int32_t *targets, const float *stats, int parts, int n, int v, int ld, int v0, int vtotal, float dscale);

/* Row i's logsumexp over the whole vocabulary and its target logit from
 * the parts' statistics (parts,n,3), combined in part order in double: one
 * definition for both backends, so their losses agree. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline void dt_xent_part_combine(const float *stats, int parts, int n, int i, double *lse,
                                        double *xt) {
  double m = -INFINITY, s = 0.0, x = 0.0;
  for (int r = 0; r < parts; r++) {
    const float mr = stats[3 * ((size_t)r * n + i)];
    m = mr > m || mr != mr ? mr : m;
  }
  for (int r = 0; r < parts; r++) {
    const float *st = stats + 3 * ((size_t)r * n + i);
    s += (double)st[1] * exp((double)st[0] - m);
    x += st[2];
  }
  *lse = m + log(s);
  *xt = x;
}

void dt_cpu_softmax_xent_smooth(void *ctx, float *losses, void *dlogits, const void *logits, dt_dtype lt, const int32_t *targets, int n, int v, float dscale, float smoothing);

void dt_cuda_softmax_xent(void *ctx, float *losses, float *dlogits, const void *logits, dt_dtype lt, const int32_t *targets, int n, int v, int ld, float dscale);
void dt_cuda_softmax_xent_smooth(void *ctx, float *losses, void *dlogits, const void *logits, dt_dtype lt, const int32_t *targets, int n, int v, float dscale, float smoothing);

#ifdef __cplusplus
}
#endif

#endif
