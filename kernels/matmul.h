/* matmul.h: linear layers (GEMM). Semantics are documented on the slots of
 * dt_kernels in kernels.h; kernels/cpu/matmul.c is the fp32 reference and
 * kernels/cuda/matmul.cu the fast path. */
#ifndef DT_KERNELS_MATMUL_H
#define DT_KERNELS_MATMUL_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void dt_cpu_linear_forward(void *ctx, float *out, const float *inp, const float *w, const float *b, int n, int c, int oc);
void dt_cpu_linear_backward(void *ctx, float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int n, int c, int oc);

void dt_cuda_linear_forward(void *ctx, float *out, const float *inp, const float *w, const float *b, int n, int c, int oc);
void dt_cuda_linear_backward(void *ctx, float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int n, int c, int oc);

#ifdef __cplusplus
}
#endif

#endif
