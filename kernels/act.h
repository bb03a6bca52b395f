/* act.h: activations: relu, tanh, gelu (erf and tanh forms). Semantics are documented on the slots of
 * dt_kernels in kernels.h; kernels/cpu/act.c is the fp32 reference and
 * kernels/cuda/act.cu the fast path. */
#ifndef DT_KERNELS_ACT_H
#define DT_KERNELS_ACT_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void dt_cpu_act_forward(void *ctx, dt_act act, float *out, const float *inp, size_t n);
void dt_cpu_act_backward(void *ctx, dt_act act, float *dinp, const float *dout, const float *inp, size_t n);

void dt_cuda_act_forward(void *ctx, dt_act act, float *out, const float *inp, size_t n);
void dt_cuda_act_backward(void *ctx, dt_act act, float *dinp, const float *dout, const float *inp, size_t n);

#ifdef __cplusplus
}
#endif

#endif
