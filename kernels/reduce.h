/* reduce.h: reductions and small elementwise ops. Semantics are documented on the slots of
 * dt_kernels in kernels.h; kernels/cpu/reduce.c is the fp32 reference and
 * kernels/cuda/reduce.cu the fast path. */
#ifndef DT_KERNELS_REDUCE_H
#define DT_KERNELS_REDUCE_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void dt_cpu_sumsq(void *ctx, float *out, const float *x, size_t n);
void dt_cpu_scale(void *ctx, float *x, float a, size_t n);
void dt_cpu_axpy(void *ctx, float *y, float a, const float *x, size_t n);
void dt_cpu_to_bf16(void *ctx, uint16_t *dst, const float *src, size_t n);
void dt_cpu_from_bf16(void *ctx, float *y, const uint16_t *x, size_t n, int accumulate);
void dt_cpu_gather_u8_normalize(void *ctx, float *out, const uint8_t *src, const int32_t *idx, int n, int row, float mean, float std);

void dt_cuda_sumsq(void *ctx, float *out, const float *x, size_t n);
void dt_cuda_scale(void *ctx, float *x, float a, size_t n);
void dt_cuda_axpy(void *ctx, float *y, float a, const float *x, size_t n);
void dt_cuda_to_bf16(void *ctx, uint16_t *dst, const float *src, size_t n);
void dt_cuda_from_bf16(void *ctx, float *y, const uint16_t *x, size_t n, int accumulate);
void dt_cuda_gather_u8_normalize(void *ctx, float *out, const uint8_t *src, const int32_t *idx, int n, int row, float mean, float std);

#ifdef __cplusplus
}
#endif

#endif
