/* optimizer.h: SGD with momentum, Adam, AdamW. Semantics are documented on the slots of
 * dt_kernels in kernels.h; kernels/cpu/optimizer.c is the fp32 reference and
 * kernels/cuda/optimizer.cu the fast path. */
#ifndef DT_KERNELS_OPTIMIZER_H
#define DT_KERNELS_OPTIMIZER_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void dt_cpu_sgd_step(void *ctx, float *p, const float *g, float *buf, size_t n, float lr, float momentum, float wd, int nesterov, int first, float grad_scale);
void dt_cpu_adam_step(void *ctx, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps, float wd, int decoupled, int t, float grad_scale);

void dt_cuda_sgd_step(void *ctx, float *p, const float *g, float *buf, size_t n, float lr, float momentum, float wd, int nesterov, int first, float grad_scale);
void dt_cuda_adam_step(void *ctx, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps, float wd, int decoupled, int t, float grad_scale);

#ifdef __cplusplus
}
#endif

#endif
