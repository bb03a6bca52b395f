/* conv.h: 2-D convolution. Semantics are documented on the slots of
 * dt_kernels in kernels.h; kernels/cpu/conv.c is the fp32 reference and
 * kernels/cuda/conv.cu the fast path. */
#ifndef DT_KERNELS_CONV_H
#define DT_KERNELS_CONV_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

size_t dt_cpu_conv2d_workspace(void *ctx, const dt_conv2d_shape *s);
void dt_cpu_conv2d_forward(void *ctx, float *out, const float *inp, const float *w, const float *b, const dt_conv2d_shape *s, void *ws);
void dt_cpu_conv2d_backward(void *ctx, float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, const dt_conv2d_shape *s, void *ws);

size_t dt_cuda_conv2d_workspace(void *ctx, const dt_conv2d_shape *s);
void dt_cuda_conv2d_forward(void *ctx, float *out, const float *inp, const float *w, const float *b, const dt_conv2d_shape *s, void *ws);
void dt_cuda_conv2d_backward(void *ctx, float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, const dt_conv2d_shape *s, void *ws);

#ifdef __cplusplus
}
#endif

#endif
