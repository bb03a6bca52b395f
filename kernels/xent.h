/* xent.h: fused softmax + cross-entropy. Semantics are documented on the slots of
 * dt_kernels in kernels.h; kernels/cpu/xent.c is the fp32 reference and
 * kernels/cuda/xent.cu the fast path. */
#ifndef DT_KERNELS_XENT_H
#define DT_KERNELS_XENT_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void dt_cpu_softmax_xent(void *ctx, float *losses, float *dlogits, const void *logits, dt_dtype lt, const int32_t *targets, int n, int v, int ld, float dscale);
/* softmax_xent with dlogits of type dt (the CPU lm_head_backward writes bf16 ones) */
void dt_cpu_xent_rows(float *losses, void *dlogits, dt_dtype dt, const void *logits, dt_dtype lt, const int32_t *targets, int n, int v, int ld, float dscale);

void dt_cpu_softmax_xent_smooth(void *ctx, float *losses, void *dlogits, const void *logits, dt_dtype lt, const int32_t *targets, int n, int v, float dscale, float smoothing);

void dt_cuda_softmax_xent(void *ctx, float *losses, float *dlogits, const void *logits, dt_dtype lt, const int32_t *targets, int n, int v, int ld, float dscale);
void dt_cuda_softmax_xent_smooth(void *ctx, float *losses, void *dlogits, const void *logits, dt_dtype lt, const int32_t *targets, int n, int v, float dscale, float smoothing);

#ifdef __cplusplus
}
#endif

#endif
