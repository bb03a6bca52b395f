/* norm.h: layer normalisation, plain and fused with the residual add. Semantics
 * are documented on the slots of dt_kernels in kernels.h; kernels/cpu/norm.c is
 * the fp32 reference and kernels/cuda/norm.cu the fast path. */
#ifndef DT_KERNELS_NORM_H
#define DT_KERNELS_NORM_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void dt_cpu_layernorm_forward(void *ctx, void *out, dt_dtype ot, float *mean, float *rstd,
                              const float *inp,
                              const float *weight, const float *bias, int n, int c, float eps);
void dt_cpu_layernorm_backward(void *ctx, float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp, const float *weight,
                               const float *mean, const float *rstd, int n, int c);
void dt_cpu_residual_layernorm_forward(void *ctx, float *res_out, void *out, dt_dtype ot,
                                       float *mean, float *rstd, const float *a, const float *b,
                                       const float *weight, const float *bias, int n, int c,
                                       float eps);

void dt_cuda_layernorm_forward(void *ctx, void *out, dt_dtype ot, float *mean, float *rstd,
                               const float *inp,
                               const float *weight, const float *bias, int n, int c, float eps);
void dt_cuda_layernorm_backward(void *ctx, float *dinp, float *dweight, float *dbias,
                                const float *dout, const float *inp, const float *weight,
                                const float *mean, const float *rstd, int n, int c);
void dt_cuda_residual_layernorm_forward(void *ctx, float *res_out, void *out, dt_dtype ot,
                                        float *mean, float *rstd, const float *a, const float *b,
                                        const float *weight, const float *bias, int n, int c,
                                        float eps);

#ifdef __cplusplus
}
#endif

#endif
