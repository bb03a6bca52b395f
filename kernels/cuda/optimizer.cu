/* optimizer.cu: SGD with momentum, Adam and AdamW on the GPU, elementwise.
 * Bias corrections are computed on the host in double and passed in; the
 * division and square root use the _rn intrinsics so the build's
 * --use_fast_math does not make them approximate. */
#include <math.h>

#include "cuda_common.h"
#include "optimizer.h"

/* p (n), g (n), buf (n); buf may be NULL when momentum == 0 */
static __global__ void sgd_kernel(float *p, const float *g, float *buf, size_t n, float lr,
                                  float momentum, float wd, int nesterov, int first,
                                  float grad_scale) {
  DT_GRID_STRIDE(i, n) {
    float gi = g[i] * grad_scale;
    if (wd != 0.0f) gi += wd * p[i];
    float step = gi;
    if (buf) {
      /* momentum 0: buf = g' whatever buf held (it may be uninitialised) */
      const float b = (first || momentum == 0.0f) ? gi : momentum * buf[i] + gi;
      buf[i] = b;
      step = nesterov ? gi + momentum * b : b;
    }
    p[i] -= lr * step;
  }
}

/* p, g, m, v (n); bc1 = 1 - b1^t, bc2 = 1 - b2^t */
static __global__ void adam_kernel(float *p, const float *g, float *m, float *v, size_t n,
                                   float lr, float b1, float b2, float eps, float wd,
                                   int decoupled, float bc1, float bc2, float grad_scale) {
  DT_GRID_STRIDE(i, n) {
    float pi = p[i];
    float gi = g[i] * grad_scale;
    if (!decoupled) gi += wd * pi;
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    if (decoupled) pi -= lr * wd * pi;
    const float mhat = __fdiv_rn(mi, bc1);
    const float vhat = __fdiv_rn(vi, bc2);
    pi -= lr * __fdiv_rn(mhat, __fsqrt_rn(vhat) + eps);
    p[i] = pi;
  }
}

extern "C" void dt_cuda_sgd_step(void *ctx, float *p, const float *g, float *buf, size_t n,
                                 float lr, float momentum, float wd, int nesterov, int first,
                                 float grad_scale) {
  if (n == 0) return;
  sgd_kernel<<<dt_cuda_blocks(n, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
               DT_CUDA_CTX(ctx)->stream>>>(p, g, buf, n, lr, momentum, wd, nesterov, first,
                                           grad_scale);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_adam_step(void *ctx, float *p, const float *g, float *m, float *v,
                                  size_t n, float lr, float b1, float b2, float eps, float wd,
                                  int decoupled, int t, float grad_scale) {
  if (n == 0) return;
  const float bc1 = (float)(1.0 - pow((double)b1, (double)t));
  const float bc2 = (float)(1.0 - pow((double)b2, (double)t));
  adam_kernel<<<dt_cuda_blocks(n, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
                DT_CUDA_CTX(ctx)->stream>>>(p, g, m, v, n, lr, b1, b2, eps, wd, decoupled, bc1,
                                            bc2, grad_scale);
  CUDA_LAUNCH_CHECK();
}
