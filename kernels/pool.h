/* pool.h: max and average pooling. Semantics are documented on the slots of
 * dt_kernels in kernels.h; kernels/cpu/pool.c is the fp32 reference and
 * kernels/cuda/pool.cu the fast path. */
#ifndef DT_KERNELS_POOL_H
#define DT_KERNELS_POOL_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void dt_cpu_maxpool2d_forward(void *ctx, float *out, const float *inp, const dt_pool2d_shape *s);
void dt_cpu_maxpool2d_backward(void *ctx, float *dinp, const float *dout, const float *inp, const dt_pool2d_shape *s);
void dt_cpu_avgpool2d_forward(void *ctx, float *out, const float *inp, const dt_pool2d_shape *s);
void dt_cpu_avgpool2d_backward(void *ctx, float *dinp, const float *dout, const dt_pool2d_shape *s);

void dt_cuda_maxpool2d_forward(void *ctx, float *out, const float *inp, const dt_pool2d_shape *s);
void dt_cuda_maxpool2d_backward(void *ctx, float *dinp, const float *dout, const float *inp, const dt_pool2d_shape *s);
void dt_cuda_avgpool2d_forward(void *ctx, float *out, const float *inp, const dt_pool2d_shape *s);
void dt_cuda_avgpool2d_backward(void *ctx, float *dinp, const float *dout, const dt_pool2d_shape *s);

#ifdef __cplusplus
}
#endif

#endif
